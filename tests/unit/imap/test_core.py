"""`postier.imap.core`: whole IMAP sessions driven on bytes, with no socket. Each test
runs twice: against the in-memory store of `memstore.py` (what the core needs of a
store, and nothing else) and against a real SQLite store in a temp folder (the
store the server uses)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from postier import mime
from postier.auth.passwords import hash_password
from postier.auth.service import AuthService
from postier.config.schema import Settings
from postier.imap import responses as r
from postier.imap.commands import fetch as fetch_command
from postier.imap.core import CLOSE, IDLING, NEED_DATA, START_TLS, Event, ImapSession
from postier.imap.literals import LiteralBudget, LiteralFile
from postier.imap.session import State
from postier.mail.summary import MessageSummary
from postier.mime import summarize
from postier.offload import INLINE_MAX
from postier.store.models import Change, ChangeKind, NewMessage
from postier.store.sqlite import SqliteStore
from tests.support.messages import new_message
from tests.unit.imap.memstore import MemoryStore

MESSAGE = (
    b"From: Bob <bob@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: lunch\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"\r\n"
    b"Pizza at noon?\r\n"
)


def settings(tmp_path: Path, **imap: object) -> Settings:
    s = Settings()
    return dataclasses.replace(
        s,
        server=dataclasses.replace(s.server, data_dir=tmp_path),
        imap=dataclasses.replace(s.imap, **imap),  # type: ignore[arg-type]
    )


async def open_store(kind: str, path: Path) -> Any:
    """A store of `kind` with the user alice (password "secret")."""
    s: Any
    if kind == "memory":
        s = MemoryStore()
    else:
        s = SqliteStore(path)
        await s.open()
        await s.add_domain("example.test")
    await s.add_user("alice@example.test", hash_password("secret"))
    return s


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    s = await open_store(request.param, tmp_path / "db")
    yield s
    await s.close()


class Client:
    """Feeds a core bytes and collects what it answers, as an adapter would."""

    def __init__(self, core: ImapSession) -> None:
        self.core = core
        self.events: list[Event] = []

    async def run(self) -> bytes:
        """Run the core until it needs input (or closes); its output."""
        out = b""
        while True:
            ev = await self.core.next_event()
            out += self.core.data_to_send()
            if ev is NEED_DATA or ev is CLOSE:
                self.events.append(ev)
                return out
            self.events.append(ev)
            if ev is START_TLS:
                return out

    async def say(self, data: bytes) -> bytes:
        self.core.receive_data(data)
        return await self.run()


def session(store: Any, cfg: Settings, *, tls: bool = True, **kw: Any) -> Client:
    async def no_delay(seconds: float) -> None:
        pass  # the limiter's delays are tested in tests/unit/auth

    auth = AuthService(store, cfg.auth, sleep=no_delay)
    core = ImapSession(
        store,
        cfg,
        auth,
        sid="t1",
        tls=tls,
        peer_ip="192.0.2.1",
        plaintext_ok=False,
        **{"spool": lambda: LiteralFile(cfg.server.data_dir / "spool"), **kw},
    )
    return Client(core)


async def logged_in(store: Any, cfg: Settings, **kw: object) -> Client:
    c = session(store, cfg, **kw)
    assert (await c.run()).startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    assert (await c.say(b"a LOGIN alice@example.test secret\r\n")).startswith(
        b"a OK [CAPABILITY IMAP4rev1 IMAP4rev2 "
    )
    return c


async def test_login_select_fetch_search_logout(store: Any, tmp_path: Path) -> None:
    cfg = settings(tmp_path)
    c = session(store, cfg)
    greeting = await c.run()
    assert greeting == (
        b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE AUTH=PLAIN] "
        b"mail.example.test IMAP4rev2 server ready\r\n"
    )
    assert c.core.state is State.NOT_AUTHENTICATED
    out = await c.say(b"a LOGIN alice@example.test secret\r\n")
    assert re.fullmatch(
        rb"a OK \[CAPABILITY IMAP4rev1 IMAP4rev2 [^]]* IDLE [^]]*\] Logged in\r\n", out
    )
    assert c.core.state is State.AUTHENTICATED

    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")  # type: ignore[union-attr]
    assert mbox is not None
    await store.append(mbox.id, new_message(MESSAGE), frozenset({"\\Seen"}))
    await store.append(mbox.id, new_message(MESSAGE.replace(b"lunch", b"dinner")))

    out = await c.say(b"b SELECT INBOX\r\n")
    assert b"* 2 EXISTS\r\n" in out
    assert b"* OK [UIDVALIDITY %d] " % mbox.uidvalidity in out
    assert out.endswith(b"b OK [READ-WRITE] SELECT completed\r\n")
    assert c.core.state is State.SELECTED

    out = await c.say(b"c FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    assert out == (
        b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
        b"Subject: lunch\r\n\r\n)\r\n"
        b"* 2 FETCH (UID 2 FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)] {19}\r\n"
        b"Subject: dinner\r\n\r\n)\r\n"
        b"c OK FETCH completed\r\n"
    )
    assert await c.say(b"d SEARCH UNSEEN SUBJECT dinner\r\n") == (
        b"* SEARCH 2\r\nd OK SEARCH completed\r\n"
    )
    # pipelined: both answered from one read, in order
    out = await c.say(b"e UID SEARCH ALL\r\nf LOGOUT\r\n")
    assert out == (
        b"* SEARCH 1 2\r\ne OK SEARCH completed\r\n* BYE Logging out\r\nf OK LOGOUT completed\r\n"
    )
    assert c.core.state is State.LOGOUT
    assert c.events[-1] is CLOSE
    assert await c.core.next_event() is CLOSE


async def test_append_with_literals(store: Any, tmp_path: Path) -> None:
    # the second literal is above the spool threshold: it streams into a spool file
    spools: list[LiteralFile] = []

    def spool() -> LiteralFile:
        spools.append(LiteralFile(tmp_path / "spool"))
        return spools[-1]

    cfg = settings(tmp_path, spool_threshold=300)
    budget = LiteralBudget(10_000)
    c = await logged_in(store, cfg, budget=budget, spool=spool)
    out = await c.say(b"a APPEND INBOX (\\Flagged) {%d}\r\n" % len(MESSAGE))
    assert out == b"+ Ready for literal data\r\n"
    out = await c.say(MESSAGE + b"\r\n")
    assert re.fullmatch(rb"a OK \[APPENDUID \d+ 1\] APPEND completed\r\n", out)
    assert not spools

    big = MESSAGE + b"x" * 400 + b"\r\n"
    out = await c.say(b"b APPEND INBOX {%d}\r\n" % len(big))
    assert out == b"+ Ready for literal data\r\n"
    user = c.core.session.user
    assert user is not None and budget.held(user.id) == len(big)  # charged while in flight
    assert await c.say(big[:50]) == b""
    assert len(spools) == 1 and spools[0].path.exists()
    out = await c.say(big[50:] + b"\r\n")
    assert re.fullmatch(rb"b OK \[APPENDUID \d+ 2\] APPEND completed\r\n", out)
    assert not spools[0].path.exists() and budget.held(user.id) == 0

    out = await c.say(b"c SELECT INBOX\r\nd FETCH 1:2 (FLAGS RFC822.SIZE)\r\n")
    assert out.endswith(
        b"* 1 FETCH (FLAGS (\\Flagged \\Recent) RFC822.SIZE %d)\r\n" % len(MESSAGE)
        + b"* 2 FETCH (FLAGS (\\Recent) RFC822.SIZE %d)\r\n" % len(big)
        + b"d OK FETCH completed\r\n"
    )
    # LITERAL+ (RFC 7888): no continuation request
    out = await c.say(b"e APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
    assert re.fullmatch(
        rb"\* 3 EXISTS\r\n\* 3 RECENT\r\ne OK \[APPENDUID \d+ 3\] APPEND completed\r\n", out
    )


async def test_literal_refused_before_login(store: Any, tmp_path: Path) -> None:
    c = session(store, settings(tmp_path, max_unauth_literal=10))
    await c.run()
    out = await c.say(b"a LOGIN {11}\r\n")
    assert out == b"a NO [TOOBIG] Literal too large before authentication\r\n"
    assert await c.say(b"b NOOP\r\n") == b"b OK NOOP completed\r\n"


async def test_idle_announces_changes_until_done(store: Any, tmp_path: Path) -> None:
    cfg = settings(tmp_path)
    c = await logged_in(store, cfg)
    await c.say(b"a SELECT INBOX\r\n")
    assert await c.say(b"b IDLE\r\n") == b"+ idling\r\n"
    assert c.events[-2:] == [IDLING, NEED_DATA]
    assert c.core.idling and c.core.wants_changes

    # another session (here: the store directly) adds a message; the feed says so
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")  # type: ignore[union-attr]
    assert mbox is not None and c.core.feed is not None
    await store.append(mbox.id, new_message(MESSAGE))
    c.core.note(await asyncio.wait_for(c.core.feed.get(), 5))
    await c.core.announce()
    assert await c.run() == b"* 1 EXISTS\r\n* 1 RECENT\r\n"

    assert await c.say(b"DO") == b""  # DONE may arrive in pieces
    assert await c.say(b"NE\r\n") == b"b OK IDLE terminated\r\n"
    assert not c.core.idling
    assert await c.say(b"c NOOP\r\n") == b"c OK NOOP completed\r\n"
    # anything but DONE ends IDLE with BAD
    await c.say(b"d IDLE\r\n")
    assert await c.say(b"e NOOP\r\n") == b"d BAD Expected DONE\r\n"


async def test_authenticate_challenge_and_starttls(store: Any, tmp_path: Path) -> None:
    cfg = settings(tmp_path)
    c = session(store, cfg, tls=False)
    assert b"STARTTLS LOGINDISABLED" in await c.run()
    # bytes pipelined after STARTTLS are thrown away (RFC 9051 §6.2.1)
    out = await c.say(b"a STARTTLS\r\nb LOGIN alice@example.test secret\r\n")
    assert out == b"a OK Begin TLS negotiation now\r\n"
    assert c.events[-1] is START_TLS
    c.core.tls_started()
    assert await c.run() == b""
    assert c.core.session.tls and c.core.state is State.NOT_AUTHENTICATED

    assert await c.say(b"c AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert await c.say(b"*\r\n") == b"c BAD Authentication cancelled\r\n"
    assert await c.say(b"d AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    wrong = base64.b64encode(b"\x00alice@example.test\x00wrong")
    assert await c.say(wrong + b"\r\n") == b"d NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    assert c.core.state is State.NOT_AUTHENTICATED
    assert await c.say(b"e AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    right = base64.b64encode(b"\x00alice@example.test\x00secret")
    assert (await c.say(right + b"\r\n")).startswith(b"e OK [CAPABILITY ")
    assert c.core.state is State.AUTHENTICATED


async def test_starttls_failure_ends_the_session(store: Any, tmp_path: Path) -> None:
    c = session(store, settings(tmp_path), tls=False)
    await c.run()
    await c.say(b"a STARTTLS\r\n")
    c.core.tls_failed()
    assert await c.run() == b""
    assert c.events[-1] is CLOSE


async def test_error_paths(store: Any, tmp_path: Path) -> None:
    c = session(store, settings(tmp_path, max_bad_commands=3))
    await c.run()
    assert await c.say(b"a FETCH 1 FLAGS\r\n") == b"a BAD Log in first\r\n"
    assert await c.say(b"b LOGIN alice@example.test wrong\r\n") == (
        b"b NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    )
    assert await c.say(b"c LOGIN alice@example.test secret\r\n") != b""
    assert await c.say(b"d SELECT Nowhere\r\n") == b"d NO [NONEXISTENT] No such mailbox\r\n"
    assert await c.say(b"e FETCH 1 FLAGS\r\n") == b"e BAD No mailbox selected\r\n"
    assert await c.say(b"f FROB\r\n") == b"f BAD Unknown command\r\n"
    assert await c.say(b"g FROB\r\n") == (
        b"g BAD Unknown command\r\n* BYE Too many invalid commands\r\n"
    )
    assert c.events[-1] is CLOSE


async def test_timeout_goodbye_and_eof(store: Any, tmp_path: Path) -> None:
    c = await logged_in(store, settings(tmp_path))
    await c.say(b"a IDLE\r\n")
    c.core.goodbye("Autologout: idle for too long")
    assert await c.run() == b"* BYE Autologout: idle for too long\r\n"
    assert c.events[-1] is CLOSE
    c.core.close()
    assert c.core.feed is None

    c = await logged_in(store, settings(tmp_path))
    assert await c.say(b"") == b""  # EOF: no BYE, the client left
    assert c.events[-1] is CLOSE


async def test_notify_between_commands(store: Any, tmp_path: Path) -> None:
    c = await logged_in(store, settings(tmp_path))
    assert not c.core.wants_changes
    out = await c.say(b"a NOTIFY SET (PERSONAL (MessageNew MessageExpunge))\r\n")
    assert out == b"a OK NOTIFY completed\r\n"
    assert c.core.wants_changes
    assert await c.say(b"b NO") == b""
    assert not c.core.wants_changes  # RFC 5465: never in the middle of a command
    assert await c.say(b"OP\r\n") == b"b OK NOOP completed\r\n"
    assert c.core.wants_changes

    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    assert mbox is not None and c.core.feed is not None
    await store.append(mbox.id, new_message(MESSAGE))
    c.core.note(await asyncio.wait_for(c.core.feed.get(), 5))
    await c.core.announce()
    assert await c.run() == b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
    c.core.feed_lost()  # an overflow: everything is compared again, nothing new
    await c.core.announce()
    assert await c.run() == b""


async def test_large_response_is_flushed_while_it_is_built(store: Any, tmp_path: Path) -> None:
    flushed: list[bytes] = []

    async def flush() -> None:
        flushed.append(c.core.data_to_send())  # the adapter writes and drains here

    c = await logged_in(store, settings(tmp_path), flush=flush)
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    body = MESSAGE + b"y" * (200 * 1024) + b"\r\n"
    for _ in range(3):
        await store.append(mbox.id, new_message(body))
    await c.say(b"a SELECT INBOX\r\n")
    rest = await c.say(b"b FETCH 1:3 BODY.PEEK[]\r\n")
    fetched = [b"* %d FETCH (BODY[] {%d}\r\n%s)\r\n" % (i, len(body), body) for i in (1, 2, 3)]
    # more than HIGH_WATER (256 KiB) was queued after the second message, not before
    assert flushed == [fetched[0] + fetched[1]]
    assert rest == fetched[2] + b"b OK FETCH completed\r\n"


@pytest.mark.parametrize("batch", [1000, 4])  # 4: the next batch is read ahead
async def test_metadata_fetch_answers_as_the_summaries_say(
    store: Any, tmp_path: Path, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FETCH of metadata items alone (rows without a `Message`, one %-format each)
    gives what `responses.fetch` makes of the stored summary, in the items' order,
    for dense and sparse sets, \\Recent included, and a summary intake left out
    worked out from the bytes."""
    monkeypatch.setattr(fetch_command, "META_BATCH", batch)
    c = await logged_in(store, settings(tmp_path))
    user = c.core.session.user
    mbox = await store.get_mailbox(user.id, "INBOX")
    for i in range(10):
        flags = frozenset({"\\Flagged", "$Work"}) if i % 3 == 0 else frozenset()
        await store.append(mbox.id, new_message(MESSAGE.replace(b"lunch", b"meal %d" % i)), flags)
    bare = NewMessage(MESSAGE.replace(b"lunch", b"no summary"), MessageSummary())
    await store.append(mbox.id, bare)
    await c.say(b"s SELECT INBOX\r\n")
    await c.say(b"r UID FETCH 2 FLAGS\r\n")

    def expected(seq: int, m: Any, names: list[str]) -> bytes:
        s = m.summary if m.summary.bodystructure != b"NIL" else summarize(bare.data)
        values: dict[str, r.FetchValue] = {
            "UID": m.uid,
            "FLAGS": m.flags | {"\\Recent"},
            "MODSEQ": r.Raw(b"(%d)" % m.modseq),
            "INTERNALDATE": m.internal_date,
            "RFC822.SIZE": m.size,
            "ENVELOPE": r.Raw(s.envelope),
            "BODYSTRUCTURE": r.Raw(s.bodystructure),
            "BODY": r.Raw(s.body),
        }
        return r.fetch(seq, [(n, values[n]) for n in names])

    rows = await store.list_messages(mbox.id)
    every = ["BODY", "MODSEQ", "ENVELOPE", "UID", "INTERNALDATE", "FLAGS", "BODYSTRUCTURE"]
    every.append("RFC822.SIZE")
    for command, seqs, names in [
        (b"a FETCH 1:* (%s)", range(1, 12), every),
        (b"b UID FETCH 1,10:11 (%s)", (1, 10, 11), ["RFC822.SIZE", "UID", "ENVELOPE"]),
        (b"c FETCH 2,4 (%s)", (2, 4), ["FLAGS", "INTERNALDATE"]),
        (b"d FETCH 1,10:11 (%s)", (1, 10, 11), ["UID", "RFC822.SIZE"]),
        (b"e FETCH 1,11 (%s)", (1, 11), ["BODYSTRUCTURE"]),  # sparse: a query per run
    ]:
        tag = command[:1]
        out = await c.say(command % " ".join(names).encode() + b"\r\n")
        want = b"".join(expected(q, rows[q - 1], names) for q in seqs)
        assert out[: len(want)] == want
        assert re.fullmatch(
            tag + rb" OK (\[HIGHESTMODSEQ \d+\] )?FETCH completed\r\n", out[len(want) :]
        )


