"""ARC chain verification (RFC 8617), with dkimpy and our async resolver.

As in `dkimverify`, the keys of every ARC-Seal and ARC-Message-Signature are
fetched first through `postier.dns`, then dkimpy validates the chain off the
event loop with a time budget (`postier.offload`; past it `ScanTimeout` goes
up to the caller). Sealing (adding our own ARC set when forwarding) is not
done here.

Rules:
- The chain validation status (RFC 8617 §4.4) is ``none`` (no ARC sets),
  ``pass`` or ``fail``; a chain a previous hop already marked failed is
  ``fail`` too (§5.1.2: "cv=fail" ends the chain).
- More than `max_sets` sets (RFC 8617 §4.2.1 caps instances at 50) is ``fail``.
- A key lookup that fails temporarily gives ``temperror`` (not ``fail``), so a
  DNS hiccup never counts against the sender.
- Total: a chain dkimpy cannot parse, or whose fields are too long for
  dkimpy's quadratic b= checks (`dkimverify.usable_field`), is ``fail``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from postier.dns.resolver import Resolver, TempFail
from postier.mailauth.dkimpy import dkim, usable_field
from postier.mailauth.dkimverify import (
    dnsfunc_of,
    fetch_keys,
    header_fields,
    key_name,
    load,
    parsed_message,
)
from postier.mailauth.results import comment
from postier.mime.message import ParsedMessage
from postier.offload import DEFAULT_SCAN_TIMEOUT, Budget, offload

log = logging.getLogger("postier.mailauth.arc")

MAX_SETS = 50
MAX_RESULTS_FIELD = 64 * 1024  # ARC-Authentication-Results: no b= in it, only bounded

_ARC_FIELDS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")


@dataclass(frozen=True)
class ArcResult:
    status: str  # none, pass, fail, temperror
    sets: int = 0
    reason: str = ""

    def auth_results(self) -> str:
        out = f"arc={self.status}"
        if self.reason and self.status != "none":
            out += " " + comment(self.reason)
        return out


@dataclass(frozen=True)
class _Chain:
    seals: int
    names: frozenset[str]  # key records to fetch
    problem: str = ""  # why the chain fails before dkimpy sees it


def _read_chain(message: ParsedMessage) -> _Chain:
    """The ARC fields of `message`, checked (CPU-bound: the whole header is split)."""
    fields: dict[bytes, list[bytes]] = {name: [] for name in _ARC_FIELDS}
    for name, raw in header_fields(message):  # the header split once for the three
        if name in fields:
            fields[name].append(raw)
    seals = len(fields[b"arc-seal"])
    for raw in fields[b"arc-authentication-results"]:
        if len(raw) > MAX_RESULTS_FIELD:
            return _Chain(seals, frozenset(), "ARC field too long")
    names = set()
    for name in (b"arc-seal", b"arc-message-signature"):
        for raw in fields[name]:
            if not usable_field(raw):
                return _Chain(seals, frozenset(), "ARC field too long")
            try:
                tags = dict(dkim.util.parse_tag_value(raw))
            except dkim.util.InvalidTagValueList:
                return _Chain(seals, frozenset(), "unparsable ARC field")
            key = key_name(tags)
            if key is not None:
                names.add(key)
    return _Chain(seals, frozenset(names))


async def verify(
    message: bytes | ParsedMessage,
    resolver: Resolver,
    *,
    max_sets: int = MAX_SETS,
    min_key_bits: int = 1024,
    scan_timeout: float = DEFAULT_SCAN_TIMEOUT,
) -> ArcResult:
    parsed = parsed_message(message)
    chain = await offload(lambda budget: _read_chain(parsed), scan_timeout)
    if not chain.seals:
        return ArcResult("none")
    if chain.seals > max_sets:
        return ArcResult("fail", chain.seals, "too many ARC sets")
    if chain.problem:
        return ArcResult("fail", chain.seals, chain.problem)
    keys = await fetch_keys(resolver, set(chain.names))
    if any(isinstance(k, TempFail) for k in keys.values()):
        return ArcResult("temperror", chain.seals, "key lookup failed")

    def run(budget: Budget) -> ArcResult:
        try:
            cv, _, reason = _arc_verify(parsed, dnsfunc_of(keys), min_key_bits)
        except dkim.DKIMException as e:  # arc_verify catches most; belt and braces
            return ArcResult("fail", chain.seals, str(e)[:80])
        except Exception as e:  # dkimpy on hostile input: the chain cannot validate
            log.info("dkimpy arc_verify raised %s: fail", type(e).__name__)
            return ArcResult("fail", chain.seals, f"malformed ({type(e).__name__})")
        status = cv.decode("ascii").lower() if isinstance(cv, bytes) else "fail"
        if status not in ("pass", "fail", "none"):
            status = "fail"
        return ArcResult(status, chain.seals, str(reason)[:80])

    return await offload(run, scan_timeout)


def _arc_verify(message: ParsedMessage, dnsfunc: object, minkey: int) -> tuple[object, object, str]:
    """`dkim.arc_verify` on our split of the message (`dkimverify.load`)."""
    a = dkim.ARC(None, minkey=minkey)
    load(a, message)
    try:
        result: tuple[object, object, str] = a.verify(dnsfunc=dnsfunc)
    except dkim.DKIMException as x:
        return dkim.CV_Fail, [], f"{x}"
    return result
