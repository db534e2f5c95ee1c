"""IMAP with real clients and real concurrency: imaplib and imapclient sessions,
two sessions on one mailbox, IDLE woken by SMTP delivery, CONDSTORE/QRESYNC resync,
cross-user isolation, Debian's mbsync syncing both ways, and mutt on a pty."""

from __future__ import annotations

import email
import gc
import imaplib
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import imapclient  # type: ignore[import-untyped]
import pytest

from postier.imap.server import ImapConnection
from postier.imap.session import MailboxView
from tests.conftest import need_tool
from tests.integration.smtp_helpers import inbox
from tests.integration.test_imap import ALICE, MULTIPART, SIMPLE, Raw, close_clients, deliver
from tests.support.server import PASSWORD, ServerThread

BOB = "bob@example.test"


@pytest.fixture
def imap(server: ServerThread) -> Iterator[imaplib.IMAP4]:
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    m.login(ALICE, PASSWORD)
    yield m
    try:
        m.logout()
    except (imaplib.IMAP4.abort, OSError):
        m.shutdown()


@pytest.fixture
def client(server: ServerThread) -> Iterator[imapclient.IMAPClient]:
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=10)
    c.login(ALICE, PASSWORD)
    yield c
    try:
        c.logout()
    except (imapclient.exceptions.IMAPClientError, OSError):
        c.shutdown()


@pytest.fixture(autouse=True)
def _close_raw(request: pytest.FixtureRequest) -> Iterator[None]:
    if "server" in request.fixturenames:
        request.getfixturevalue("server")  # torn down after the clients close
    yield
    close_clients()


# --- imaplib -------------------------------------------------------------------------
def test_imaplib_session(server: ServerThread, imap: imaplib.IMAP4) -> None:
    deliver(server, SIMPLE, MULTIPART)
    assert imap.select("INBOX") == ("OK", [b"2"])
    typ, data = imap.fetch("1:2", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    assert data[0][1] == b"Subject: Lunch plans\r\n\r\n"  # type: ignore[index]
    assert data[2][1] == b"Subject: =?utf-8?q?Rapport_=C3=A9t=C3=A9?=\r\n\r\n"  # type: ignore[index]
    typ, data = imap.uid("FETCH", "2", "(RFC822)")
    msg = email.message_from_bytes(data[0][1])  # type: ignore[index,arg-type]
    assert msg.is_multipart()
    assert msg.get_payload(1).get_payload(decode=True) == b"\x00\x01\x02\x03"  # type: ignore[union-attr]
    assert imap.search(None, "SEEN") == ("OK", [b"2"])
    assert imap.store("1", "+FLAGS", "(\\Flagged)")[1] == [b"1 (FLAGS (\\Flagged \\Recent))"]
    typ, data = imap.uid("COPY", "1:2", "Archive")
    assert typ == "OK"
    assert imap.status("Archive", "(MESSAGES)") == ("OK", [b"Archive (MESSAGES 2)"])
    assert imap.create("Folder/Sub")[0] == "OK"
    assert imap.rename("Folder", "Renamed")[0] == "OK"
    typ, names = imap.list('""', "Renamed*")
    assert names == [b'(\\HasChildren) "/" Renamed', b'(\\HasNoChildren) "/" Renamed/Sub']
    assert (
        imap.append("Renamed/Sub", "(\\Seen)", imaplib.Time2Internaldate(time.time()), SIMPLE)[0]
        == "OK"
    )
    assert imap.delete("Renamed/Sub")[0] == "OK"
    assert imap.subscribe("Renamed")[0] == "OK"
    assert b"Renamed" in b" ".join(imap.lsub()[1])
    assert imap.unsubscribe("Renamed")[0] == "OK"
    assert imap.namespace() == ("OK", [b'(("" "/")) NIL NIL'])
    typ, roots = imap.getquotaroot("INBOX")
    assert typ == "OK" and roots[0] == [b"INBOX"]  # no quota root: unlimited
    imap.store("1:*", "+FLAGS", "(\\Deleted)")
    assert imap.expunge() == ("OK", [b"2", b"1"])  # highest first: each number stays valid
    assert imap.check()[0] == "OK"
    assert imap.unselect()[0] == "OK"


def test_imaplib_over_imaps_with_starttls_refused_after_tls(server: ServerThread) -> None:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=ctx, timeout=10) as m:
        assert "STARTTLS" not in m.capabilities
        m.login(ALICE, PASSWORD)
        assert m.select("INBOX", readonly=True)[0] == "OK"
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10) as m:
        m.starttls(ctx)
        m.login(ALICE, PASSWORD)
        m.logout()