async def test_whole_message_fetch_sends_the_bytes(store: Any, tmp_path: Path) -> None:
    """BODY.PEEK[], BODY[] and RFC822 with view items beside (`Store.list_bodies`):
    the stored bytes as literals (a NUL sent as 0x80), dense and sparse sets;
    BODY[] of unseen messages sets \\Seen first and says so (the general path)."""
    c = await logged_in(store, settings(tmp_path))
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    bodies = [MESSAGE.replace(b"lunch", b"meal %d" % i) for i in range(10)]
    bodies[3] = bodies[3].replace(b"Pizza", b"Piz\x00za")
    for data in bodies:
        await store.append(mbox.id, new_message(data), frozenset({"\\Seen"}))
    await c.say(b"s SELECT INBOX\r\n")
    await c.say(b"r UID FETCH 1:* FLAGS\r\n")

    def lit(i: int) -> bytes:
        data = bodies[i - 1].replace(b"\x00", b"\x80")
        return b"{%d}\r\n%s" % (len(data), data)

    out = await c.say(b"a UID FETCH 1,9:10 (UID BODY.PEEK[] FLAGS)\r\n")
    assert (
        out
        == b"".join(
            b"* %d FETCH (UID %d BODY[] %s FLAGS (\\Seen \\Recent))\r\n" % (i, i, lit(i))
            for i in (1, 9, 10)
        )
        + b"a OK FETCH completed\r\n"
    )
    out = await c.say(b"a2 FETCH 1,10 BODY.PEEK[]\r\n")  # sparse: one message at a time
    assert (
        out
        == b"".join(b"* %d FETCH (BODY[] %s)\r\n" % (i, lit(i)) for i in (1, 10))
        + b"a2 OK FETCH completed\r\n"
    )
    out = await c.say(b"b FETCH 3:4 (RFC822 BODY[])\r\n")  # \Seen already: nothing stored
    assert (
        out
        == b"".join(b"* %d FETCH (RFC822 %s BODY[] %s)\r\n" % (i, lit(i), lit(i)) for i in (3, 4))
        + b"b OK FETCH completed\r\n"
    )
    await store.append(mbox.id, new_message(MESSAGE))
    out = await c.say(b"c NOOP\r\nd FETCH 11 BODY[]\r\n")
    assert out.endswith(
        b"* 11 FETCH (BODY[] {%d}\r\n%s FLAGS (\\Seen \\Recent))\r\nd OK FETCH completed\r\n"
        % (len(MESSAGE), MESSAGE)
    )


