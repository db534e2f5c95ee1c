"""Helpers for SMTP integration tests: read a user's mailbox, talk raw SMTP."""

from __future__ import annotations

import socket
import time
from typing import Any

from tests.support.server import ServerThread


def inbox(srv: ServerThread, address: str, mailbox: str = "INBOX") -> list[bytes]:
    """Every message in the user's mailbox, as stored, ascending by UID."""

    async def go() -> list[bytes]:
        user = await srv.store.get_user(address)
        mb = await srv.store.get_mailbox(user.id, mailbox)
        return [await srv.store.read_blob(m.blob_id) for m in await srv.store.list_messages(mb.id)]

    result: list[bytes] = srv.call(go())
    return result


def body_after_trace(message: bytes) -> bytes:
    """The message without the fields the server prepended (Return-Path:, Received:,
    the filters' Authentication-Results: and X-Spam-*: and, on submission,
    Date:/Message-ID:)."""
    pos = 0
    prepended = (
        b"Return-Path:",
        b"Received:",
        b"Authentication-Results:",
        b"X-Spam-Status:",
        b"X-Spam-Report:",
    )
    while True:
        line_end = message.find(b"\r\n", pos)
        line = message[pos:line_end]
        # a continuation line at the top belongs to a Received: we are skipping
        if line.startswith(prepended) or (pos and line[:1] in (b" ", b"\t")):
            pos = line_end + 2
            continue
        return message[pos:]


class Raw:
    """A raw SMTP client on a socket: send bytes, read replies."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One whole (possibly multi-line) reply."""
        while True:
            lines = self.buf.split(b"\r\n")
            for i, line in enumerate(lines[:-1]):
                if (len(line) >= 4 and line[3:4] == b" ") or len(line) == 3:
                    out = b"\r\n".join(lines[: i + 1]) + b"\r\n"
                    self.buf = self.buf[len(out) :]
                    return out
            chunk = self.sock.recv(65536)
            if not chunk:
                out, self.buf = self.buf, b""
                return out
            self.buf += chunk

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5) -> bool:
        """True when the server closed the connection (after any pending bytes)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