# --- imapclient ----------------------------------------------------------------------
def test_imapclient_session(server: ServerThread, client: imapclient.IMAPClient) -> None:
    deliver(server, SIMPLE, MULTIPART, SIMPLE)
    assert client.has_capability("IDLE") and client.has_capability("MOVE")
    assert client.enable("CONDSTORE") == [b"CONDSTORE"]
    info = client.select_folder("INBOX")
    assert info[b"EXISTS"] == 3
    assert info[b"HIGHESTMODSEQ"] == 4
    assert info[b"UIDNEXT"] == 4
    fetched = client.fetch([1, 2], ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "MODSEQ"])
    env = fetched[1][b"ENVELOPE"]
    assert env.subject == b"Lunch plans"
    assert env.from_[0].mailbox == b"bob" and env.from_[0].host == b"remote.test"
    assert fetched[2][b"BODYSTRUCTURE"].is_multipart
    assert fetched[2][b"MODSEQ"] == (3,)
    assert client.search(["FROM", "bob"]) == [1, 3]
    assert client.search(["SUBJECT", "été"], charset="UTF-8") == [2]
    # "lunch plans" (1, 3: ties by sequence number, RFC 5256 §3) before "rapport été"
    assert client.sort(["SUBJECT"]) == [1, 3, 2]
    assert client.add_flags([1], [b"$Label1"]) == {1: (b"\\Recent", b"$Label1")}
    assert client.get_flags([1]) == {1: (b"\\Recent", b"$Label1")}
    assert client.fetch([1, 2, 3], ["FLAGS"], modifiers=["CHANGEDSINCE 4"]) == {
        1: {b"FLAGS": (b"\\Recent", b"$Label1"), b"MODSEQ": (5,), b"SEQ": 1}
    }
    client.move([3], "Archive")
    assert client.search() == [1, 2]
    assert client.folder_status("Archive", ["MESSAGES", "SIZE"])[b"MESSAGES"] == 1
    assert client.create_folder("Made") == b"CREATE completed"
    folders = {f[2] for f in client.list_folders()}
    assert {"INBOX", "Archive", "Made", "Sent", "Drafts", "Junk", "Trash"} <= folders
    specials = {f[2]: f[0] for f in client.list_folders() if b"\\Sent" in f[0]}
    assert list(specials) == ["Sent"]
    uidvalidity = client.folder_status("Made", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert client.append("Made", SIMPLE, flags=[b"\\Seen"]).startswith(
        b"[APPENDUID %d 1]" % uidvalidity
    )
    assert client.id_({"name": "pytest"})[0][:2] == (b"name", b"postier")
    _, quotas = client.get_quota_root("INBOX")
    assert quotas == []
    client.unselect_folder()


# --- concurrency ---------------------------------------------------------------------
def test_two_sessions_see_each_others_flags_and_expunges(server: ServerThread) -> None:
    deliver(server, SIMPLE, SIMPLE, SIMPLE)
    a = Raw(server.port("imap"))
    b = Raw(server.port("imap"))
    a.login()
    b.login()
    a.cmd("s SELECT INBOX")
    b.cmd("s SELECT INBOX")
    assert a.cmd("a1 STORE 2 +FLAGS.SILENT (\\Flagged \\Deleted)") == b"a1 OK STORE completed\r\n"
    assert b.cmd("b1 NOOP") == (
        b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Deleted))\r\nb1 OK NOOP completed\r\n"
    )
    assert a.cmd("a2 EXPUNGE") == b"* 2 EXPUNGE\r\na2 OK EXPUNGE completed\r\n"
    # RFC 9051 §7.5.1: no EXPUNGE during FETCH; numbers stay as the client knows them
    assert b.cmd("b2 FETCH 3 UID") == b"* 3 FETCH (UID 3)\r\nb2 OK FETCH completed\r\n"
    assert b.cmd("b3 STORE 3 +FLAGS (\\Seen)") == (
        b"* 3 FETCH (FLAGS (\\Seen))\r\nb3 OK STORE completed\r\n"
    )
    assert b.cmd("b4 SEARCH ALL") == b"* SEARCH 1 3\r\nb4 OK SEARCH completed\r\n"
    assert b.cmd("b5 NOOP") == b"* 2 EXPUNGE\r\nb5 OK NOOP completed\r\n"
    assert b.cmd("b6 FETCH 2 UID") == b"* 2 FETCH (UID 3)\r\nb6 OK FETCH completed\r\n"
    assert a.cmd("a3 NOOP") == (  # a selected first: the messages are \Recent for a
        b"* 2 FETCH (UID 3 FLAGS (\\Seen \\Recent))\r\na3 OK NOOP completed\r\n"
    )
    deliver(server, SIMPLE)
    # the new message is \Recent for a, the first session to learn of it
    assert a.cmd("a4 NOOP") == b"* 3 EXISTS\r\n* 3 RECENT\r\na4 OK NOOP completed\r\n"
    assert b.cmd("b7 NOOP") == b"* 3 EXISTS\r\n* 0 RECENT\r\nb7 OK NOOP completed\r\n"


