"""One login service for every protocol (SMTP AUTH, IMAP, POP3, web).

Rules:
- Password verification (argon2id) runs in a thread pool: a login never stalls
  the event loop, and an unknown user costs the same as a wrong password.
- A failure limiter keyed by client address and by account: each consecutive
  failure doubles a delay (failure_delay, capped at max_delay) imposed before the
  answer; after `lockout_after` consecutive failures the key is refused outright
  for `lockout_period`. A success clears the client's and the account's record.
- An attacker can lock an *account* for at most `lockout_period`; a user logging
  in from an address with no failures is only delayed, never refused, unless the
  account itself is locked. That keeps the real user's outage short.
- The limiter lives in memory (per process); the store-backed variant for many
  nodes plugs in behind the same `Limiter` methods.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postier import metrics
from postier.auth.passwords import averify_password
from postier.config.schema import AuthSettings
from postier.smtp.address import Address, AddressError
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
    """Consecutive-failure records per key ("ip:1.2.3.0/24", "acct:bob@x")."""

    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.monotonic):
        self._s = settings
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def locked_for(self, key: str) -> float:
        r = self._records.get(key)
        if r is None:
            return 0.0
        return max(0.0, r.locked_until - self._clock())

    def delay_for(self, key: str) -> float:
        r = self._records.get(key)
        if r is None or r.failures == 0:
            return 0.0
        return float(min(self._s.max_delay, self._s.failure_delay * 2 ** (r.failures - 1)))

    def fail(self, key: str) -> None:
        now = self._clock()
        r = self._records.setdefault(key, _Record())
        # a record idle for the lockout period starts over
        if now - r.last > max(self._s.lockout_period, 60.0):
            r.failures = 0
        r.failures += 1
        r.last = now
        if r.failures >= self._s.lockout_after:
            r.locked_until = now + self._s.lockout_period
            r.failures = 0
        self._prune(now)

    def succeed(self, key: str) -> None:
        self._records.pop(key, None)

    def _prune(self, now: float) -> None:
        if len(self._records) < 10_000:
            return
        horizon = max(self._s.lockout_period, 60.0)
        for k in [
            k for k, r in self._records.items() if now - r.last > horizon and r.locked_until < now
        ]:
            del self._records[k]


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
    ) -> None:
        self._store = store
        self.limiter = Limiter(settings, clock)
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
        locked = max(self.limiter.locked_for(ck), self.limiter.locked_for(ak))
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
            self.limiter.succeed(ck)
            self.limiter.succeed(ak)
            log.info("auth ok protocol=%s client=%s user=%s", protocol, client_ip, acct)
            metrics.LOGINS.labels(protocol or "other", "ok").inc()
            return AuthResult(AuthOutcome.OK, user=user)
        self.limiter.fail(ck)
        self.limiter.fail(ak)
        metrics.LOGINS.labels(protocol or "other", "failed").inc()
        delay = max(self.limiter.delay_for(ck), self.limiter.delay_for(ak))
        log.info(
            "auth failed protocol=%s client=%s user=%s delay=%.1fs",
            protocol,
            client_ip,
            acct,
            delay,
        )
        if delay:
            await self._sleep(delay)
        return AuthResult(AuthOutcome.FAILED)