async def _inbox_of_three(store: Any, c: Client) -> Any:
    user = c.core.session.user
    assert user is not None
    mbox = await store.get_mailbox(user.id, "INBOX")
    assert mbox is not None
    for _ in range(3):
        await store.append(mbox.id, new_message(MESSAGE))
    return mbox


def _code(name: bytes, out: bytes) -> bytes:
    found = re.search(rb"\[" + name + rb" \d+\]", out)
    assert found is not None, out
    return found.group()


async def test_sessions_of_two_stores_never_share_a_view(store: Any, tmp_path: Path) -> None:
    """A mailbox state (id, HIGHESTMODSEQ, UIDNEXT) that sessions share names a state of
    one store only. Two stores in one process (two servers in a test run) reach equal
    ids, MODSEQs and UIDNEXTs with different messages: here the first store expunged
    UID 1 and the second UID 2. With one table for the process, the second session
    was handed the first store's UIDs (mbsync lost a message, a QRESYNC SELECT
    reported UID 2 for UID 3)."""
    other = await open_store(
        "memory" if isinstance(store, MemoryStore) else "sqlite", tmp_path / "b"
    )
    cfg = settings(tmp_path)
    try:
        answers = []
        for s, gone in ((store, 1), (other, 2)):
            c = await logged_in(s, cfg)
            mbox = await _inbox_of_three(s, c)
            await c.say(b"a SELECT INBOX\r\n")
            await c.say(b"b STORE %d +FLAGS.SILENT (\\Deleted)\r\nc EXPUNGE\r\n" % gone)
            await c.say(b"d UNSELECT\r\n")
            out = await c.say(b"e SELECT INBOX\r\n")  # the first session stays selected
            answers.append((c, mbox.id, out))
        (first, first_id, first_out), (second, second_id, second_out) = answers
        # the two states are equal in everything the sharing compares
        assert first_id == second_id
        assert _code(b"HIGHESTMODSEQ", first_out) == _code(b"HIGHESTMODSEQ", second_out)
        assert _code(b"UIDNEXT", first_out) == _code(b"UIDNEXT", second_out) == b"[UIDNEXT 4]"
        assert await first.say(b"f FETCH 1:* (UID)\r\n") == (
            b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\nf OK FETCH completed\r\n"
        )
        assert await second.say(b"f FETCH 1:* (UID)\r\n") == (
            b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\nf OK FETCH completed\r\n"
        )
        # a closed session lets its view go at once (not when the collector runs)
        first.core.close()
        assert first.core.session.view is None
    finally:
        await other.close()


