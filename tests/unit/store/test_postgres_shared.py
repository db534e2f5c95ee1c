"""State two nodes share in the PostgreSQL database while they run
(`store.postgres.shared`): POP3 maildrop locks (`pop3.locks.DatabaseMaildrops`),
the login failure limiter (`auth.shared.DatabaseLimiter`), connections per
client address (`server.listeners`) and \\Recent (`imap.recent`).
Each node is a `PostgresStore` of its own on one schema (the two-node tests in
tests/integration run real servers)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from postier.auth.passwords import hash_password
from postier.auth.service import AuthOutcome, AuthService
from postier.auth.shared import DatabaseLimiter
from postier.config.schema import AuthSettings
from postier.imap.recent import DatabaseRecentClaims
from postier.pop3.locks import DatabaseMaildrops
from postier.store.models import MailboxId, UserId
from postier.store.postgres import PostgresStore
from postier.store.postgres.shared import SharedState
from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)

pytestmark = pytest.mark.postgres

ALICE = UserId(1)


async def opened(dsn: str, node: str) -> PostgresStore:
    s = PostgresStore(dsn, node=node)
    await s.open()
    return s


async def wait_until(check: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_maildrop_lock_is_one_sessions_on_every_node(pg_dsn: str) -> None:  # noqa: F811
    a = await opened(pg_dsn, "a")
    b = await opened(pg_dsn, "b")
    try:
        locks_a, locks_b = DatabaseMaildrops(SharedState(a)), DatabaseMaildrops(SharedState(b))
        held = await locks_a.acquire(ALICE)
        assert held is not None
        assert await locks_b.acquire(ALICE) is None  # another node
        assert await locks_a.acquire(ALICE) is None  # another session of the same node
        assert await locks_b.acquire(UserId(2)) is not None  # another maildrop
        await held.release()
        await held.release()  # idempotent: a second release frees nobody else's lock
        again = await locks_b.acquire(ALICE)
        assert again is not None
        await held.release()
        assert await locks_a.acquire(ALICE) is None
        await again.release()
        # taken at once by two nodes: one gets it
        got = await asyncio.gather(*(m.acquire(ALICE) for m in (locks_a, locks_b) * 5))
        assert sum(g is not None for g in got) == 1
    finally:
        await b.close()
        await a.close()


async def test_a_maildrop_lock_ends_with_its_node_not_with_a_reconnect(
    pg_dsn: str,  # noqa: F811
) -> None:
    a = await opened(pg_dsn, "a")
    b = await opened(pg_dsn, "b")
    admin = await asyncpg.connect(pg_dsn)
    try:
        locks_a, locks_b = DatabaseMaildrops(SharedState(a)), DatabaseMaildrops(SharedState(b))
        assert await locks_a.acquire(ALICE) is not None
        # a's listener connection drops and comes back: the lock follows it
        session = a.session
        assert session is not None
        await admin.execute("SELECT pg_terminate_backend($1)", session[0])
        await wait_until(lambda: _async(a.session not in (None, session)))
        assert await locks_b.acquire(ALICE) is None
        # a dies without releasing (its connections close): b takes the lock now
        await a.close()
        await wait_until(lambda: _async_lock(locks_b))
    finally:
        await admin.close()
        await b.close()
        await a.close()


async def _async(value: bool) -> bool:
    return value


async def _async_lock(locks: DatabaseMaildrops) -> bool:
    return await locks.acquire(ALICE) is not None


async def test_login_failures_are_counted_across_nodes(pg_dsn: str) -> None:  # noqa: F811
    a = await opened(pg_dsn, "a")
    b = await opened(pg_dsn, "b")
    try:
        await a.add_domain("example.test")
        await a.add_user("alice@example.test", hash_password("right"))
        settings = AuthSettings(lockout_after=10, lockout_period=300.0)
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        nodes = [
            AuthService(s, settings, sleep=sleep, limiter=DatabaseLimiter(settings, SharedState(s)))
            for s in (a, b)
        ]
        # ten guesses at once, five through each node: every one is counted, and
        # the tenth locks the account on both
        results = await asyncio.gather(
            *(
                nodes[i % 2].authenticate("alice@example.test", "wrong", f"192.0.2.{i}")
                for i in range(10)
            )
        )
        assert [r.outcome for r in results] == [AuthOutcome.FAILED] * 10
        for node in nodes:
            result = await node.authenticate("alice@example.test", "right", "198.51.100.1")
            assert result.outcome is AuthOutcome.LOCKED
            assert 290 < result.retry_after <= 300
        # the guessers' network waits on either node before its logins are checked
        slept.clear()
        limiter_b = nodes[1].limiter
        assert await limiter_b.wait_before("ip:192.0.2.0/24") == settings.max_delay
        # a success on one node clears the records for both
        await nodes[0].limiter.succeeded(["acct:alice@example.test"])
        ok = await nodes[1].authenticate("alice@example.test", "right", "198.51.100.1")
        assert ok.ok
    finally:
        await b.close()
        await a.close()


async def test_connections_per_client_are_counted_over_every_live_process(
    pg_dsn: str,  # noqa: F811
) -> None:
    a = await opened(pg_dsn, "a")
    b = await opened(pg_dsn, "b")
    try:
        state_a, state_b = SharedState(a), SharedState(b)
        assert await state_a.count_clients("imap", "192.0.2.1", 3) == 0
        assert await state_b.count_clients("imap", "192.0.2.1", 2) == 3
        assert await state_a.count_clients("imap", "192.0.2.1", 4) == 2  # its own replaced
        assert await state_b.count_clients("mx", "192.0.2.1", 1) == 0  # another listener
        assert await state_b.count_clients("imap", "192.0.2.2", 1) == 0  # another client
        assert await state_a.count_clients("imap", "192.0.2.1", 0) == 0  # a's all ended
        assert await state_b.count_clients("imap", "192.0.2.1", 2) == 0
        await state_a.count_clients("imap", "192.0.2.1", 5)
        await a.close()  # a dies: its connections no longer count
        assert await state_b.count_clients("imap", "192.0.2.1", 2) == 0
    finally:
        await b.close()
        await a.close()


async def test_recent_is_one_sessions_on_every_node(pg_dsn: str) -> None:  # noqa: F811
    a = await opened(pg_dsn, "a")
    b = await opened(pg_dsn, "b")
    try:
        claims_a = DatabaseRecentClaims(SharedState(a))
        claims_b = DatabaseRecentClaims(SharedState(b))
        box = MailboxId(7)
        assert await claims_b.last(box) == 0
        assert await claims_a.claim(box, [1, 2, 3]) == {1, 2, 3}
        assert await claims_b.claim(box, [1, 2, 3, 4]) == {4}
        assert await claims_a.last(box) == 4
        assert await claims_a.claim(MailboxId(8), [1]) == {1}  # another mailbox
        # sessions of both nodes claiming the same new messages at once: each
        # message goes to exactly one of them
        got = await asyncio.gather(
            *(c.claim(box, range(1, 5 + n)) for n in range(1, 11) for c in (claims_a, claims_b))
        )
        mine = [u for g in got for u in g]
        assert sorted(mine) == list(range(5, 15))
    finally:
        await b.close()
        await a.close()
