"""The login service: one limiter for every protocol, delays that grow, short lockouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.auth import passwords
from postier.auth.passwords import hash_password, needs_rehash, verify_password
from postier.auth.service import AuthOutcome, AuthService, Limiter, client_key
from postier.config.schema import AuthSettings
from postier.store.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SqliteStore(tmp_path)
    await s.open()
    await s.add_domain("example.test")
    await s.add_user("alice@example.test", hash_password("right"))
    yield s
    await s.close()


def _service(store: SqliteStore, clock: Clock, slept: list[float], **kw: float) -> AuthService:
    settings = AuthSettings(
        **{
            "failure_delay": 0.5,
            "max_delay": 4.0,
            "lockout_after": 5,
            "lockout_period": 300.0,
            **kw,
        }
    )

    async def sleep(d: float) -> None:
        slept.append(d)

    return AuthService(store, settings, clock=clock, sleep=sleep)


def test_passwords() -> None:
    h = hash_password("s3cret")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "s3cret")
    assert not verify_password(h, "S3cret")
    assert not verify_password(None, "s3cret")
    assert not verify_password("garbage", "s3cret")
    assert not needs_rehash(h)
    assert needs_rehash("garbage")


def test_unknown_user_hash_costs_a_real_verification() -> None:
    """The fixed hash verified for unknown users has the parameters of every new
    hash (time and memory), so an unknown user takes as long as a known one."""
    assert not needs_rehash(passwords._DUMMY)
    assert passwords._DUMMY.split("$")[3] == hash_password("x").split("$")[3]
    assert not verify_password(None, "")


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "ip:192.0.2.0/24"),
        ("2001:db8::1", "ip:2001:db8::/64"),
        ("not-an-ip", "ip:not-an-ip"),
    ],
)
def test_client_key_groups_networks(ip: str, key: str) -> None:
    assert client_key(ip) == key


async def test_success_and_case_insensitive_user(store: SqliteStore) -> None:
    slept: list[float] = []
    svc = _service(store, Clock(), slept)
    r = await svc.authenticate("Alice@Example.Test", "right", "192.0.2.1", "imap")
    assert r.outcome is AuthOutcome.OK
    assert r.user is not None
    assert r.user.address == "alice@example.test"
    assert slept == []


async def test_failures_delay_doubling_up_to_max(store: SqliteStore) -> None:
    slept: list[float] = []
    svc = _service(store, Clock(), slept, lockout_after=100)
    for _ in range(6):
        r = await svc.authenticate("alice@example.test", "wrong", "192.0.2.1")
        assert r.outcome is AuthOutcome.FAILED
    # each attempt after the first waits the network's delay before it is verified,
    # then each failure the account's delay before its answer
    assert slept == [0.5, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]


async def test_unknown_user_fails_like_a_wrong_password(store: SqliteStore) -> None:
    slept: list[float] = []
    svc = _service(store, Clock(), slept)
    r = await svc.authenticate("nobody@example.test", "x", "192.0.2.1")
    assert r.outcome is AuthOutcome.FAILED
    r = await svc.authenticate("not an address", "x", "192.0.2.1")
    assert r.outcome is AuthOutcome.FAILED
    assert slept == [0.5, 0.5, 0.5]  # two accounts: the network's delay grows, each account's not


async def test_lockout_refuses_then_expires(store: SqliteStore) -> None:
    clock = Clock()
    slept: list[float] = []
    svc = _service(store, clock, slept)
    for _ in range(5):
        await svc.authenticate("alice@example.test", "wrong", "192.0.2.1")
    # locked: even the right password is refused, without verifying anything
    r = await svc.authenticate("alice@example.test", "right", "192.0.2.1")
    assert r.outcome is AuthOutcome.LOCKED
    assert r.retry_after == pytest.approx(300.0)
    # the lock is short: after the period the real user gets in
    clock.now += 301
    r = await svc.authenticate("alice@example.test", "right", "192.0.2.1")
    assert r.outcome is AuthOutcome.OK


async def test_success_clears_the_record(store: SqliteStore) -> None:
    slept: list[float] = []
    svc = _service(store, Clock(), slept)
    for _ in range(3):
        await svc.authenticate("alice@example.test", "wrong", "192.0.2.1")
    assert (await svc.authenticate("alice@example.test", "right", "192.0.2.1")).ok
    slept.clear()
    await svc.authenticate("alice@example.test", "wrong", "192.0.2.1")
    assert slept == [0.5]


async def test_other_accounts_on_a_shared_address_get_in_during_an_attack(
    store: SqliteStore,
) -> None:
    """An office or a carrier NAT: 30 wrong passwords for alice from 10.0.0.1 must not
    shut bob out of his account from the same address for the lockout period."""
    await store.add_user("bob@example.test", hash_password("bobpw"))
    clock = Clock()
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)
        clock.now += d

    settings = AuthSettings()  # the defaults: 0.5s doubling to 8s, 10 failures lock 5m
    svc = AuthService(store, settings, clock=clock, sleep=sleep)
    outcomes = [
        (await svc.authenticate("alice@example.test", "guess", "10.0.0.1")).outcome
        for _ in range(30)
    ]
    assert outcomes == [AuthOutcome.FAILED] * 10 + [AuthOutcome.LOCKED] * 20
    # bob, no failures of his own, same address: in at once, after a bounded delay
    slept.clear()
    start = clock.now
    r = await svc.authenticate("bob@example.test", "bobpw", "10.0.0.1", "imap")
    assert r.outcome is AuthOutcome.OK
    assert slept == [8.0]
    assert clock.now - start < 60
    # alice from there stays refused during the lock, even with her right password
    r = await svc.authenticate("alice@example.test", "right", "10.0.0.1")
    assert r.outcome is AuthOutcome.LOCKED
    # from elsewhere, the per-account rule: locked too, for the lockout period only
    r = await svc.authenticate("alice@example.test", "right", "198.51.100.7")
    assert r.outcome is AuthOutcome.LOCKED
    clock.now = start + settings.lockout_period
    r = await svc.authenticate("alice@example.test", "right", "198.51.100.7")
    assert r.outcome is AuthOutcome.OK


async def test_a_locked_pair_does_not_outlive_the_account_lock_it_came_with(
    store: SqliteStore,
) -> None:
    clock = Clock()
    slept: list[float] = []
    svc = _service(store, clock, slept)
    for _ in range(5):
        await svc.authenticate("alice@example.test", "wrong", "192.0.2.1")
    assert svc.limiter.locked_for("pair:192.0.2.0/24 alice@example.test") == 300.0
    assert svc.limiter.locked_for("acct:alice@example.test") == 300.0
    assert svc.limiter.locked_for("ip:192.0.2.0/24") == 0.0  # a network is never locked
    clock.now += 300
    assert (await svc.authenticate("alice@example.test", "right", "192.0.2.1")).ok


async def test_spraying_many_accounts_from_one_network_is_slowed_not_locked(
    store: SqliteStore,
) -> None:
    await store.add_user("bob@example.test", hash_password("bobpw"))
    slept: list[float] = []
    svc = _service(store, Clock(), slept)
    for i in range(5):
        await svc.authenticate(f"guess{i}@example.test", "x", "203.0.113.9")
    slept.clear()
    # same /24 as the attacker: delayed before being verified, then in
    assert (await svc.authenticate("bob@example.test", "bobpw", "203.0.113.10")).ok
    assert slept == [4.0]
    slept.clear()
    assert (await svc.authenticate("bob@example.test", "bobpw", "198.51.100.1")).ok
    assert slept == []


def test_limiter_records_are_bounded() -> None:
    clock = Clock()
    lim = Limiter(AuthSettings(), clock)
    lim.MAX_RECORDS = 20_000
    for i in range(50_000):
        lim.fail(f"acct:{i}")
    assert len(lim._records) <= 20_000
    assert lim.delay_for("acct:49999") == 0.5  # the most recent are kept
    assert lim.delay_for("acct:0") == 0.0


def test_limiter_forgets_old_failures() -> None:
    clock = Clock()
    lim = Limiter(
        AuthSettings(failure_delay=1, max_delay=8, lockout_after=10, lockout_period=60), clock
    )
    lim.fail("k")
    lim.fail("k")
    assert lim.delay_for("k") == 2
    clock.now += 61
    lim.fail("k")
    assert lim.delay_for("k") == 1
