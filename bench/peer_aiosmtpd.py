"""The Python peer of the SMTP intake bench: an aiosmtpd server whose handler writes
each message into a Maildir and fsyncs it before answering 250.

Run as its own process (``python bench/peer_aiosmtpd.py PORT MAILDIR``) so it has an
interpreter and a GIL of its own, as postier does. It prints ``ready`` once listening
and stops on SIGTERM.

Durability is the same promise postier makes: the file is written to ``tmp/``,
fsynced, and renamed into ``new/`` before the 250 (the Maildir delivery protocol).
The blocking write runs in the default thread pool, so concurrent sessions overlap
their fsyncs instead of stalling the loop (the fastest plain aiosmtpd handler; a
handler that blocks the loop is slower still). uvloop is used when installed, as
postier uses it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "_")


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self.tmp = maildir / "tmp"
        self.new = maildir / "new"
        for d in (self.tmp, self.new):
            d.mkdir(parents=True, exist_ok=True)

    def _deliver(self, data: bytes) -> None:
        name = f"{os.getpid()}.{next(_counter)}.{_HOST}"
        tmp = self.tmp / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.new / name)

    async def handle_DATA(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
    ) -> str:
        content = envelope.original_content or b""
        await asyncio.get_running_loop().run_in_executor(None, self._deliver, content)
        return "250 2.0.0 Ok: queued"


async def serve(port: int, maildir: Path) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(
            handler,
            hostname="aiosmtpd.bench.test",
            data_size_limit=60_000_000,
            enable_SMTPUTF8=True,
        )

    server = await loop.create_server(factory, "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    port, maildir = int(sys.argv[1]), Path(sys.argv[2])
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port, maildir))
    else:
        uvloop.run(serve(port, maildir))


if __name__ == "__main__":
    main()
