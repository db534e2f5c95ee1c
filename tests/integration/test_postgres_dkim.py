"""DKIM keys on PostgreSQL (issue 16): kept in the database, so every node signs
with the same keys and publishes the same records; made once when nodes race."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from postier.mailauth import dkim
from postier.ops.dnsrecords import ensure_dkim
from postier.queue.capture import dkim_verdict
from postier.queue.signing import DkimSigner
from postier.store.postgres import PostgresStore
from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)
from tests.support.server import write_config

pytestmark = pytest.mark.postgres

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: signed\r\n"
    b"Date: Mon, 6 Jul 2026 10:00:00 +0000\r\nMessage-ID: <d1@example.test>\r\n\r\nhello\r\n"
)


def test_nodes_racing_make_one_key_pair_and_sign_alike(pg_dsn: str) -> None:  # noqa: F811
    async def go() -> None:
        a, b = PostgresStore(pg_dsn, node="a"), PostgresStore(pg_dsn, node="b")
        await a.open()
        await b.open()
        try:
            await a.add_domain("example.test")
            # both nodes make the domain's keys at once: one pair is kept
            pairs = await asyncio.gather(
                dkim.make_keys(a, "example.test", year=2026, rsa_bits=1024),
                dkim.make_keys(b, "example.test", year=2026, rsa_bits=1024),
            )
            assert pairs[0] == pairs[1]
            conn = await asyncpg.connect(pg_dsn)
            try:
                assert await conn.fetchval("SELECT count(*) FROM dkim_keys") == 2
            finally:
                await conn.close()
            await a.set_dkim_selector("example.test", pairs[0][0].selector)
            # node B signs; node A's published keys verify it, and the other way round
            signed_b = await DkimSigner(b).signature(MESSAGE, "alice@example.test") + MESSAGE
            signed_a = await DkimSigner(a).signature(MESSAGE, "alice@example.test") + MESSAGE
            assert [v.status for v in await dkim_verdict(signed_b, a)] == ["pass", "pass"]
            assert [v.status for v in await dkim_verdict(signed_a, b)] == ["pass", "pass"]
            assert await dkim.stored_keys(b, "example.test", "postier2026r") == list(pairs[0])
        finally:
            await b.close()
            await a.close()

    asyncio.run(go())


def test_keys_made_through_one_node_are_the_other_nodes_keys(
    tmp_path: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    configs = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        configs.append(
            write_config(d, f'[store]\nbackend = "postgres"\npostgres_dsn = "{pg_dsn}"\n')
        )

    def postier(config: Path, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "postier", "-c", str(config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=config.parent,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    postier(configs[0], "domain", "add", "example.test")
    records_a = postier(configs[0], "domain", "dns", "example.test")
    records_b = postier(configs[1], "domain", "dns", "example.test")
    assert "_domainkey.example.test" in records_a
    assert records_a == records_b
    # nothing in either data dir: the keys are in the database only
    for config in configs:
        assert not (config.parent / "data" / "dkim").exists()

    async def keys() -> list[dkim.DkimKey]:
        s = PostgresStore(pg_dsn)
        await s.open()
        try:
            return await ensure_dkim(s, _settings(configs[1]), "example.test")
        finally:
            await s.close()

    assert all(k.txt_record() in records_a.replace('" "', "") for k in asyncio.run(keys()))


def _settings(config: Path):  # type: ignore[no-untyped-def]
    from postier.config.load import load

    return load(config)
