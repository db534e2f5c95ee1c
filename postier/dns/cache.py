"""A bounded TTL cache in front of any `Resolver`.

Rules:
- Answers are kept for their TTL, capped at `max_ttl`; a TTL of 0 is not cached.
- `NXDomain` and `NoAnswer` are cached for their negative TTL (RFC 2308 §5: the
  smaller of the SOA's TTL and MINIMUM), capped at `max_negative_ttl`.
- `TempFail` is never cached: the next lookup asks again.
- At most `max_entries` entries; the least recently used goes first.
- Time comes from an injected monotonic clock, so tests never sleep.
- One cache key per (method, name): `txt("x")` and `query("x", "TXT")` are cached
  apart because their record types differ. Names compare case-insensitively.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from postier.dns.resolver import Answer, DnsError, MxRecord, Resolver, TempFail, TxtRecord

T = TypeVar("T")


class CachingResolver:
    def __init__(
        self,
        inner: Resolver,
        *,
        max_entries: int = 10_000,
        max_ttl: int = 86_400,
        max_negative_ttl: int = 3_600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.inner = inner
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.clock = clock
        # key → (expires at, Answer or the negative DnsError)
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    async def _cached(
        self, kind: str, name: str, lookup: Callable[[], Awaitable[Answer[T]]]
    ) -> Answer[T]:
        key = (kind, name.lower().rstrip("."))
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None:
            expires, value = hit
            if now < expires:
                self._entries.move_to_end(key)
                if isinstance(value, DnsError):
                    # a fresh exception each time: re-raising one object grows its traceback
                    raise type(value)(value.name, value.rdtype, value.reason, ttl=value.ttl)
                return value  # type: ignore[no-any-return]
            del self._entries[key]
        try:
            answer = await lookup()
        except TempFail:
            raise
        except DnsError as e:
            self._store(key, min(e.ttl, self.max_negative_ttl), e)
            raise
        self._store(key, min(answer.ttl, self.max_ttl), answer)
        return answer

    def _store(self, key: tuple[str, str], ttl: int, value: Any) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (self.clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def query(self, name: str, rdtype: str) -> Answer[str]:
        return await self._cached(
            "q/" + rdtype.upper(), name, lambda: self.inner.query(name, rdtype)
        )

    async def mx(self, domain: str) -> Answer[MxRecord]:
        return await self._cached("MX", domain, lambda: self.inner.mx(domain))

    async def a(self, host: str) -> Answer[str]:
        return await self._cached("A", host, lambda: self.inner.a(host))

    async def aaaa(self, host: str) -> Answer[str]:
        return await self._cached("AAAA", host, lambda: self.inner.aaaa(host))

    async def txt(self, name: str) -> Answer[TxtRecord]:
        return await self._cached("TXT", name, lambda: self.inner.txt(name))

    async def ptr(self, ip: str) -> Answer[str]:
        key = str(ipaddress.ip_address(ip))  # ValueError for a non-address, as the protocol says
        return await self._cached("PTR", key, lambda: self.inner.ptr(ip))
