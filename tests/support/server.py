"""Run a real postier server for tests: in a thread (fast) or as a child process.

`ServerThread` runs `postier.server.app.start` in its own event loop in a thread, so
tests drive it with blocking clients (smtplib, imaplib, poplib) on loopback and
reach the store through `call()`. `ServerProcess` runs `python -m postier serve`
for crash and signal tests.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from postier.auth.passwords import hash_password
from postier.config.load import load
from postier.config.schema import LISTENER_NAMES, Settings
from postier.server.app import App, start, stop

PASSWORD = "correct horse battery staple"


def write_config(
    directory: Path,
    extra: str = "",
    *,
    ports: dict[str, int] | None = None,
    hostname: str = "mail.example.test",
    address: str = "127.0.0.1",
) -> Path:
    """A config with every listener on `address`, port 0 unless given, DNS offline."""
    ports = ports or {}
    lines = [
        "[server]",
        f'hostname = "{hostname}"',
        'data_dir = "./data"',
        'drain_timeout = "2s"',
        "workers = 1",  # one process unless a test asks for more (test_workers.py)
        "[dns]",
        "offline = true",
        "[auth]",
        'failure_delay = "0.05s"',
        'max_delay = "0.2s"',
    ]
    for name in LISTENER_NAMES:
        lines += [f"[listeners.{name}]", f'address = "{address}"', f"port = {ports.get(name, 0)}"]
    path = directory / "postier.toml"
    text = "\n".join(lines) + "\n"
    if extra:
        text = _merge(text, extra)
    path.write_text(text)
    return path


def _merge(base: str, extra: str) -> str:
    """Append `extra` TOML, moving keys of sections that already exist into them."""
    sections: dict[str, list[str]] = {}
    order: list[str] = []
    current = ""
    for line in (base + "\n" + extra).splitlines():
        m = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if m:
            current = m.group(1).strip()
            if current not in sections:
                sections[current] = []
                order.append(current)
            continue
        if line.strip():
            sections.setdefault(current, [])
            if current not in order:
                order.append(current)
            key = line.split("=", 1)[0].strip()
            sections[current] = [
                x for x in sections[current] if x.split("=", 1)[0].strip() != key
            ] + [line]
    out = []
    for name in order:
        if name:
            out.append(f"[{name}]")
        out.extend(sections[name])
    return "\n".join(out) + "\n"


class ServerThread:
    """A server in a background thread with its own loop; stop() is graceful."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app: App | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.app = self.loop.run_until_complete(start(self.settings))
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def port(self, name: str) -> int:
        assert self.app is not None
        return self.app.listeners[name].bound_port

    @property
    def store(self) -> Any:
        assert self.app is not None
        return self.app.store

    def add_user(self, address: str, password: str = PASSWORD) -> Any:
        domain = address.rsplit("@", 1)[1]

        async def go() -> Any:
            if await self.store.get_domain(domain) is None:
                await self.store.add_domain(domain)
            return await self.store.add_user(address, hash_password(password))

        return self.call(go())

    def stop(self) -> None:
        if self.app is not None:
            self.call(stop(self.app), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


def thread_server(tmp_path: Path, extra: str = "", **kw: Any) -> ServerThread:
    settings = load(write_config(tmp_path, extra, **kw))
    return ServerThread(settings).start()


@contextmanager
def alice_and_bob(tmp_path: Path, extra: str = "") -> Iterator[ServerThread]:
    """A running server (all listeners on 127.0.0.1, port 0), domain example.test
    with users alice and bob (password PASSWORD), stopped on the way out."""
    srv = thread_server(tmp_path, extra)
    try:
        srv.add_user("alice@example.test")
        srv.add_user("bob@example.test")
        yield srv
    finally:
        srv.stop()


_STARTED: list[subprocess.Popen[str]] = []


@atexit.register
def _kill_leftovers() -> None:
    """A test that fails between start and stop must not leave a server running."""
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class ServerProcess:
    """`python -m postier -c CONFIG serve` as a child; ports read from its banner."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}
        self.banner: list[str] = []

    def start(self, timeout: float = 30) -> ServerProcess:
        # the log goes to a file: an unread stderr pipe would fill and block the server
        self.log_path = self.config.parent / f"server-{time.time_ns()}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postier", "-c", str(self.config), "serve"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=self.env,
        )
        _STARTED.append(self.proc)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                self._close()
                raise RuntimeError(f"server exited: {code} {self.log_path.read_text()}")
            self.banner.append(line.rstrip("\n"))
            m = re.match(r"^\s+(\w+)\s+\S+:(\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
            if line.startswith("ready"):
                return self
        raise RuntimeError(f"server not ready after {timeout}s: {self.banner}")

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close()

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close()
        return code


def settings_with(settings: Settings, **sections: Any) -> Settings:
    return dataclasses.replace(settings, **sections)