async def test_own_expunge_then_pipelined_store_by_number(store: Any, tmp_path: Path) -> None:
    """After this session's own EXPUNGE the numbers shift for the next command at once
    (RFC 9051 §7.4.1, RFC 7162 §3.2.10), and the feed's echo of that expunge, however
    late or often it comes, changes nothing: the view learns from MODSEQs and
    UIDs, not by counting feed events."""
    c = await logged_in(store, settings(tmp_path))
    mbox = await _inbox_of_three(store, c)
    await c.say(b"a ENABLE QRESYNC\r\nb SELECT INBOX\r\nc STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
    out = await c.say(b"d EXPUNGE\r\ne STORE 2 +FLAGS (\\Seen)\r\n")
    assert re.fullmatch(
        rb"\* VANISHED 1\r\nd OK EXPUNGE completed\r\n"
        rb"\* 2 FETCH \(UID 3 FLAGS \(\\Seen \\Recent\) MODSEQ \(\d+\)\)\r\n"
        rb"e OK STORE completed\r\n",
        out,
    )
    user = c.core.session.user
    assert user is not None
    echo = Change(user.id, mbox.id, ChangeKind.EXPUNGE, 1)  # type: ignore[arg-type]
    c.core.note(echo)  # late, and again
    c.core.note(echo)
    out = await c.say(b"f STORE 2 -FLAGS (\\Seen)\r\ng NOOP\r\n")
    assert re.fullmatch(
        rb"\* 2 FETCH \(UID 3 FLAGS \(\\Recent\) MODSEQ \(\d+\)\)\r\nf OK STORE completed\r\n"
        rb"g OK NOOP completed\r\n",
        out,
    )
    c.core.feed_lost()  # an overflow: everything is compared again, nothing new
    assert await c.say(b"h FETCH 1:* (UID)\r\n") == (
        b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\nh OK FETCH completed\r\n"
    )


#: one whole session as a client might pipeline it (a literal sent before its "+")
SCRIPT = (
    b"a LOGIN alice@example.test secret\r\n"
    b"b APPEND INBOX (\\Seen) {%d}\r\n%s\r\n"
    b"c SELECT INBOX\r\n"
    b"d FETCH 1 (FLAGS ENVELOPE BODY[TEXT])\r\n"
    b"e SEARCH SUBJECT lunch\r\n"
    b"f IDLE\r\nDONE\r\n"
    b"g STORE 1 +FLAGS (\\Flagged)\r\n"
    b"h LOGOUT\r\n"
) % (len(MESSAGE), MESSAGE)
PASSWORD_HASH = hash_password("secret")


def replay(chunks: list[bytes], tmp_path: Path) -> bytes:
    """The whole output of a session fed `chunks` one at a time."""

    async def go() -> bytes:
        store = MemoryStore()
        await store.add_user("alice@example.test", PASSWORD_HASH)
        c = session(store, settings(tmp_path))
        out = await c.run()
        for chunk in chunks:
            out += await c.say(chunk)
        await store.close()
        return out

    return asyncio.run(go())


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(1, len(SCRIPT) - 1), max_size=30))
def test_output_does_not_depend_on_how_input_is_split(cuts: list[int], tmp_path: Path) -> None:
    whole = replay([SCRIPT], tmp_path)
    assert whole.endswith(b"* BYE Logging out\r\nh OK LOGOUT completed\r\n")
    assert whole.count(b"+ Ready for literal data\r\n") == 1
    bounds = [0, *sorted(set(cuts)), len(SCRIPT)]
    chunks = [SCRIPT[i:j] for i, j in itertools.pairwise(bounds)]
    assert replay(chunks, tmp_path) == whole


