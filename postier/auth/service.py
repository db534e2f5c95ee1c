"""One login service for every protocol (SMTP AUTH, IMAP, POP3, web).

Rules:
- Password verification (argon2id) runs in a thread pool: a login never stalls
  the event loop, and an unknown user costs the same as a wrong password.
- Three failure records, so a shared address (an office, a carrier NAT) is not
  shut out because one of its users, or an attacker behind it, failed:
  - per client network (/24, /64): each failure doubles a delay (failure_delay,
    capped at max_delay) that *every* login from that network waits before it is
    verified, the right ones too (as Dovecot's auth penalty), so an attacker
    cannot cut a slow failure short by hanging up. Never a refusal: another
    account's correct password from there gets in within max_delay.
  - per (network, account): after `lockout_after` consecutive failures that
    account is refused from that network for `lockout_period`.
  - per account: after `lockout_after` consecutive failures from anywhere the
    account is refused for `lockout_period`; each failure also doubles a delay
    before the failed answer.
  A success clears all three records of that login.
- An attacker can lock an *account* for at most `lockout_period` per round of
  failures; a user logging in from an address with no failures is only delayed,
  never refused, unless the account itself is locked. That keeps the real user's
  outage short.
- The records are bounded in number (oldest dropped first); they live in memory
  for one process, in a file every worker of a server shares when it runs
  several (`auth.shared.SharedLimiter`), and in the database every node shares
  over PostgreSQL (`auth.shared.DatabaseLimiter`), behind the same
  `Limiter` methods, so a guesser spreading attempts over connections (and so
  over workers and nodes) is counted once.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from postier import metrics
from postier.auth.passwords import averify_password
from postier.config.schema import AuthSettings
from postier.mail.address import Address, AddressError
from postier.store.api import Store
from postier.store.models import User

log = logging.getLogger("postier.auth")


class AuthOutcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"  # wrong user or password
    LOCKED = "locked"  # too many failures: try again later (temporary)


@dataclass(frozen=True)
class AuthResult:
    outcome: AuthOutcome
    user: User | None = None
    retry_after: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class Limiter:
    """Consecutive-failure records per key ("ip:1.2.3.0/24", "acct:bob@x",
    "pair:1.2.3.0/24 bob@x")."""

    #: records kept at most; beyond it the oldest go first (an attacker spraying
    #: accounts from many addresses must not grow memory without bound)
    MAX_RECORDS = 100_000

    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.monotonic):
        self._s = settings
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._prune_at = 10_000  # prune when this many records exist (amortised)

    def locked_for(self, key: str) -> float:
        return self._locked(self._records.get(key), self._clock())

    def delay_for(self, key: str) -> float:
        return self._delay(self._records.get(key), self._clock())

    def fail(self, key: str, *, lock: bool = True) -> None:
        """Count a failure; with `lock`, the `lockout_after`-th locks the key (and
        starts the count over), without it the count (and delay) just grows."""
        now = self._clock()
        r = self._records.pop(key, None) or _Record()
        self._records[key] = r  # most recent last, for `_prune`
        self._failed(r, now, lock)
        self._prune(now)

    # what `AuthService` calls: coroutines, so a limiter whose records live in the
    # database (`auth.shared.DatabaseLimiter`) can await them; these
    # run the in-process (and `auth.shared`) methods above
    async def wait_before(self, network: str) -> float:
        """The delay every login from `network` waits before it is verified."""
        return self.delay_for(network)

    async def locked(self, keys: Sequence[str]) -> float:
        """Seconds until the last of `keys` is unlocked (0: none is locked)."""
        return max((self.locked_for(k) for k in keys), default=0.0)

    async def failed(self, network: str, keys: Sequence[str]) -> float:
        """Count a failed login: `network` is slowed down (never locked), each of
        `keys` may lock; returns the delay the last of `keys` imposes now."""
        self.fail(network, lock=False)
        for k in keys:
            self.fail(k)
        return self.delay_for(keys[-1])

    async def succeeded(self, keys: Sequence[str]) -> None:
        for k in keys:
            self.succeed(k)

    # the rules, shared with the cross-process variants (`auth.shared`)
    @staticmethod
    def _locked(r: _Record | None, now: float) -> float:
        return 0.0 if r is None else max(0.0, r.locked_until - now)

    def _delay(self, r: _Record | None, now: float) -> float:
        if r is None or r.failures == 0 or now - r.last > self._horizon:
            return 0.0
        doublings = min(r.failures - 1, 32)  # the cap is reached long before
        return float(min(self._s.max_delay, self._s.failure_delay * 2**doublings))

    def _failed(self, r: _Record, now: float, lock: bool) -> None:
        # a record idle for the lockout period starts over
        if now - r.last > self._horizon:
            r.failures = 0
        r.failures += 1
        r.last = now
        if lock and r.failures >= self._s.lockout_after:
            r.locked_until = now + self._s.lockout_period
            r.failures = 0

    def succeed(self, key: str) -> None:
        self._records.pop(key, None)

    @property
    def _horizon(self) -> float:
        """How long a failure is remembered."""
        return max(self._s.lockout_period, 60.0)

    def _prune(self, now: float) -> None:
        if len(self._records) < self._prune_at:
            return
        for k in [
            k
            for k, r in self._records.items()
            if now - r.last > self._horizon and r.locked_until < now
        ]:
            del self._records[k]
        # still too many: keep the most recent half (dicts keep insertion order, and
        # `fail` moves a key to the end)
        excess = len(self._records) - self.MAX_RECORDS // 2
        if excess > 0:
            for k in list(self._records)[:excess]:
                del self._records[k]
        # the next scan waits until the table doubles (at most MAX_RECORDS): pruning
        # costs O(1) per failure, amortised
        self._prune_at = min(self.MAX_RECORDS, max(10_000, 2 * len(self._records)))


def client_key(ip: str) -> str:
    """Limit by /24 (IPv4) or /64 (IPv6), as an attacker rarely owns one address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"ip:{ip}"
    prefix = 24 if addr.version == 4 else 64
    return f"ip:{ipaddress.ip_network(f'{addr}/{prefix}', strict=False)}"


