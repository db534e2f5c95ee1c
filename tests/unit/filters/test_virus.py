"""The built-in scanner: EICAR in body, attachment and zip; executables; zip bombs."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from postier.filters.pipeline import Action, Context, Phase
from postier.filters.virus import EICAR, Scanner, VirusStage, name_signature
from postier.mail.role import IntakeRole
from postier.mime.message import ParsedMessage


def mime(filename: str, data: bytes, ctype: str = "application/octet-stream") -> bytes:
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        b"From: a@x.test\r\nTo: b@y.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n'
        b"--BB\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--BB\r\nContent-Type: " + ctype.encode() + b"\r\n"
        b'Content-Disposition: attachment; filename="' + filename.encode() + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--BB--\r\n"
    )


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


PE = b"MZ" + b"\0" * 0x3A + (0x40).to_bytes(4, "little") + b"PE\0\0" + b"\0" * 64


@pytest.mark.parametrize(
    ("message", "found"),
    [
        (b"Subject: t\r\n\r\n" + EICAR + b"\r\n", "Eicar-Test-Signature"),
        (mime("test.txt", EICAR), "Eicar-Test-Signature"),
        (mime("files.zip", zipped({"a/eicar.com.txt": EICAR})), "Eicar-Test-Signature"),
        (
            mime("nested.zip", zipped({"inner.zip": zipped({"e.txt": EICAR})})),
            "Eicar-Test-Signature",
        ),
        (mime("setup.bin", PE), "Executable.Windows.PE"),
        (mime("run", b"\x7fELF\x02\x01\x01" + b"\0" * 40), "Executable.ELF"),
        (mime("invoice.pdf.exe", b"harmless bytes"), "Heuristics.DoubleExtension.pdf.exe"),
        (mime("script.vbs", b"MsgBox 1"), "Executable.Attachment.vbs"),
        (
            mime("docs.zip", zipped({"readme.txt": b"hi", "update.js": b"x=1"})),
            "Executable.Attachment.js",
        ),
        (mime("report.pdf", b"%PDF-1.4 fine"), None),
        (mime("data.zip", zipped({"a.txt": b"hello" * 100})), None),
        (b"Subject: clean\r\n\r\nnothing to see\r\n", None),
    ],
)
def test_scan_message(message, found):
    assert Scanner().scan_message(message) == found


def test_executables_allowed_when_not_blocked_but_eicar_still_found():
    s = Scanner(block_executables=False)
    assert s.scan_message(mime("setup.exe", PE)) is None
    assert s.scan_message(mime("e.zip", zipped({"x.txt": EICAR}))) == "Eicar-Test-Signature"


def test_zip_bomb_by_ratio():
    bomb = zipped({"zeros.txt": b"\0" * (20 * 1024 * 1024)})  # ~20 KiB compressed
    assert len(bomb) < 100_000
    assert Scanner().scan_message(mime("bomb.zip", bomb)) == "Heuristics.Zip.Bomb"


def test_zip_bomb_by_total_unpacked_and_depth_and_members():
    data = zipped({"a.txt": bytes(range(256)) * 4096})  # 1 MiB, compresses little
    assert (
        Scanner(max_unpacked=512 * 1024).scan_message(mime("a.zip", data)) == "Heuristics.Zip.Bomb"
    )
    deep = zipped({"1.zip": zipped({"2.zip": zipped({"3.zip": zipped({"x.txt": b"x"})})})})
    assert Scanner(max_depth=3).scan_message(mime("d.zip", deep)) == "Heuristics.Zip.Bomb"
    assert Scanner(max_depth=4).scan_message(mime("d.zip", deep)) is None
    many = zipped({f"f{i}.txt": b"x" for i in range(20)})
    assert Scanner(max_members=10).scan_message(mime("m.zip", many)) == "Heuristics.Zip.Bomb"


def test_corrupt_zip_is_not_a_finding():
    assert Scanner().scan_message(mime("broken.zip", b"PK\x03\x04garbage")) is None


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("a.exe", "Executable.Attachment.exe"),
        ("photo.jpg.scr", "Heuristics.DoubleExtension.jpg.scr"),
        ("PHOTO.JPG .EXE", "Heuristics.DoubleExtension.jpg.exe"),
        ("archive.tar.gz", None),
        ("notes.txt", None),
        ("", None),
    ],
)
def test_name_signature(name, found):
    assert name_signature(name) == found


async def test_stage_rejects_with_signature_name():
    ctx = Context("s1", IntakeRole.MX, "192.0.2.1", "mx.test")
    ctx.load(ParsedMessage.of(mime("e.txt", EICAR)), max_scan_size=1 << 20)
    [v] = await VirusStage(Scanner()).check(Phase.DATA, ctx)
    assert v.action is Action.REJECT
    assert v.reply is not None
    assert (
        v.reply.to_bytes() == b"554 5.7.1 Message rejected: infected with Eicar-Test-Signature\r\n"
    )


def part_message(cte: str, body: bytes) -> bytes:
    return (
        b"From: a@x.test\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n'
        b"--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--BB\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body + b"\r\n--BB--\r\n"
    )


@pytest.mark.parametrize(
    ("cte", "body"),
    [
        ("7bit", EICAR),
        ("8bit", b"\xe9\xe9 " + EICAR),
        ("binary", EICAR + b"\0\0"),
        ("x-unknown", EICAR),
        # a soft line break splits the string in the raw bytes: only the decoded
        # part holds it (an undecoded part is not searched again, a decoded one is)
        ("quoted-printable", EICAR[:30] + b"=\r\n" + EICAR[30:]),
    ],
)
def test_eicar_is_found_in_a_part_whatever_its_encoding(cte, body):
    message = part_message(cte, body)
    assert (EICAR in message) is (cte != "quoted-printable")
    assert Scanner().scan_message(message) == "Eicar-Test-Signature"