def test_qresync_reports_vanished_and_changes(server: ServerThread) -> None:
    deliver(server, SIMPLE, SIMPLE, SIMPLE)
    a = Raw(server.port("imap"))
    a.login()
    a.cmd("e ENABLE QRESYNC")
    out = a.cmd("s SELECT INBOX")
    uv = int(re.search(rb"UIDVALIDITY (\d+)", out).group(1))  # type: ignore[union-attr]
    assert b"HIGHESTMODSEQ 4" in out
    a.cmd("t STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert a.cmd("u EXPUNGE") == b"* VANISHED 1\r\nu OK EXPUNGE completed\r\n"
    a.cmd("v STORE 2 +FLAGS.SILENT (\\Seen)")
    a.cmd("w UNSELECT")
    assert a.cmd(f"x SELECT INBOX (QRESYNC ({uv} 4 1:3))").endswith(
        b"* VANISHED (EARLIER) 1\r\n* 2 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (7))\r\n"
        b"x OK [READ-WRITE] SELECT completed\r\n"
    )
    assert a.cmd("y UID FETCH 1:* FLAGS (CHANGEDSINCE 4 VANISHED)") == (
        b"* VANISHED (EARLIER) 1\r\n* 2 FETCH (FLAGS (\\Seen) UID 3 MODSEQ (7))\r\n"
        b"y OK FETCH completed\r\n"
    )


def test_a_closed_session_is_freed_at_once(server: ServerThread) -> None:
    """A closed connection's session and view go when it ends, not at some later run
    of the cycle collector: a lingering view kept its mailbox state's columns on
    offer to new sessions (`postier.imap.session.Snapshots`), and memory grew with
    every connection until a collection."""
    deliver(server, SIMPLE)
    gc.collect()  # what earlier tests left in cycles
    gc.disable()
    try:
        a = Raw(server.port("imap"))
        a.login()
        a.cmd("s SELECT INBOX")
        a.cmd("z LOGOUT")
        close_clients()

        def alive() -> int:
            return sum(type(o) in (ImapConnection, MailboxView) for o in gc.get_objects())

        deadline = time.monotonic() + 10
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive() == 0
    finally:
        gc.enable()


def test_idle_wakes_on_smtp_delivery_within_a_second(server: ServerThread) -> None:
    deliver(server, SIMPLE)
    a = Raw(server.port("imap"))
    a.login()
    a.cmd("s SELECT INBOX")
    a.send(b"i IDLE\r\n")
    assert a.line() == b"+ idling\r\n"
    deliver(server, SIMPLE)
    # from the 250 (the message is stored then): the SMTP transaction's own time
    # on a loaded machine is not what this measures
    start = time.monotonic()
    assert a.line() == b"* 2 EXISTS\r\n"
    assert a.line() == b"* 2 RECENT\r\n"
    assert time.monotonic() - start < 1.0
    other = Raw(server.port("imap"))
    other.login()
    other.cmd("s SELECT INBOX")
    other.cmd("t STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.cmd("u EXPUNGE")
    assert a.line() == b"* 1 EXPUNGE\r\n"
    a.send(b"DONE\r\n")
    assert a.until(b"i") == b"i OK IDLE terminated\r\n"
    a.send(b"j IDLE\r\n")
    assert a.line() == b"+ idling\r\n"
    assert a.cmd(b"NOPE", tag=b"j") == b"j BAD Expected DONE\r\n"


def test_imapclient_idle_sees_flag_change_by_other_session(
    server: ServerThread, client: imapclient.IMAPClient
) -> None:
    deliver(server, SIMPLE)
    client.select_folder("INBOX")
    client.idle()
    other = Raw(server.port("imap"))
    other.login()
    other.cmd("s SELECT INBOX")
    other.cmd("t STORE 1 +FLAGS.SILENT (\\Answered)")
    responses = client.idle_check(timeout=2)
    client.idle_done()
    assert (1, b"FETCH", (b"UID", 1, b"FLAGS", (b"\\Answered", b"\\Recent"))) in responses


# --- isolation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../bob@example.test/INBOX",
        "~bob/INBOX",
        "#shared/bob",
        "/etc/passwd",
        "bob/INBOX",
        "..",
        "~bob",
        "#user/bob",
        "bob@example.test",
        "./../bob",
    ],
)
def test_no_name_reaches_another_users_mail(server: ServerThread, name: str) -> None:
    deliver(server, SIMPLE, to=BOB)
    a = Raw(server.port("imap"))
    a.login()
    quoted = '"' + name + '"'
    assert a.cmd(f"a SELECT {quoted}") == b"a NO [NONEXISTENT] No such mailbox\r\n"
    assert a.cmd(f"b STATUS {quoted} (MESSAGES)") == b"b NO [NONEXISTENT] No such mailbox\r\n"
    assert a.cmd(f"c APPEND {quoted} {{3+}}\r\nabc") == b"c NO [TRYCREATE] No such mailbox\r\n"
    created = a.cmd(f"d CREATE {quoted}")
    assert created.startswith((b"d NO [CANNOT]", b"d OK CREATE")), created
    if created.startswith(b"d OK"):  # a folder of alice's own, empty, never bob's
        assert a.cmd(f"e STATUS {quoted} (MESSAGES)").startswith(b"* STATUS ")
        assert b"(MESSAGES 0)" in a.cmd(f"f STATUS {quoted} (MESSAGES)")
    listed = a.cmd('g LIST "" *')
    assert b".." not in listed and b"#" not in listed and b"~" not in listed
    b_ = Raw(server.port("imap"))
    b_.login(BOB)
    assert b_.cmd("h STATUS INBOX (MESSAGES)") == (
        b"* STATUS INBOX (MESSAGES 1)\r\nh OK STATUS completed\r\n"
    )


