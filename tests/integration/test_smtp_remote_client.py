"""What a client that is *not* on loopback sees: the adapter driven over a socket
pair with a remote peer address (no network needed)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from postier.smtp.server import make_handler
from tests.support.remote import remote_session


async def _smtp_reply(reader: asyncio.StreamReader, _line: bytes) -> bytes:
    line = await reader.readline()
    reply = line
    while line[3:4] == b"-":
        line = await reader.readline()
        reply += line
    return reply


async def _session(
    tmp_path: Path, script: list[bytes], *, allow_plain: bool = False, listener: str = "submission"
) -> list[bytes]:
    return await remote_session(
        tmp_path, make_handler, listener, script, _smtp_reply, allow_plain=allow_plain
    )


PLAIN = b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0pw")


async def test_auth_not_offered_before_tls_to_remote_client(tmp_path: Path) -> None:
    replies = await _session(tmp_path, [b"EHLO remote.test", PLAIN])
    assert b"AUTH" not in replies[1]
    assert b"STARTTLS" in replies[1]
    assert (
        replies[2] == b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    )


async def test_allow_plaintext_auth_offers_auth(tmp_path: Path) -> None:
    replies = await _session(tmp_path, [b"EHLO remote.test", PLAIN], allow_plain=True)
    assert b"250-AUTH PLAIN LOGIN\r\n" in replies[1]
    assert replies[2] == b"235 2.7.0 Authentication successful\r\n"


async def test_mx_never_offers_auth(tmp_path: Path) -> None:
    replies = await _session(
        tmp_path,
        [b"EHLO remote.test", PLAIN, b"MAIL FROM:<x@far.test>", b"RCPT TO:<y@far.test>"],
        allow_plain=True,
        listener="mx",
    )
    assert b"AUTH" not in replies[1]
    assert replies[2].startswith(b"503 ")
    assert replies[4] == b"554 5.7.1 <y@far.test>: Relay access denied\r\n"
