"""Every filter stage and every mailauth entry point on malformed mail: a permanent
verdict (permerror, fail, a named rule, a 5xx), never a tempfail and never an
exception the pipeline has to catch (issue 11, item 2).

The corpus is what real senders and attackers produce: no header/body separator,
a folded first line, garbage and NUL bytes, 8-bit headers, broken MIME, broken
DKIM-Signature and ARC fields, huge header lines, bad base64/QP, codecs that are
no charset. The stages get the raw bytes (no SMTP intake repair in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from postier.dns.fake import FakeResolver
from postier.filters.arc import ArcStage
from postier.filters.bayes import BayesStage, train
from postier.filters.clamd import ClamdStage
from postier.filters.dkim import DkimStage
from postier.filters.dmarc import DmarcStage
from postier.filters.headers import HeadersStage
from postier.filters.helo import HeloStage
from postier.filters.pipeline import Action, Context, Phase, Pipeline
from postier.filters.rspamd import RspamdStage
from postier.filters.spam import Weights
from postier.filters.spf import SpfStage
from postier.filters.virus import Scanner, VirusStage
from postier.mail.headers import HeaderView
from postier.mail.role import IntakeRole
from postier.mailauth import arc, dkimverify, dmarc, results, spf
from postier.mailauth.dkim import DkimError, generate_keys, sign
from postier.mime import summarize
from postier.mime.address import addresses
from postier.mime.message import ParsedMessage
from postier.store.models import UserId
from tests.unit.mailauth import dkim_keys
from tests.unit.mailauth.dkim_keys import rsa_key

GOOD = (
    b"From: Alice <alice@bank.test>\r\nTo: bob@example.test\r\nSubject: hello\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@bank.test>\r\n\r\nHi Bob.\r\n"
)
SIG = b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=bank.test; s=sel; h=from; "
ARC = (
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=bank.test; s=sel; b=AAAA\r\n"
    b"ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=bank.test; s=sel; "
    b"h=from; bh=AAAA; b=AAAA\r\n"
    b"ARC-Authentication-Results: i=1; bank.test; spf=pass\r\n"
)


def _corpus() -> Iterator[tuple[str, bytes]]:
    yield "no-separator", b"From: a@bank.test\r\nSubject: x\r\nthe text right after\r\n"
    yield "no-separator-signed", dkim_keys.sign(GOOD, "bank.test").replace(b"\r\n\r\n", b"\r\n")
    yield "folded-first-line", b" folded\r\nFrom: a@bank.test\r\n\r\nbody\r\n"
    yield "signed-folded-first-line", b" x\r\n" + dkim_keys.sign(GOOD, "bank.test")
    yield "obs-space-before-colon", SIG + b"b=AAAA; bh=AAAA\r\nSubject : x\r\n\r\nb\r\n"
    yield "mbox-from-line", b"From a@bank.test Mon Jan 1 00:00:00 2026\r\n" + GOOD
    yield "garbage", bytes(range(256)) * 8 + b"\r\n\r\n" + bytes(range(255, -1, -1)) * 8
    yield "nul-bytes", b"From: a\x00@bank.test\r\nSub\x00ject: \x00\r\n\r\n\x00\x00body\r\n"
    yield (
        "8bit-headers",
        (
            b'From: "\xff\xfe" <a@bank.test>\r\nTo: \xe9t\xe9@x.test\r\nSubject: \xc3(\xa0\r\n'
            b"S\xc3\xbcbject: 8-bit name\r\n\r\nbody\r\n"
        ),
    )
    yield "only-crlf", b"\r\n"
    yield "lf-only", b"From: a@bank.test\nSubject: x\n\nbody\n"
    yield "cr-only", b"From: a@bank.test\rSubject: x\r\rbody\r"
    yield "no-boundary", b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhi\r\n"
    yield (
        "unclosed-multipart",
        (
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/html'
            b"\r\n\r\n<a href=http://1.2.3.4/>http://bank.test</a>\r\n--b\r\nContent-Type: "
        ),
    )
    yield (
        "deep-multipart",
        (
            b"".join(
                b'Content-Type: multipart/mixed; boundary="%d"\r\n\r\n--%d\r\n' % (i, i)
                for i in range(400)
            )
            + b"text\r\n"
        ),
    )
    yield (
        "bad-base64",
        (
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"!!!!====@@@@\r\nQQ=\r\n===\r\n%%%\r\n"
        ),
    )
    yield (
        "bad-qp",
        (
            b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"=ZZ=\r\n=\r\n=3\r\n<a href=3D=\r\n"
        ),
    )
    yield "unknown-cte", b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    for charset in (
        b"unicode_escape",
        b"raw_unicode_escape",
        b"utf-7",
        b"base64",
        b"zlib",
        b"rot13",
        b"idna",
        b"punycode",
        b"undefined",
        b"utf-16",
        b'"',
        b"",
        b"x-\xff",
    ):
        yield (
            f"charset-{charset!r}",
            (
                b"Subject: =?" + charset + b"?q?=5Cud800+2D0-?=\r\n"
                b"Content-Type: text/html; charset=" + charset + b"\r\n\r\n"
                b"\\ud800 +2D0- \xff\xfe <a href=x>y</a>\r\n"
            ),
        )
    yield "huge-header-line", b"X-Long: " + b"a" * 300_000 + b"\r\nFrom: a@bank.test\r\n\r\nb\r\n"
    yield "huge-header-name", b"a" * 300_000 + b": x\r\n\r\nb\r\n"
    yield "from-parentheses", b"From: " + b"(" * 5000 + b"a@bank.test\r\n\r\nb\r\n"
    yield "from-dots", b"From: " + b"a." * 50_000 + b"@bank.test\r\n\r\nb\r\n"
    yield "html-links", b"Content-Type: text/html\r\n\r\n" + b"<a href=x " * 6000 + b"\r\n"
    yield "html-tags", b"Content-Type: text/html\r\n\r\n" + b"<" * 60_000 + b"\r\n"
    yield "html-scripts", b"Content-Type: text/html\r\n\r\n" + b"<script" * 9000 + b"\r\n"
    # DKIM-Signature fields dkimpy chokes on, with a real key at sel._domainkey.bank.test
    for name, tags in (
        ("no-tags", b""),
        ("not-tag-list", b"garbage without equals"),
        ("duplicate-tag", b"d=x.test; d=y.test"),
        ("bad-b64", b"b=!!!; bh=@@@"),
        ("b-whitespace", b"bh=AAAA; b=A" + b" " * 20_000 + b"!"),
        ("b-folds", b"bh=AAAA; b=" + b"\r\n " * 5000 + b"A"),
        ("many-b", b"bh=AAAA; " + b" b=" * 5000),
        ("bad-x", b"x=abc; t=-1; l=99999999999999999999; b=AAAA; bh=AAAA"),
        ("bad-c", b"c=nope/nope; b=AAAA; bh=AAAA"),
        ("bad-a", b"a=rsa-md5; b=AAAA; bh=AAAA"),
        ("8bit", b"b=\xff\xfe; bh=\x00"),
    ):
        yield f"dkim-{name}", SIG.replace(b"h=from; ", b"") + tags + b"\r\n" + GOOD
    yield "dkim-six-signatures", b"".join([SIG + b"b=A; bh=A\r\n"] * 6) + GOOD
    yield "dkim-body-spaces", dkim_keys.sign(GOOD, "bank.test") + b" " * 200_000 + b"x\r\n"
    yield "arc-broken", ARC + GOOD
    yield "arc-i0", ARC.replace(b"i=1", b"i=0") + GOOD
    yield "arc-no-tags", b"ARC-Seal: \r\nARC-Message-Signature: ;;;\r\n" + GOOD
    yield "arc-60-sets", ARC * 60 + GOOD
    yield "arc-huge", b"ARC-Seal: i=1; b=" + b" " * 50_000 + b"\r\n" + GOOD
    yield "arc-cv-fail", ARC.replace(b"cv=none", b"cv=fail") + GOOD


CORPUS = list(_corpus())


class FakeDaemons:
    """clamd (INSTREAM, always OK) and rspamd (/checkv2, no action) on loopback."""

    def __init__(self) -> None:
        self.clamd: asyncio.Server | None = None
        self.rspamd: asyncio.Server | None = None

    async def clamd_handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readexactly(10)  # zINSTREAM\0
        while (n := int.from_bytes(await r.readexactly(4), "big")) != 0:
            await r.readexactly(n)
        w.write(b"stream: OK\0")
        await w.drain()
        w.close()

    async def rspamd_handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await r.readexactly(length)
        body = b'{"score": 1.5, "action": "no action", "symbols": {"X": {}}}'
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await w.drain()
        w.close()


@pytest.fixture
async def daemons(tmp_path) -> AsyncIterator[tuple[str, str]]:
    d = FakeDaemons()
    sock = str(tmp_path / "clamd.sock")
    d.clamd = await asyncio.start_unix_server(d.clamd_handle, sock)
    d.rspamd = await asyncio.start_server(d.rspamd_handle, "127.0.0.1", 0)
    port = d.rspamd.sockets[0].getsockname()[1]
    try:
        yield sock, f"http://127.0.0.1:{port}"
    finally:
        for server in (d.clamd, d.rspamd):
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()


def resolver() -> FakeResolver:
    return FakeResolver(
        {
            "bank.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
            "_dmarc.bank.test": {"TXT": ["v=DMARC1; p=reject"]},
            "sel._domainkey.bank.test": {"TXT": [rsa_key()[1]]},
        }
    )


@pytest.fixture
async def pipeline(store, daemons) -> Pipeline:
    weights = Weights()
    res = resolver()

    async def is_local(domain: str) -> bool:
        return domain == "example.test"

    # a trained Bayes model, so the stage really tokenizes
    user = (
        await store.add_user("bob@example.test", "x")
        if await store.get_domain("example.test")
        else None
    )
    if user is None:
        await store.add_domain("example.test")
        user = await store.add_user("bob@example.test", "x")
    await train(store, user.id, b"Subject: cheap pills\r\n\r\nbuy cheap pills now\r\n", True)
    await train(store, user.id, b"Subject: lunch\r\n\r\nsee you at lunch today\r\n", False)
    clamd_sock, rspamd_url = daemons
    stages = [
        HeloStage(weights, is_local_domain=is_local),
        SpfStage(res, weights, receiver="mx.example.test"),
        DkimStage(res, weights),
        ArcStage(res),
        DmarcStage(res, weights),
        HeadersStage(weights, is_local_domain=is_local),
        VirusStage(Scanner()),
        ClamdStage(clamd_sock, fail_open=False),
        RspamdStage(rspamd_url, hostname="mx.example.test", fail_open=False),
        BayesStage(store, weights, min_messages=1),
    ]
    p = Pipeline(stages, store=None, weights=weights)
    p.user = user.id  # type: ignore[attr-defined]
    return p


def context(message: bytes, user: UserId) -> Context:
    ctx = Context(sid="s1", role=IntakeRole.MX, peer_ip="192.0.2.7", hostname="mx.example.test")
    ctx.helo = "client.bank.test"
    ctx.begin("QID1", "alice@bank.test")
    ctx.recipients = ["bob@example.test"]
    ctx.local_users = [user]
    ctx.load(ParsedMessage.of(message), max_scan_size=len(message))
    return ctx


@pytest.mark.parametrize(("name", "message"), CORPUS, ids=[n for n, _ in CORPUS])
async def test_every_stage_judges_malformed_mail_permanently(pipeline, name, message):
    ctx = context(message, pipeline.user)
    t = time.monotonic()
    for phase in (Phase.HELO, Phase.MAIL, Phase.DATA):
        reply = await pipeline.run(phase, ctx)
        assert reply is None or reply.code >= 500, (phase, reply)
    assert time.monotonic() - t < 10  # linear everywhere: tens of ms each in fact
    verdicts = ctx.all_verdicts()
    assert not [v for v in verdicts if v.action is Action.TEMPFAIL]
    # each stage dealt with the input itself: the pipeline's net caught nothing
    assert not [v.describe() for v in verdicts if v.rule.endswith("_ERROR")]
    assert not [v.describe() for v in verdicts if v.rule == "SCAN_TIMEOUT"]
    for r in ctx.dkim or []:
        assert r.status in ("pass", "fail", "permerror", "policy"), r
    assert ctx.arc is None or ctx.arc.status in ("none", "pass", "fail"), ctx.arc


@pytest.mark.parametrize(("name", "message"), CORPUS, ids=[n for n, _ in CORPUS])
async def test_mailauth_entry_points_never_raise(name, message):
    res = resolver()
    for r in await dkimverify.verify(message, res):
        assert r.status in ("pass", "fail", "permerror", "policy")
    assert (await arc.verify(message, res)).status in ("none", "pass", "fail")
    view = HeaderView.of(message)
    domains = [a.rpartition("@")[2] for a in addresses(view.fields("From"))]
    await dmarc.check(res, domains, spf_status="none", spf_domain="", dkim=[])
    head = message[: len(view.raw)]
    results.drop_fields(head, results.forged_fields("mx.example.test"))
    summarize(message)


@pytest.mark.parametrize(("name", "message"), CORPUS[:12], ids=[n for n, _ in CORPUS[:12]])
def test_signing_malformed_mail_is_a_dkim_error_or_a_signature(tmp_path, name, message):
    rsa_key_, ed_key = generate_keys(tmp_path, "example.test", rsa_bits=1024)
    for key in (rsa_key_, ed_key):
        with contextlib.suppress(DkimError):
            assert sign(message, [key]).startswith(b"DKIM-Signature:")


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 include:" + "a" * 5000 + "!",  # an over-long toplabel
        "v=spf1 a:" + "x." * 3000 + "a1" * 3000 + "-",
        "v=spf1 exists:%{" + "i" * 5000,
        "v=spf1 ip4:" + "1" * 5000,
        "v=spf1 " + "a " * 5000,
        "v=spf1 redirect=" + "%" * 5000,
    ],
)
async def test_spf_on_hostile_records_is_permerror_and_fast(record):
    res = FakeResolver({"evil.test": {"TXT": [record]}})
    t = time.monotonic()
    result = await spf.check_host(res, "192.0.2.7", "evil.test", "a@evil.test", "helo.test")
    assert time.monotonic() - t < 1.0
    assert result.status in ("permerror", "fail", "neutral", "none", "softfail")