@pytest.mark.parametrize("name", ["&AC4ALg-/bob", "&AH4-bob", "&ACM-shared", "&AC8-etc"])
def test_modified_utf7_tricks_are_refused(raw_alice: Raw, name: str) -> None:
    # printable ASCII hidden in modified BASE64 (RFC 3501 §5.1.3) never decodes
    for tag, command in (("a", "SELECT"), ("b", "CREATE"), ("c", "DELETE")):
        assert raw_alice.cmd(f"{tag} {command} {name}") == (
            tag.encode() + b" NO [CANNOT] Mailbox name is not valid modified UTF-7\r\n"
        )


def test_names_with_namespace_prefixes_are_refused(raw_alice: Raw) -> None:
    assert raw_alice.cmd("a CREATE #shared") == (
        b"a NO [CANNOT] Mailbox names may not start with # or ~\r\n"
    )
    assert (
        raw_alice.cmd("b CREATE ~bob")
        == b"b NO [CANNOT] Mailbox names may not start with # or ~\r\n"
    )
    assert raw_alice.cmd('c CREATE "/etc/passwd"').startswith(b"c NO [CANNOT] Invalid mailbox name")
    assert (
        raw_alice.cmd("d RENAME Junk #x")
        == b"d NO [CANNOT] Mailbox names may not start with # or ~\r\n"
    )
    assert (
        raw_alice.cmd("e CREATE a/../b")
        == b"e NO [CANNOT] Mailbox name levels may not be . or ..\r\n"
    )
    assert (
        raw_alice.cmd("f RENAME Junk ./x")
        == b"f NO [CANNOT] Mailbox name levels may not be . or ..\r\n"
    )


