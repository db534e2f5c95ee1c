"""One parse per message at intake (issue 12): with the DKIM, SPF, DMARC, ARC,
header, Bayes and virus stages all running, the message's header block is split
once and its MIME tree parsed once, whatever its size; nothing else re-reads it
(dkimpy's own parser, `HeaderView.of`, the store's summarising), and a spooled
message's file becomes its blob without being copied or rewritten."""

from __future__ import annotations

import imaplib
import poplib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postier.filters import bayes
from postier.filters.virus import Scanner
from postier.mail.headers import HeaderView
from postier.mailauth.dkimpy import dkim
from postier.mime.message import parse_header
from postier.mime.parse import parse, parse_fields
from tests.integration.smtp_helpers import body_after_trace, inbox
from tests.integration.test_filters import MSG, qid_of, send, start, zones
from tests.support.dnsserver import DnsTestServer
from tests.support.server import PASSWORD, ServerThread
from tests.unit.mailauth.dkim_keys import sign

LARGE = 600 * 1024  # over smtp.limits.spool_threshold (256 KiB): spooled to a file


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with DnsTestServer(zones()) as dns:
        srv = start(
            tmp_path, f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\ntimeout = 2\n'
        )
        try:
            srv.call(_train_global_model(srv))  # so that Bayes tokenizes every message
            yield srv
        finally:
            srv.stop()


async def _train_global_model(srv: ServerThread) -> None:
    """Through `bayes.train`, which also forgets the process-wide "is it trained
    yet" answers an earlier test may have left."""
    user = await srv.store.get_user("bob@example.test")
    for i in range(10):
        spam = b"Subject: winner %d\r\n\r\nprize winner\r\n" % i
        ham = b"Subject: statement %d\r\n\r\nstatement ready\r\n" % i
        assert await bayes.train(srv.store, user.id, spam, True)
        assert await bayes.train(srv.store, user.id, ham, False)


def count_calls(monkeypatch: pytest.MonkeyPatch, counts: Counter[str], name: str, fn: Any) -> None:
    """Replace `fn` by a counting wrapper wherever a postier module (or dkimpy)
    holds it, so a call through any import of it is counted."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return fn(*args, **kwargs)

    for module in list(sys.modules.values()):
        module_name = getattr(module, "__name__", "")
        if not (module_name.startswith("postier") or module_name == "dkim"):
            continue
        for attr, value in list(vars(module).items()):
            if value is fn:
                monkeypatch.setattr(module, attr, wrapper)


def count_method(
    monkeypatch: pytest.MonkeyPatch,
    counts: Counter[str],
    name: str,
    owner: type,
    attr: str,
    wrap: Callable[[Any], Any] = lambda f: f,
) -> None:
    original = vars(owner)[attr]
    fn = original.__func__ if isinstance(original, classmethod) else original

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return fn(*args, **kwargs)

    monkeypatch.setattr(owner, attr, classmethod(wrapper) if fn is not original else wrapper)


@pytest.mark.parametrize("size", [2_000, LARGE], ids=["small", "spooled"])
def test_the_message_is_parsed_once_with_every_stage_enabled(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    body = (b"Your statement is ready, winner of a prize.\r\n" * (size // 46 + 1))[:size]
    message = sign(MSG.replace(b"Your statement is ready.\r\n", b"") + body + b"\r\n", "bank.test")
    counts: Counter[str] = Counter()
    count_calls(monkeypatch, counts, "mime parse", parse)
    count_calls(monkeypatch, counts, "header split", parse_header)
    count_calls(monkeypatch, counts, "dkimpy rfc822_parse", dkim.rfc822_parse)
    count_calls(monkeypatch, counts, "header fields", parse_fields)
    count_method(monkeypatch, counts, "HeaderView.of", HeaderView, "of")
    count_method(monkeypatch, counts, "bayes tokenize", bayes, "tokenize")
    count_method(monkeypatch, counts, "virus scan", Scanner, "scan_message")

    replies = send(server.port("mx"), "alice@bank.test", "bob@example.test", message)
    qid_of(replies[4])

    [stored] = inbox(server, "bob@example.test")
    assert body_after_trace(stored) == message
    # every stage ran on this message, on the one parse
    assert b"\tspf=fail smtp.mailfrom=bank.test;\r\n" in stored
    assert b"\tdkim=pass header.d=bank.test header.s=sel" in stored
    assert b"\tdmarc=pass (p=REJECT dis=NONE dkim aligned) header.from=bank.test;\r\n" in stored
    assert b"\tarc=none\r\n" in stored
    assert b"X-Spam-Status: " in stored
    assert counts["bayes tokenize"] == 1
    assert counts["virus scan"] == 1
    # ... and the message was split once: one header split, one MIME parse, none else
    assert counts["header split"] == 1
    assert counts["mime parse"] == 1
    assert counts["dkimpy rfc822_parse"] == 0
    assert counts["HeaderView.of"] == 0
    # the MIME parser splits only headers it has not been given (single part: none),
    # and the fields intake puts on top (trace, verdicts) hold none the stored
    # summary reads, so they are not split either
    assert counts["header fields"] == 0


def test_a_spooled_message_file_becomes_the_blob(server: ServerThread) -> None:
    """Fields added on top live in the index; the spool file is renamed into place
    holding the client's bytes exactly as they arrived."""
    message = MSG.replace(b"@bank.test", b"@good.test") + b"x" * LARGE + b"\r\n"
    replies = send(server.port("mx"), "alice@good.test", "bob@example.test", message)
    qid_of(replies[4])
    [stored] = inbox(server, "bob@example.test")
    assert body_after_trace(stored) == message
    files = [p for p in (server.settings.server.data_dir / "blobs").glob("*/*") if p.is_file()]
    assert [p.read_bytes() for p in files] == [message]

    async def summary() -> Any:
        user = await server.store.get_user("bob@example.test")
        mb = await server.store.get_mailbox(user.id, "INBOX")
        [m] = await server.store.list_messages(mb.id)
        return m

    m = server.call(summary())
    assert m.size == len(stored)
    assert m.summary.header_size == stored.index(b"\r\n\r\n") + 4
    assert m.summary.crlf_size == len(stored)  # DATA: CRLF line ends only
    # what IMAP and POP3 clients see: the head and the file as one message
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login("bob@example.test", PASSWORD)
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[]<100.50> BODY.PEEK[TEXT])")
        assert typ == "OK"
        assert data[0][0].endswith(b"RFC822.SIZE %d BODY[]<100> {50}" % len(stored))
        assert data[0][1] == stored[100:150]
        assert data[1][1] == message[message.index(b"\r\n\r\n") + 4 :]
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    try:
        pop.user("bob@example.test")
        pop.pass_(PASSWORD)
        assert pop.list()[1] == [b"1 %d" % len(stored)]
    finally:
        pop.quit()
