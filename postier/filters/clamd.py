"""The clamd stage: scan the message with a ClamAV daemon over INSTREAM.

Protocol (clamd(8)): send ``zINSTREAM\\0``, then the data in chunks, each
preceded by its length as a 4-byte big-endian integer, then a zero-length
chunk; clamd answers one NUL-terminated line: ``stream: OK``,
``stream: <signature> FOUND`` or ``... ERROR``.

Rules:
- The socket is a unix socket path, or ``host:port`` for TCP.
- FOUND refuses with ``554 5.7.1`` naming the signature. Anything else that
  goes wrong (cannot connect, timeout, ERROR such as "size limit exceeded")
  accepts when `fail_open`, else tempfails with ``451 4.7.0``; it is logged
  and traced either way.
- The whole scan is bounded by `timeout`; the reply by `max_reply` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence

from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.virus import R554_VIRUS
from postier.smtp.replies import Reply

R451_SCANNER_DOWN = Reply(451, "4.7.0", "Virus scanner unavailable, try again later")


class ClamdError(Exception):
    pass


def _split_tcp(socket: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"\[?([0-9A-Za-z.:-]+?)\]?:(\d{1,5})", socket)
    if m and not socket.startswith("/"):
        return m.group(1), int(m.group(2))
    return None


async def instream(
    socket: str,
    data: bytes,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 (bounds the whole exchange)
    chunk_size: int = 64 * 1024,
    max_reply: int = 4096,
) -> str:
    """clamd's answer for `data`, without the ``stream: `` prefix and the NUL."""

    async def go() -> str:
        tcp = _split_tcp(socket)
        if tcp is not None:
            reader, writer = await asyncio.open_connection(*tcp)
        else:
            reader, writer = await asyncio.open_unix_connection(socket)
        try:
            writer.write(b"zINSTREAM\0")
            for i in range(0, len(data), chunk_size):
                chunk = data[i : i + chunk_size]
                writer.write(len(chunk).to_bytes(4, "big") + chunk)
                await writer.drain()
            writer.write(b"\0\0\0\0")
            await writer.drain()
            reply = b""
            while b"\0" not in reply and len(reply) < max_reply:
                got = await reader.read(max_reply)
                if not got:
                    break
                reply += got
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        text = reply.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        return text.removeprefix("stream:").strip()

    try:
        async with asyncio.timeout(timeout):
            return await go()
    except TimeoutError:
        raise ClamdError("timeout") from None
    except (OSError, ConnectionError) as e:
        raise ClamdError(f"cannot talk to clamd at {socket}: {e}") from None


class ClamdStage:
    name = "clamd"
    phases = frozenset({Phase.DATA})

    def __init__(
        self,
        socket: str,
        *,
        timeout: float = 30.0,
        fail_open: bool = True,
        chunk_size: int = 64 * 1024,
    ) -> None:
        self.socket = socket
        self.timeout = timeout
        self.fail_open = fail_open
        self.chunk_size = chunk_size

    def _trouble(self, why: str) -> list[Verdict]:
        if self.fail_open:
            return [Verdict.accept(self.name, f"not scanned: {why} (fail open)")]
        return [Verdict.tempfail(self.name, R451_SCANNER_DOWN, why)]

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.message is None:
            return []
        try:
            answer = await instream(
                self.socket, ctx.message, timeout=self.timeout, chunk_size=self.chunk_size
            )
        except ClamdError as e:
            return self._trouble(str(e))
        if answer.endswith(" FOUND"):
            signature = answer.removesuffix(" FOUND").strip()
            return [Verdict.reject(self.name, R554_VIRUS(signature), f"clamd: {signature}")]
        if answer == "OK":
            return []
        return self._trouble(f"clamd said {answer!r}")