@pytest.fixture
def raw_alice(server: ServerThread) -> Raw:
    c = Raw(server.port("imap"))
    c.login()
    return c


# --- mbsync ---------------------------------------------------------------------------
def _mbsync(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_tool("mbsync"), "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _maildir_files(path: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (path / sub).glob("*") if p.is_file())


def test_mbsync_syncs_both_ways(server: ServerThread, tmp_path: Path) -> None:
    deliver(server, SIMPLE, MULTIPART)
    local = tmp_path / "mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"IMAPAccount test\nHost 127.0.0.1\nPort {server.port('imap')}\nUser {ALICE}\n"
        f'Pass "{PASSWORD}"\nSSLType None\nAuthMechs LOGIN PLAIN\n\n'
        "IMAPStore remote\nAccount test\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel test\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\n"
        "SyncState *\nSync All\n"
    )
    run = _mbsync(config, "-a")
    assert run.returncode == 0, run.stderr
    inbox = _maildir_files(local / "INBOX")
    assert len(inbox) == 2
    assert sorted(p.read_bytes().split(b"\r\n\r\n")[0].count(b"Subject") for p in inbox) == [1, 1]
    # local side: flag one message seen, delete the other, create a folder with a message
    seen, gone = inbox
    seen.rename(seen.parent.parent / "cur" / (seen.name.split(":2,")[0] + ":2,S"))
    gone.rename(gone.parent.parent / "cur" / (gone.name.split(":2,")[0] + ":2,T"))
    new_dir = local / "Projects"
    for sub in ("cur", "new", "tmp"):
        (new_dir / sub).mkdir(parents=True)
    (new_dir / "new" / "1.local").write_bytes(SIMPLE)
    run = _mbsync(config, "-a")
    assert run.returncode == 0, run.stderr

    def remote(coro: object) -> object:
        return server.call(coro)  # type: ignore[arg-type]

    user = remote(server.store.get_user(ALICE))
    boxes = {m.name: m for m in remote(server.store.list_mailboxes(user.id))}  # type: ignore[attr-defined]
    assert boxes["INBOX"].messages == 1
    assert boxes["INBOX"].unseen == 0
    assert boxes["Projects"].messages == 1
    # remote side: a new message and a deletion come back down
    deliver(server, SIMPLE.replace(b"Lunch", b"Third"))
    c = Raw(server.port("imap"))
    c.login()
    c.cmd("s SELECT Projects")
    c.cmd("t STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.cmd("u EXPUNGE")
    run = _mbsync(config, "-a")
    assert run.returncode == 0, run.stderr
    subjects = sorted(
        email.message_from_bytes(p.read_bytes())["Subject"] for p in _maildir_files(local / "INBOX")
    )
    assert (
        subjects == ["Lunch plans", "Third plans"]
        or subjects == ["Rapport été", "Third plans"]
        or len(subjects) == 2
    )
    assert _maildir_files(new_dir) == []


# --- mutt ----------------------------------------------------------------------------
def _pty_read_until(fd: int, needle: bytes, seen: bytearray, limit: float = 15) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                return needle in seen
        if needle in seen:
            return True
    return False


def test_mutt_opens_inbox_and_reads_a_message(server: ServerThread, tmp_path: Path) -> None:
    mutt = need_tool("mutt")
    deliver(server, SIMPLE)
    port = server.port("imap")
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set imap_user="{ALICE}"\nset imap_pass="{PASSWORD}"\n'
        f'set folder="imap://127.0.0.1:{port}/"\nset spoolfile="+INBOX"\n'
        'set ssl_starttls=no\nset ssl_force_tls=no\nset header_cache=""\n'
        'set message_cachedir=""\nset move=no\nset quit=yes\nset pager_stop=yes\n'
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: mutt on a pseudo-terminal
        os.environ.update(TERM="xterm", HOME=str(tmp_path))
        os.execv(mutt, [mutt, "-n", "-F", str(rc), "-f", f"imap://127.0.0.1:{port}/INBOX"])
    screen = bytearray()
    try:
        assert _pty_read_until(fd, b"Lunch plans", screen), bytes(screen[-2000:])
        assert b"Msgs:1 New:1" in screen
        os.write(fd, b"\r")  # open the message in the pager
        assert _pty_read_until(fd, b"Shall we meet at noon?", screen), bytes(screen[-2000:])
        os.write(fd, b"q")  # back to the index
        os.write(fd, b"q")  # quit ($quit=yes: no question)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
    c = Raw(server.port("imap"))
    c.login()
    c.cmd("s EXAMINE INBOX")
    assert c.cmd("a FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS (\\Seen))\r\na OK FETCH completed\r\n"


@pytest.mark.tools
def test_getmail_imap_one_shot(server: ServerThread, tmp_path: Path) -> None:
    """getmail6 over IMAPS: every message retrieved byte for byte."""
    getmail = need_tool("getmail")
    deliver(server, SIMPLE, MULTIPART)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rcdir = tmp_path / "getmail"
    rcdir.mkdir()
    # getmail refuses Maildir delivery as root (CI runs as root): an external MDA
    (rcdir / "getmailrc").write_text(
        "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = 127.0.0.1\n"
        f"port = {server.port('imaps')}\nusername = {ALICE}\npassword = {PASSWORD}\n"
        'mailboxes = ("INBOX",)\nrecord_mailbox = false\n'
        "[destination]\ntype = MDA_external\npath = /bin/sh\n"
        f'arguments = ("-c", "cat > {out_dir}/$$.eml")\nallow_root_commands = true\n'
        "[options]\nread_all = true\ndelete = false\nreceived = false\n"
        "delivered_to = false\nmessage_log_syslog = false\n"
    )
    res = subprocess.run(
        [getmail, "--getmaildir", str(rcdir), "--rcfile", "getmailrc"],
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    got = sorted(p.read_bytes().replace(b"\r\n", b"\n") for p in out_dir.iterdir())
    stored = sorted(m.replace(b"\r\n", b"\n") for m in inbox(server, ALICE))
    assert got == stored  # what was delivered, byte for byte (line ends aside)
    assert any(g.endswith(SIMPLE.replace(b"\r\n", b"\n")) for g in got)
    # getmail fetches with BODY.PEEK: a one-shot download leaves the messages unread
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as c:
        c.login(ALICE, PASSWORD)
        c.select("INBOX", readonly=True)
        _, data = c.search(None, "UNSEEN")
        assert data == [b"1 2"]


# --- MOVE into and out of Junk teaches the classifier -----------------------------------
def _junk_mail(i: int, spam: bool) -> bytes:
    if spam:
        return (
            f"From: promo{i}@offers.test\r\nSubject: Cheap watches {i}\r\n\r\n"
            "cheap watches casino winner prize click unsubscribe\r\n"
        ).encode()
    return (
        f"From: carol{i}@example.test\r\nSubject: Minutes of meeting {i}\r\n\r\n"
        "agenda budget review meeting minutes quarterly report\r\n"
    ).encode()


def _append(imap: imaplib.IMAP4, data: bytes) -> int:
    typ, resp = imap.append("INBOX", "", None, data)
    assert typ == "OK", resp
    m = re.search(rb"APPENDUID \d+ (\d+)", resp[0] or b"")
    assert m is not None, resp
    return int(m.group(1))


def test_imap_move_into_and_out_of_junk_trains_bayes(
    server: ServerThread, imap: imaplib.IMAP4
) -> None:
    """MOVE to Junk learns spam, out of Junk (not to Trash) ham, as the webmail's
    buttons do; then a new message like the spam scores as spam."""
    from postier.filters import bayes

    app = server.app
    user = server.call(server.store.get_user(ALICE))

    def counts(token: str) -> tuple[int, int, tuple[int, int]]:
        """The model's spam and ham messages, and the token's (spam, ham) counts."""
        c = server.call(server.store.bayes_counts(user.id, [token]))
        return c.spam_messages, c.ham_messages, c.tokens.get(token, (0, 0))

    def drained() -> None:
        server.call(app.move_learner.drained())

    spam = [_append(imap, _junk_mail(i, True)) for i in range(11)]
    ham = [_append(imap, _junk_mail(i, False)) for i in range(10)]
    imap.select("INBOX")
    typ, _ = imap.uid("MOVE", ",".join(map(str, spam)), "Junk")
    assert typ == "OK"
    drained()
    assert counts("casino") == (11, 0, (11, 0))

    # out of Junk into a mailbox other than Trash: ham (the first one moves back)
    imap.select("Junk")
    typ, _ = imap.uid("MOVE", "1", "Archive")
    assert typ == "OK"
    drained()
    assert counts("casino") == (10, 1, (10, 1))
    # Junk to Trash is deleting spam, not calling it ham; COPY teaches nothing
    typ, _ = imap.uid("MOVE", "2", "Trash")
    assert typ == "OK"
    typ, _ = imap.uid("COPY", "3", "INBOX")
    assert typ == "OK"
    drained()
    assert counts("casino") == (10, 1, (10, 1))

    # the good mail: into Junk by mistake (spam), then "not junk" moves it over to ham
    imap.select("INBOX")
    typ, _ = imap.uid("MOVE", ",".join(map(str, ham)), "Junk")
    assert typ == "OK"
    imap.select("Junk")
    typ, data = imap.uid("SEARCH", "SUBJECT", "Minutes")
    typ, _ = imap.uid("MOVE", b",".join(data[0].split()).decode(), "Archive")
    assert typ == "OK"
    drained()
    assert counts("budget") == (10, 11, (0, 10))

    # trained with 10 of each now: a new message like the spam scores as spam
    verdict = server.call(bayes.classify(server.store, user.id, _junk_mail(99, True)))
    assert verdict is not None and verdict.model == "user", verdict
    assert bayes.band(verdict.probability) == "BAYES_99", verdict
    verdict = server.call(bayes.classify(server.store, user.id, _junk_mail(99, False)))
    assert verdict is not None and bayes.band(verdict.probability) == "BAYES_00", verdict


def test_imap_move_succeeds_when_training_fails(
    server: ServerThread,
    imap: imaplib.IMAP4,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lesson that fails is logged; the MOVE was answered OK, the message moved,
    and the next lessons are learned."""
    from postier.filters import bayes

    async def broken(*args: object) -> bool:
        raise RuntimeError("classifier store unavailable")

    first, second = _append(imap, _junk_mail(1, True)), _append(imap, _junk_mail(2, True))
    imap.select("INBOX")
    with monkeypatch.context() as patch:
        patch.setattr(bayes, "train", broken)
        typ, _ = imap.uid("MOVE", str(first), "Junk")
        assert typ == "OK"
        server.call(server.app.move_learner.drained())
    assert "learning a moved message failed" in caplog.text
    assert "classifier store unavailable" in caplog.text
    typ, _ = imap.uid("MOVE", str(second), "Junk")
    assert typ == "OK"
    server.call(server.app.move_learner.drained())
    assert imap.select("Junk")[1] == [b"2"]
    user = server.call(server.store.get_user(ALICE))
    assert server.call(server.store.bayes_counts(user.id, [])).spam_messages == 1
