"""Fuzz target ``filters``: the MX filter pipeline (postier/filters) on whole messages,
every stage on, DNS from a fake zone (postier/dns/fake.py), a SQLite store in a
temporary folder.

Input: the raw message bytes as DATA delivered them. The envelope is fixed (client
192.0.2.10, HELO mail.example.test, recipient alice@example.test) except the
sender: the address of a ``Return-Path:`` line of the message when it parses as an
SMTP address, else user@example.test. The zone publishes SPF, DKIM (the key of
tests/fuzz/dkim_key.pem), DMARC, PTR and DNSBL records for example.test.

Allowed: verdicts and replies. A stage that raises is a bug (the pipeline turns it
into 451 4.3.0, a temporary failure for a message that will fail the same way on
every retry): the harness catches the pipeline's log record and raises it.
Checked: the added header fields are CRLF-terminated ``Name: value`` lines with
folding only, and no line over 998 octets (RFC 5322 §2.1.1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import shutil
import tempfile
import traceback
from pathlib import Path

from postier.config.schema import DnsblSettings, Settings
from postier.dns.fake import FakeResolver
from postier.filters.build import Filters
from postier.filters.pipeline import Phase
from postier.mail.address import Address, AddressError
from postier.mail.role import IntakeRole
from postier.mime.message import ParsedMessage
from postier.store.sqlite import SqliteStore
from tests.fuzz.fuzz_dkim import KEY_RECORD

_IP = "192.0.2.10"
_ZONE = {
    "example.test": {
        "TXT": ["v=spf1 ip4:192.0.2.0/24 include:inc.example.test -all"],
        "MX": [(10, "mail.example.test")],
        "A": [_IP],
    },
    "inc.example.test": {"TXT": ["v=spf1 a:mail.example.test ~all"]},
    "mail.example.test": {"A": [_IP]},
    "10.2.0.192.in-addr.arpa": {"PTR": ["mail.example.test"]},
    "sel._domainkey.example.test": {"TXT": [KEY_RECORD]},
    "_dmarc.example.test": {"TXT": ["v=DMARC1; p=quarantine; sp=reject; pct=100"]},
    "_dmarc.other.test": {"TXT": ["v=DMARC1; p=reject; adkim=s; aspf=s"]},
    "10.2.0.192.bl.example.test": {"A": ["127.0.0.2"], "TXT": ["listed"]},
}
# RFC 5322 §2.2: field-name ":" unstructured, folded lines start with WSP
_FIELD = re.compile(rb"[!-9;-~]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")
_RETURN_PATH = re.compile(rb"(?im)^Return-Path:[ \t]*<([^>\r\n]*)>")


class _Crashes(logging.Handler):
    """Collects the tracebacks the pipeline logs when a stage raises."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.found.append("".join(traceback.format_exception(*record.exc_info)))


class _World:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="postier-fuzz-filters-"))
        self.store = SqliteStore(self.folder / "data")
        self.loop.run_until_complete(self.store.open())
        self.loop.run_until_complete(self.store.add_domain("example.test"))
        settings = Settings()
        settings = dataclasses.replace(
            settings,
            dnsbl=DnsblSettings(enabled=True, zones=("bl.example.test",)),
        )
        self.filters = Filters(settings, self.store, FakeResolver(_ZONE), clock=lambda: 1.8e9)
        self.crashes = _Crashes()
        logging.getLogger("postier.filters").addHandler(self.crashes)

    def close(self) -> None:
        logging.getLogger("postier.filters").removeHandler(self.crashes)
        self.loop.run_until_complete(self.store.close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_world: _World | None = None


def close() -> None:
    """Release the store and the loop (the corpus replay calls it at the end)."""
    global _world
    if _world is not None:
        _world.close()
        _world = None


def _sender(data: bytes) -> str:
    m = _RETURN_PATH.search(data[:4096])
    if m is not None:
        try:
            return str(Address.parse(m.group(1).decode("utf-8", "replace")))
        except AddressError:
            pass
    return "user@example.test"


async def _run(world: _World, data: bytes) -> bytes:
    f = world.filters
    ctx = f.context("S1", IntakeRole.MX, _IP)
    await f.run(Phase.CONNECT, ctx)
    ctx.helo = "mail.example.test"
    await f.run(Phase.HELO, ctx)
    ctx.begin("Q1", _sender(data))
    if await f.run(Phase.MAIL, ctx) is not None:
        return b""
    ctx.recipient = "alice@example.test"
    await f.run(Phase.RCPT, ctx)
    ctx.recipients.append(ctx.recipient)
    ctx.load(ParsedMessage.of(data), max_scan_size=len(data))
    outcome = await f.end_of_data(ctx)
    if outcome.reply is not None:
        assert 400 <= outcome.reply.code < 600
    return outcome.headers


def check(data: bytes) -> None:
    global _world
    if _world is None:
        _world = _World()
    world = _world
    world.crashes.found.clear()
    added = world.loop.run_until_complete(_run(world, data))
    if world.crashes.found:
        raise AssertionError("a filter stage raised:\n" + world.crashes.found[0])
    pos = 0
    for m in _FIELD.finditer(added):
        assert m.start() == pos, added
        pos = m.end()
        for line in m.group().split(b"\r\n"):
            assert len(line) <= 998, len(line)
    assert pos == len(added), added