class AuthService:
    def __init__(
        self,
        store: Store,
        settings: AuthSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limiter: Limiter | None = None,
    ) -> None:
        self._store = store
        self.limiter = limiter or Limiter(settings, clock)
        self._sleep = sleep

    async def authenticate(
        self, username: str, password: str, client_ip: str, protocol: str = ""
    ) -> AuthResult:
        """Check a username (full address) and password for a client address.

        Failures are delayed here (awaiting), so callers just relay the result.
        """
        ck = client_key(client_ip)
        try:
            acct = Address.parse(username.strip()).key
        except AddressError:
            acct = username.strip().lower()[:320]
        ak = f"acct:{acct}"
        pk = f"pair:{ck[3:]} {acct}"
        # every login from a network with recent failures waits, before anything
        # else: a right password too, so a slow answer means nothing to an attacker
        wait = await self.limiter.wait_before(ck)
        if wait:
            await self._sleep(wait)
        locked = await self.limiter.locked((pk, ak))
        if locked > 0:
            log.info(
                "auth locked protocol=%s client=%s user=%s retry_after=%.0fs",
                protocol,
                client_ip,
                acct,
                locked,
            )
            metrics.LOGINS.labels(protocol or "other", "locked").inc()
            return AuthResult(AuthOutcome.LOCKED, retry_after=locked)
        user = await self._store.get_user(acct) if "@" in acct else None
        ok = await averify_password(user.password_hash if user else None, password)
        if ok and user is not None and not user.disabled:
            await self.limiter.succeeded((ck, pk, ak))
            log.info("auth ok protocol=%s client=%s user=%s", protocol, client_ip, acct)
            metrics.LOGINS.labels(protocol or "other", "ok").inc()
            return AuthResult(AuthOutcome.OK, user=user)
        # a network is slowed down, never shut out; the delay is the account's
        delay = await self.limiter.failed(ck, (pk, ak))
        metrics.LOGINS.labels(protocol or "other", "failed").inc()
        log.info(
            "auth failed protocol=%s client=%s user=%s delay=%.1fs",
            protocol,
            client_ip,
            acct,
            wait + delay,
        )
        if delay:
            await self._sleep(delay)
        return AuthResult(AuthOutcome.FAILED)
