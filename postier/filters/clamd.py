"""The clamd stage: scan the message with a ClamAV daemon over INSTREAM.

Protocol (clamd(8)): send ``zINSTREAM\\0``, then the data in chunks, each
preceded by its length as a 4-byte big-endian integer, then a zero-length
chunk; clamd answers one NUL-terminated line: ``stream: OK``,
``stream: <signature> FOUND`` or ``... ERROR``.

Rules:
- The socket is a unix socket path, or ``host:port`` for TCP.
- Every message is scanned whatever its size (`filters.max_scan_size` is for
  the text stages): the spool file is streamed, a block at a time, never
  loaded whole into memory.
- FOUND refuses with ``554 5.7.1`` naming the signature. A message larger than
  clamd's own StreamMaxLength ("INSTREAM size limit exceeded") cannot be
  scanned by it, now or later: it is accepted with the rule CLAMD_SIZE_LIMIT
  (weight 0: it shows in X-Spam-Report and the trace). Anything else that
  goes wrong (cannot connect, timeout, another ERROR) accepts when
  `fail_open`, else tempfails with ``451 4.7.0``; it is logged and traced
  either way.
- The whole scan is bounded by `timeout`; the reply by `max_reply` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket as _socket
from collections.abc import Generator, Iterator, Sequence

from postier.filters.pipeline import Context, MessageSource, Phase, Verdict
from postier.filters.spam import Weights
from postier.filters.virus import R554_VIRUS
from postier.mail.replies import Reply

R451_SCANNER_DOWN = Reply(451, "4.7.0", "Virus scanner unavailable, try again later")
_READ_BLOCK = 1024 * 1024  # spool file reads, each in a worker thread


class ClamdError(Exception):
    pass


def _split_tcp(socket: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"\[?([0-9A-Za-z.:-]+?)\]?:(\d{1,5})", socket)
    if m and not socket.startswith("/"):
        return m.group(1), int(m.group(2))
    return None


async def instream(
    socket: str,
    data: bytes | MessageSource,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 (bounds the whole exchange)
    chunk_size: int = 64 * 1024,
    max_reply: int = 4096,
) -> str:
    """clamd's answer for `data` (bytes, or a message streamed from the spool),
    without the ``stream: `` prefix and the NUL.

    Plain non-blocking socket calls, not asyncio streams: past its
    StreamMaxLength clamd answers and closes while we still send; the write
    fails, and a stream would then refuse to hand over the answer it holds."""
    loop = asyncio.get_running_loop()

    async def send(sock: _socket.socket) -> None:
        if isinstance(data, bytes):
            blocks: Iterator[bytes] = iter([data])
        else:
            blocks = data.chunks(_READ_BLOCK)
        try:
            while True:
                block = (
                    next(blocks, None)
                    if isinstance(data, bytes)
                    else await asyncio.to_thread(next, blocks, None)  # a file read
                )
                if block is None:
                    break
                for i in range(0, len(block), chunk_size):
                    chunk = block[i : i + chunk_size]
                    await loop.sock_sendall(sock, len(chunk).to_bytes(4, "big") + chunk)
        finally:
            # the spool file, now (a timeout, clamd's early answer); not while a
            # worker thread is still reading it ("generator already executing")
            if isinstance(blocks, Generator):
                with contextlib.suppress(ValueError):
                    blocks.close()
        await loop.sock_sendall(sock, b"\0\0\0\0")

    async def go() -> str:
        tcp = _split_tcp(socket)
        address: str | tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]
        if tcp is not None:
            infos = await loop.getaddrinfo(*tcp, type=_socket.SOCK_STREAM)
            family, kind, proto, _, address = infos[0]
            sock = _socket.socket(family, kind, proto)
        else:
            sock, address = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM), socket
        with sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            await loop.sock_sendall(sock, b"zINSTREAM\0")
            # past its size limit clamd stops reading: its answer is waiting all the same
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await send(sock)
            reply = b""
            while b"\0" not in reply and len(reply) < max_reply:
                got = await loop.sock_recv(sock, max_reply)
                if not got:
                    break
                reply += got
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
        weights: Weights | None = None,
    ) -> None:
        self.weights = weights or Weights()
        self.socket = socket
        self.timeout = timeout
        self.fail_open = fail_open
        self.chunk_size = chunk_size

    def _trouble(self, why: str) -> list[Verdict]:
        if self.fail_open:
            return [Verdict.accept(self.name, f"not scanned: {why} (fail open)")]
        return [Verdict.tempfail(self.name, R451_SCANNER_DOWN, why)]

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        data: bytes | MessageSource | None = ctx.message if ctx.message is not None else ctx.source
        if data is None:
            return []
        try:
            answer = await instream(
                self.socket, data, timeout=self.timeout, chunk_size=self.chunk_size
            )
        except ClamdError as e:
            return self._trouble(str(e))
        if answer.endswith(" FOUND"):
            signature = answer.removesuffix(" FOUND").strip()
            return [Verdict.reject(self.name, R554_VIRUS(signature), f"clamd: {signature}")]
        if answer == "OK":
            return []
        if "size limit exceeded" in answer.lower():  # StreamMaxLength: never scannable
            size = data.size if not isinstance(data, bytes) else len(data)
            return [
                Verdict.scored(
                    self.name,
                    "CLAMD_SIZE_LIMIT",
                    self.weights["CLAMD_SIZE_LIMIT"],
                    f"not scanned: {size} octets are over clamd's StreamMaxLength",
                )
            ]
        return self._trouble(f"clamd said {answer!r}")
