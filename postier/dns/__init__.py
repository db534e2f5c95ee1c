"""postier.dns: the async resolver (resolver.py), its TTL cache (cache.py), MX
routing (mx.py) and the fake resolver for tests (fake.py)."""

from postier.dns.resolver import (
    Answer,
    DnsError,
    MxRecord,
    NoAnswer,
    NXDomain,
    Resolver,
    TempFail,
    TxtRecord,
    make_resolver,
)

__all__ = [
    "Answer",
    "DnsError",
    "MxRecord",
    "NXDomain",
    "NoAnswer",
    "Resolver",
    "TempFail",
    "TxtRecord",
    "make_resolver",
]
