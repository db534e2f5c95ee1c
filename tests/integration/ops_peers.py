"""Scripted SMTP peers for the operator-tool tests: a tiny asyncio SMTP server
whose replies a test dictates, bound to 127.0.0.x on a shared port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Script:
    greeting: str = "220 mx.peer.test ESMTP"
    ehlo: str = "250-mx.peer.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES"
    mail: str = "250 2.1.0 Ok"
    rcpt: Callable[[str], str] = lambda address: "250 2.1.5 Ok"


@dataclass
class Peer:
    """One peer; `commands` records every line it received."""

    host: str
    script: Script
    commands: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(text: str) -> None:
            writer.write(text.encode() + b"\r\n")

        send(self.script.greeting)
        if not self.script.greeting.startswith("220"):
            await writer.drain()
        try:
            while line := await reader.readline():
                cmd = line.decode().rstrip("\r\n")
                self.commands.append(cmd)
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    send(self.script.ehlo)
                elif verb == "MAIL":
                    send(self.script.mail)
                elif verb == "RCPT":
                    send(self.script.rcpt(cmd[cmd.index("<") + 1 : cmd.rindex(">")]))
                elif verb == "RSET":
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    await writer.drain()
                    break
                else:
                    send("502 5.5.2 Error: command not recognized")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def free_port(hosts: list[str]) -> int:
    """A TCP port free on every one of `hosts` (127.0.0.x)."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind((hosts[0], 0))
        port = probe.getsockname()[1]
        probe.close()
        ok = True
        for h in hosts:
            s = socket.socket()
            try:
                s.bind((h, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise RuntimeError("no common free port")


async def start_peers(scripts: dict[str, Script], port: int) -> list[Peer]:
    peers = []
    for host, script in scripts.items():
        peer = Peer(host, script)
        peer.server = await asyncio.start_server(peer.handle, host, port)
        peers.append(peer)
    return peers


async def stop_peers(peers: list[Peer]) -> None:
    for p in peers:
        assert p.server is not None
        p.server.close()
        await p.server.wait_closed()