def _parses_on_loop(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Spy on `mime.parse`: one entry per call, whether it ran on the loop's thread."""
    loop_thread = threading.current_thread()
    on_loop: list[bool] = []
    real_parse = mime.parse

    def parse(data: bytes) -> Any:
        on_loop.append(threading.current_thread() is loop_thread)
        return real_parse(data)

    monkeypatch.setattr(mime, "parse", parse)
    return on_loop


def _padded(message: bytes) -> bytes:
    """`message` with ~32 KB more header: over INLINE_MAX."""
    return message.replace(b"\r\n\r\n", b"\r\n" + b"X-Pad: %s\r\n" % (b"p" * 70) * 400 + b"\r\n")


async def test_a_large_messages_sections_are_cut_out_off_the_loop(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A section below the top level (or HEADER.FIELDS) needs the message parsed:
    linear, but 100,000 header fields or 50,000 parts held the loop 430 ms. Above
    `INLINE_MAX` octets the parse and the cut run in a search thread; a small
    message's stay on the loop (no thread hop). The answers are the same."""
    parsed_in = _parses_on_loop(monkeypatch)
    c = await logged_in(store, settings(tmp_path))
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    big = _padded(MESSAGE)
    assert len(big) > INLINE_MAX
    for data in (MESSAGE, big):
        await store.append(mbox.id, new_message(data), frozenset({"\\Seen"}))
    await c.say(b"s SELECT INBOX\r\n")
    out = await c.say(b"f FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BINARY.SIZE[1])\r\n")
    assert (
        out
        == b"".join(
            b"* %d FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: lunch\r\n\r\n"
            b" BINARY.SIZE[1] 16)\r\n" % i
            for i in (1, 2)
        )
        + b"f OK FETCH completed\r\n"
    )
    assert parsed_in == [True, False]  # once per message: the second item reuses it


async def test_a_response_per_message_gives_the_loop_turns(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STORE (and FETCH) answer each message in `maybe_drain`'s loop; every
    `YIELD_EVERY` responses the loop gets a turn, even when no flush waits (a
    STORE 1:* on 8,000 messages held it 27 ms in one step)."""
    from postier.imap.commands import context

    pauses: list[int] = []
    real_pause = context._pause

    async def pause() -> None:
        pauses.append(len(pauses))
        await real_pause()

    monkeypatch.setattr(context, "YIELD_EVERY", 10)
    monkeypatch.setattr(context, "_pause", pause)
    c = await logged_in(store, settings(tmp_path))
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    for _ in range(25):
        await store.append(mbox.id, new_message(MESSAGE))
    await c.say(b"s SELECT INBOX\r\n")
    pauses.clear()
    out = await c.say(b"t STORE 1:* +FLAGS (\\Flagged)\r\n")
    assert out.count(b" FETCH (FLAGS (\\Flagged \\Recent))\r\n") == 25
    assert len(pauses) >= 2  # 25 responses, a turn every 10 calls (others count too)
    pauses.clear()
    out = await c.say(b"f FETCH 1:* (FLAGS)\r\n")
    assert out.endswith(b"f OK FETCH completed\r\n")
    assert len(pauses) >= 2  # 25 responses, a turn every 10 calls (others count too)


async def test_pipelined_commands_give_the_loop_turns(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command a read holds ran in one step of the loop: 30,000 pipelined
    NOOPs (240 KB) held it 47 ms. After each command the core calls
    `maybe_drain`, which flushes past HIGH_WATER and gives the loop a turn every
    `YIELD_EVERY` calls."""
    from postier.imap.commands import context

    pauses: list[int] = []
    real_pause = context._pause

    async def pause() -> None:
        pauses.append(len(pauses))
        await real_pause()

    monkeypatch.setattr(context, "YIELD_EVERY", 10)
    monkeypatch.setattr(context, "_pause", pause)
    c = await logged_in(store, settings(tmp_path))
    pauses.clear()
    out = await c.say(b"n NOOP\r\n" * 45)
    assert out == b"n OK NOOP completed\r\n" * 45
    assert len(pauses) >= 4


async def test_list_patterns_are_bounded_and_many_matches_run_off_the_loop(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each LIST pattern is matched against every mailbox name: 7,000 "*Qn"
    patterns against 1,007 names held the loop 12.5 s. More than MAX_PATTERNS
    is NO [LIMIT]; past INLINE_MATCHES name × pattern matches, the matching
    runs in a search thread. The answer is the same."""
    from postier.imap.commands import mailboxes

    loop_thread = threading.current_thread()
    ran_on_loop: list[bool] = []
    real = mailboxes._matching

    def matching(names: list[str], patterns: list[Any]) -> list[str]:
        ran_on_loop.append(threading.current_thread() is loop_thread)
        return real(names, patterns)

    monkeypatch.setattr(mailboxes, "_matching", matching)
    c = await logged_in(store, settings(tmp_path))
    for name in (b"a1", b"a2", b"b1"):
        assert (await c.say(b"c CREATE " + name + b"\r\n")).endswith(b"c OK CREATE completed\r\n")
    want = (
        b'* LIST (\\HasNoChildren) "/" a1\r\n* LIST (\\HasNoChildren) "/" b1\r\n'
        b"l OK LIST completed\r\n"
    )
    assert await c.say(b'l LIST "" (*1 "*Q")\r\n') == want
    monkeypatch.setattr(mailboxes, "INLINE_MATCHES", 2)
    assert await c.say(b'l LIST "" (*1 "*Q")\r\n') == want
    assert ran_on_loop == [True, False]
    many = b" ".join(b'"*Q%d"' % i for i in range(mailboxes.MAX_PATTERNS + 1))
    out = await c.say(b'm LIST "" (' + many + b")\r\n")
    assert out == b"m NO [LIMIT] Too many mailbox patterns\r\n"


async def test_a_fetch_of_too_many_items_is_refused(store: Any, tmp_path: Path) -> None:
    """Each item is answered for every message: 6,000 FLAGS items over 2,000
    messages held the loop 2.2 s. More than MAX_ITEMS is NO [LIMIT]."""
    c = await logged_in(store, settings(tmp_path))
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    await store.append(mbox.id, new_message(MESSAGE), frozenset({"\\Seen"}))
    await c.say(b"s SELECT INBOX\r\n")
    most = b" ".join([b"FLAGS"] * fetch_command.MAX_ITEMS)
    out = await c.say(b"f FETCH 1 (" + most + b")\r\n")
    assert out.endswith(b"f OK FETCH completed\r\n")
    out = await c.say(b"g UID FETCH 1:* (" + most + b" UID)\r\n")
    assert out == b"g NO [LIMIT] Too many fetch items\r\n"


async def test_fetch_items_count_towards_the_loops_turns(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response's cost is its items: FETCH 1:* of 256 FLAGS items over 10,001
    messages held the loop 106 ms between turns counted by message."""
    from postier.imap.commands import context

    pauses: list[int] = []
    real_pause = context._pause

    async def pause() -> None:
        pauses.append(len(pauses))
        await real_pause()

    monkeypatch.setattr(context, "YIELD_EVERY", 10)
    monkeypatch.setattr(context, "_pause", pause)
    monkeypatch.setattr(fetch_command, "META_BATCH", 20)  # ENVELOPE: a message a step
    c = await logged_in(store, settings(tmp_path))
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    for _ in range(3):
        await store.append(mbox.id, new_message(MESSAGE))
    await c.say(b"s SELECT INBOX\r\n")
    for items in (b"FLAGS", b"ENVELOPE", b"BODY.PEEK[1]"):
        pauses.clear()
        out = await c.say(b"f FETCH 1:* (" + b" ".join([items] * 20) + b")\r\n")
        assert out.endswith(b"f OK FETCH completed\r\n")
        assert len(pauses) >= 3, items  # 60 items, a turn every 10


async def test_catenate_cuts_a_large_messages_section_off_the_loop(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CATENATE URL naming a section needs its message parsed: above
    INLINE_MAX in a search thread, as FETCH's sections; a small one on the loop."""
    parsed_on_loop = _parses_on_loop(monkeypatch)
    c = await logged_in(store, settings(tmp_path))
    mbox = await store.get_mailbox(c.core.session.user.id, "INBOX")
    big = _padded(MESSAGE)
    for data in (MESSAGE, big):
        await store.append(mbox.id, new_message(data))
    for uid in (1, 2):
        out = await c.say(
            b'a APPEND INBOX CATENATE (URL "/INBOX/;UID=%d/;SECTION=1" TEXT {2+}\r\n!\n)\r\n' % uid
        )
        assert b"a OK [APPENDUID " in out
    assert parsed_on_loop == [True, False]
