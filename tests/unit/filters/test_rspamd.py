"""The rspamd stage against a scripted HTTP /checkv2 server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from postier.filters.pipeline import Action, Context, Phase
from postier.filters.rspamd import RspamdStage
from postier.mail.role import IntakeRole


class FakeRspamd:
    def __init__(self, status: bytes = b"200 OK", body: bytes = b"{}") -> None:
        self.status, self.body = status, body
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        self.requests.append(head + await r.readexactly(length))
        w.write(
            b"HTTP/1.1 " + self.status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body) + self.body
        )
        await w.drain()
        w.close()
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def rspamd() -> AsyncIterator[FakeRspamd]:
    fake = FakeRspamd()
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    yield fake
    fake.server.close()
    await fake.server.wait_closed()


def _ctx() -> Context:
    ctx = Context(
        sid="s1",
        role=IntakeRole.MX,
        peer_ip="192.0.2.9",
        hostname="mx.example.test",
        helo="client.example.org",
    )
    ctx.begin("QID0000000000001", "a@example.org")
    ctx.recipients = ["bob@example.test", "carol@example.test"]
    ctx.message = b"Subject: offer\r\n\r\nbuy now\r\n"
    return ctx


async def test_score_and_envelope_headers(rspamd: FakeRspamd) -> None:
    rspamd.body = json.dumps(
        {"score": 4.25, "action": "add header", "symbols": {"BAYES_SPAM": {}, "MISSING_DATE": {}}}
    ).encode()
    [v] = await RspamdStage(rspamd.url, hostname="mx.example.test").check(Phase.DATA, _ctx())
    assert (v.action, v.rule, v.score) == (Action.SCORE, "RSPAMD", 4.25)
    assert v.detail == "action=add header symbols=BAYES_SPAM,MISSING_DATE"
    [req] = rspamd.requests
    assert req.startswith(b"POST /checkv2 HTTP/1.1\r\n")
    for line in (
        b"IP: 192.0.2.9",
        b"Helo: client.example.org",
        b"From: a@example.org",
        b"Queue-Id: QID0000000000001",
        b"Rcpt: bob@example.test",
        b"Rcpt: carol@example.test",
        b"Hostname: mx.example.test",
    ):
        assert b"\r\n" + line + b"\r\n" in req
    assert req.endswith(b"\r\n\r\nSubject: offer\r\n\r\nbuy now\r\n")


@pytest.mark.parametrize(
    ("action", "reply"),
    [
        ("reject", b"550 5.7.1 Message rejected as spam\r\n"),
        ("soft reject", b"451 4.7.1 Try again later\r\n"),
        ("greylist", b"451 4.7.1 Try again later\r\n"),
    ],
)
async def test_actions(rspamd: FakeRspamd, action: str, reply: bytes) -> None:
    rspamd.body = json.dumps({"score": 20, "action": action}).encode()
    [v] = await RspamdStage(rspamd.url, hostname="h").check(Phase.DATA, _ctx())
    assert v.reply is not None
    assert v.reply.to_bytes() == reply


async def test_reject_not_honoured_scores(rspamd: FakeRspamd) -> None:
    rspamd.body = json.dumps({"score": 20, "action": "reject"}).encode()
    stage = RspamdStage(rspamd.url, hostname="h", honor_reject=False)
    [v] = await stage.check(Phase.DATA, _ctx())
    assert (v.action, v.score) == (Action.SCORE, 20)


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (
            b"500 Internal Server Error",
            b"{}",
            "rspamd answered b'HTTP/1.1 500 Internal Server Error'",
        ),
        (b"200 OK", b"not json", "rspamd answer is not JSON"),
        (b"200 OK", b"[1, 2]", "rspamd answer is not a JSON object"),
    ],
)
async def test_trouble_fails_open_or_closed(
    rspamd: FakeRspamd, status: bytes, body: bytes, why: str
) -> None:
    rspamd.status, rspamd.body = status, body
    [v] = await RspamdStage(rspamd.url, hostname="h").check(Phase.DATA, _ctx())
    assert v.action is Action.ACCEPT
    assert v.detail == f"not checked: {why} (fail open)"
    [v] = await RspamdStage(rspamd.url, hostname="h", fail_open=False).check(Phase.DATA, _ctx())
    assert v.reply is not None
    assert v.reply.to_bytes() == b"451 4.7.0 Spam scanner unavailable, try again later\r\n"


async def test_unreachable_and_timeout() -> None:
    stage = RspamdStage("http://127.0.0.1:1", hostname="h", fail_open=False)
    [v] = await stage.check(Phase.DATA, _ctx())
    assert v.action is Action.TEMPFAIL
    assert v.detail.startswith("cannot reach rspamd")

    release = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await release.wait()  # never answers while the stage waits
        finally:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stage = RspamdStage(f"http://127.0.0.1:{port}", hostname="h", timeout=0.2)
        [v] = await stage.check(Phase.DATA, _ctx())
        assert v.detail == "not checked: timeout (fail open)"
    finally:
        release.set()
        await asyncio.gather(*handlers)
        server.close()
        await server.wait_closed()
