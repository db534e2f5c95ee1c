"""Maildir reading and writing on crafted trees: layouts, flags, keywords, names."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.ops import maildir
from postier.ops.maildir import Folder, MaildirError, MaildirWriter


def mkfolder(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def put(
    folder: Path,
    sub: str,
    name: str,
    data: bytes = b"Subject: x\n\nbody\n",
    mtime: float = 1_700_000_000,
) -> Path:
    p = folder / sub / name
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))
    return p


def names(root: Path) -> list[str]:
    return [f.name for f in maildir.find_folders(root)]


def test_maildirplusplus_layout(tmp_path: Path) -> None:
    mkfolder(tmp_path)
    mkfolder(tmp_path / ".Sent")
    mkfolder(tmp_path / ".Work.2024")
    mkfolder(tmp_path / ".Caf&AOk-")  # modified UTF-7 (RFC 3501 §5.1.3)
    mkfolder(tmp_path / ".a\\2eb")  # Dovecot listescape: "." inside a name
    (tmp_path / ".notafolder").mkdir()  # no cur/
    assert names(tmp_path) == ["INBOX", "Café", "Sent", "Work/2024", "a.b"]


def test_fs_layout_with_inbox_directory(tmp_path: Path) -> None:
    mkfolder(tmp_path / "INBOX")
    mkfolder(tmp_path / "Archive")
    mkfolder(tmp_path / "Archive" / "2023")
    mkfolder(tmp_path / "Lists" / "python")  # "Lists" itself is not a folder
    assert names(tmp_path) == ["INBOX", "Archive", "Archive/2023", "Lists/python"]


def test_mbsync_legacy_layout(tmp_path: Path) -> None:
    mkfolder(tmp_path / "inbox")
    mkfolder(tmp_path / "Work")
    mkfolder(tmp_path / "Work" / ".Sub")
    assert names(tmp_path) == ["INBOX", "Work", "Work/Sub"]


def test_symlinked_folder_is_not_followed(tmp_path: Path) -> None:
    mkfolder(tmp_path)
    elsewhere = mkfolder(tmp_path.parent / f"{tmp_path.name}-other")
    (tmp_path / ".Link").symlink_to(elsewhere)
    assert names(tmp_path) == ["INBOX"]


def test_max_depth_bounds_the_walk(tmp_path: Path) -> None:
    deep = tmp_path
    for i in range(5):
        deep = deep / f"d{i}"
    mkfolder(deep)
    assert maildir.find_folders(tmp_path, max_depth=10)[0].name == "d0/d1/d2/d3/d4"
    with pytest.raises(MaildirError, match="no Maildir folder"):
        maildir.find_folders(tmp_path, max_depth=2)


def test_not_a_maildir(tmp_path: Path) -> None:
    with pytest.raises(MaildirError, match="not a directory"):
        maildir.find_folders(tmp_path / "missing")
    with pytest.raises(MaildirError, match="no Maildir folder"):
        maildir.find_folders(tmp_path)


@pytest.mark.parametrize(
    ("filename", "flags"),
    [
        ("1.M1.host:2,", set()),
        ("1.M1.host:2,S", {"\\Seen"}),
        (
            "1.M1.host:2,DFPRST",
            {"\\Draft", "\\Flagged", "$Forwarded", "\\Answered", "\\Seen", "\\Deleted"},
        ),
        ("1.M1.host,S=12,W=13:2,RSab", {"\\Answered", "\\Seen", "$Junk", "work"}),
        ("1.M1.host;2,F", {"\\Flagged"}),  # ";" where ":" is not allowed
        ("1.M1.host!2,S", {"\\Seen"}),
        ("1.M1.host:2,Sz", {"\\Seen"}),  # an undefined keyword letter is ignored
        ("1.M1.host:1,S", set()),  # experimental info: no flags
        ("1.M1.host", set()),
    ],
)
def test_flags_from_filename(filename: str, flags: set[str]) -> None:
    assert maildir.parse_flags(filename, {"a": "$Junk", "b": "work"}) == flags


def test_messages_new_and_cur_with_dates_and_keywords(tmp_path: Path) -> None:
    mkfolder(tmp_path)
    (tmp_path / "dovecot-keywords").write_text("0 $Junk\n1 project-x\nbad line\n30 x\n")
    put(tmp_path, "cur", "1700000002.M2.h:2,Sb", mtime=1_600_000_000)
    put(tmp_path, "new", "1700000001.M1.h", mtime=1_500_000_000)
    put(tmp_path, "new", ".hidden")
    put(tmp_path, "tmp", "1700000003.M3.h")  # unfinished delivery: never read
    msgs = list(maildir.list_messages(Folder("INBOX", tmp_path)))
    assert [(m.path.name, m.flags, m.internal_date) for m in msgs] == [
        ("1700000001.M1.h", frozenset(), datetime(2017, 7, 14, 2, 40, tzinfo=UTC)),
        (
            "1700000002.M2.h:2,Sb",
            frozenset({"\\Seen", "project-x"}),
            datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC),
        ),
    ]


@pytest.mark.parametrize(
    ("raw", "crlf"),
    [
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\r\nb\nc", b"a\r\nb\r\nc"),
        (b"a\rb\r\n", b"a\r\nb\r\n"),
        (b"", b""),
    ],
)
def test_to_crlf(raw: bytes, crlf: bytes) -> None:
    assert maildir.to_crlf(raw) == crlf


def test_crlf_input_is_returned_unchanged_object() -> None:
    data = b"Subject: x\r\n\r\nbody\r\n"
    assert maildir.to_crlf(data) is data


@pytest.mark.parametrize(
    ("name", "directory"),
    [
        ("INBOX", ""),
        ("Sent", ".Sent"),
        ("Work/2024", ".Work.2024"),
        ("Café", ".Caf&AOk-"),
        ("a.b", ".a\\2eb"),
        ("back\\slash", ".back\\5cslash"),
        ("R&D", ".R&-D"),
    ],
)
def test_folder_names_round_trip(name: str, directory: str) -> None:
    assert maildir.folder_dir_name(name) == directory
    if directory:
        parts = directory[1:].split(".")
        assert "/".join(maildir.decode_part(p) for p in parts) == name


def test_writer_layout_flags_keywords_and_mtime(tmp_path: Path) -> None:
    w = MaildirWriter(tmp_path / "out", "host/with:odd")
    inbox = w.folder("INBOX")
    work = w.folder("Work/2024")
    when = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    p1 = w.write(inbox, b"A\r\n", frozenset({"\\Seen", "\\Flagged", "$Junk"}), when)
    p2 = w.write(work, b"BB\r\n", frozenset({"\\Answered", "other", "$Junk"}), when)
    w.finish_folder(inbox)
    w.finish_folder(work)
    w.write_subscriptions(["INBOX", "Work/2024"])
    assert p1.parent == tmp_path / "out" / "cur"
    assert p2.parent == tmp_path / "out" / ".Work.2024" / "cur"
    assert p1.name.endswith(".host\\057with\\072odd,S=3:2,FSa")
    assert p2.name.endswith(",S=4:2,Rab")
    assert p1.read_bytes() == b"A\r\n"
    assert p1.stat().st_mtime == when.timestamp()
    assert (tmp_path / "out" / ".Work.2024" / "maildirfolder").exists()
    assert not (tmp_path / "out" / "maildirfolder").exists()
    assert (tmp_path / "out" / "dovecot-keywords").read_text() == "0 $Junk\n"
    kw = maildir.read_keywords(tmp_path / "out" / ".Work.2024")
    assert set(kw.values()) == {"other", "$Junk"}
    assert (tmp_path / "out" / "subscriptions").read_text() == "INBOX\nWork.2024\n"
    assert list((tmp_path / "out" / "tmp").iterdir()) == []
    # what was written reads back with the same flags
    back = {
        m.folder: m.flags
        for f in maildir.find_folders(tmp_path / "out")
        for m in maildir.list_messages(f)
    }
    assert back == {
        "INBOX": frozenset({"\\Seen", "\\Flagged", "$Junk"}),
        "Work/2024": frozenset({"\\Answered", "other", "$Junk"}),
    }


def test_writer_reports_keywords_beyond_26(tmp_path: Path) -> None:
    w = MaildirWriter(tmp_path, "h")
    inbox = w.folder("INBOX")
    when = datetime(2021, 1, 1, tzinfo=UTC)
    w.write(inbox, b"x\r\n", frozenset(f"k{i:02}" for i in range(27)), when)
    assert len(w.unrepresentable) == 1
