"""DKIM verification of incoming mail (RFC 6376 §6), with dkimpy and our async resolver.

dkimpy does the cryptography and canonicalization; its DNS hook is synchronous
(``dnsfunc(name) -> bytes``) and its own async support needs aiodns, so the key
records are fetched first with `postier.dns` (one resolver, one cache, the fake
resolver in tests) and handed to dkimpy from a dict. The CPU work (splitting
the message, canonicalisation, hashing) runs off the event loop with a time
budget (`postier.offload`, `filters.scan_timeout`): past it `ScanTimeout`
goes up to the caller.

Rules:
- Every DKIM-Signature field is evaluated, up to `max_signatures` (the rest are
  reported ``policy``: too many); each gets its own result (RFC 6376 §6.1:
  verifiers evaluate signatures independently).
- Results use the RFC 8601 §2.7.1 vocabulary: ``pass``; ``fail`` (the signature
  or body hash does not verify); ``neutral`` (unused here); ``temperror`` (the
  key lookup failed temporarily); ``permerror`` (malformed signature, no or bad
  key, key too small, expired: RFC 6376 §6.1.1 PERMFAIL).
- Keys shorter than `min_key_bits` (default 1024, RFC 8301 §3.2) are permerror.
- Total: a message dkimpy cannot parse (a header line that is no field, a
  broken tag list, anything dkimpy raises on) gives ``permerror`` for each
  signature, never an exception.
- Linear: dkimpy comes through `dkimpy.py` (its quadratic body
  canonicalisation replaced); a signature field longer than
  `MAX_SIGNATURE_FIELD` octets or with more than `MAX_SIGNATURE_SPACE`
  white-space octets (dkimpy's b= checks are quadratic in it) is permerror
  without reaching dkimpy.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from postier.dns.resolver import NoAnswer, NXDomain, Resolver, TempFail
from postier.mailauth.dkimpy import dkim, usable_field
from postier.mailauth.results import comment, value
from postier.mime.message import HeaderFormatError, ParsedMessage
from postier.offload import DEFAULT_SCAN_TIMEOUT, Budget, offload

log = logging.getLogger("postier.mailauth.dkim")

MAX_SIGNATURES = 5


@dataclass(frozen=True)
class DkimResult:
    status: str  # pass, fail, temperror, permerror, policy
    domain: str  # d=, lower case ("" if unreadable)
    selector: str  # s=
    b: str = ""  # the start of b=, to tell signatures apart (RFC 6008 header.b)
    reason: str = ""

    def auth_results(self) -> str:
        """The method part of Authentication-Results (RFC 8601 §2.7.1, RFC 6008)."""
        out = f"dkim={self.status}"
        if self.reason:
            out += " " + comment(self.reason)
        if self.domain:
            out += f" header.d={value(self.domain)}"
        if self.selector:
            out += f" header.s={value(self.selector)}"
        if self.b:
            out += f" header.b={value(self.b)}"
        return out


def signature_tags(
    message: bytes | ParsedMessage, field_name: bytes = b"dkim-signature"
) -> list[dict[bytes, bytes] | None]:
    """The tag lists of every `field_name` field, in order (None when unusable:
    unparsable, or too long for dkimpy to check in linear time)."""
    out: list[dict[bytes, bytes] | None] = []
    for raw in signature_fields(message, field_name):
        if not usable_field(raw):
            out.append(None)
            continue
        try:
            out.append(dict(dkim.util.parse_tag_value(raw)))
        except dkim.util.InvalidTagValueList:
            out.append(None)
    return out


def signature_fields(message: bytes | ParsedMessage, field_name: bytes) -> list[bytes]:
    """The raw values of every `field_name` field (lower case), in order."""
    return [raw for name, raw in header_fields(message) if name == field_name]


def header_fields(message: bytes | ParsedMessage) -> list[tuple[bytes, bytes]]:
    """(lower-case name, raw value) of each header field, in order: as dkimpy
    reads them, or, when dkimpy cannot read the header (it raises on a line
    that is no field), as our MIME parser does. From the message's one split
    of its header (`ParsedMessage`)."""
    parsed = parsed_message(message)
    try:
        fields = parsed.dkim_fields()
    except (HeaderFormatError, IndexError):  # IndexError: a first line folded
        return [(name.encode("latin-1"), v) for name, v in parsed.header.mime_fields()]
    return [(name.lower(), raw) for name, raw in fields]


def parsed_message(message: bytes | ParsedMessage) -> ParsedMessage:
    return message if isinstance(message, ParsedMessage) else ParsedMessage.of(message)


def load(signer: dkim.DomainSigner, message: ParsedMessage) -> None:
    """Give dkimpy the message from our split of it (its own `rfc822_parse`
    splits and copies the whole message again for every signature): the same
    lists, and the same `MessageFormatError` where it would raise one."""
    try:
        signer.headers = message.dkim_fields()
    except HeaderFormatError as e:
        # dkimpy's own text, which formats the bytes with %s: b'...'
        text = f"Unexpected characters in RFC822 header: {e.line!r}"
        raise dkim.MessageFormatError(text) from None
    signer.body = message.dkim_body()


def key_name(tags: dict[bytes, bytes]) -> str | None:
    """``<selector>._domainkey.<domain>`` (RFC 6376 §3.6.2.1), or None if unusable."""
    s = tags.get(b"s", b"").strip()
    d = tags.get(b"d", b"").strip()
    if not s or not d:
        return None
    try:
        return f"{s.decode('ascii')}._domainkey.{d.decode('ascii')}".lower().rstrip(".")
    except UnicodeDecodeError:
        return None


async def fetch_keys(resolver: Resolver, names: set[str]) -> dict[str, bytes | TempFail | None]:
    """The key record of each name: its TXT data, None (no record) or TempFail."""

    async def one(name: str) -> bytes | TempFail | None:
        try:
            answer = await resolver.txt(name)
        except (NXDomain, NoAnswer):
            return None
        except TempFail as e:
            return e
        records = [r.data for r in answer.records]
        # RFC 6376 §3.6.2.2: a key record has p=; take the first that does
        for data in records:
            if re.search(rb"(^|;)\s*p\s*=", data):
                return data
        return records[0] if records else None

    ordered = sorted(names)
    got = await asyncio.gather(*(one(n) for n in ordered))
    return dict(zip(ordered, got, strict=True))


def dnsfunc_of(keys: dict[str, bytes | TempFail | None]) -> object:
    """A dkimpy ``dnsfunc`` answering from prefetched records."""

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        key = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        got = keys.get(key.lower().rstrip("."))
        if isinstance(got, TempFail):
            raise dkim.DnsTimeoutError(str(got))
        return got

    return dnsfunc


def _verify_sync(
    message: ParsedMessage,
    index: int,
    tags: dict[bytes, bytes],
    keys: dict[str, bytes | TempFail | None],
    min_key_bits: int,
) -> DkimResult:
    domain = tags.get(b"d", b"").decode("ascii", "replace").lower().strip()
    selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
    b = re.sub(rb"\s+", b"", tags.get(b"b", b""))[:8].decode("ascii", "replace")
    name = key_name(tags)
    if name is None:
        return DkimResult("permerror", domain, selector, b, "missing d= or s=")
    key = keys.get(name)
    if isinstance(key, TempFail):
        return DkimResult("temperror", domain, selector, b, "key lookup failed")
    if key is None:
        return DkimResult("permerror", domain, selector, b, "no key record")
    try:
        d = dkim.DKIM(None, minkey=min_key_bits)
        load(d, message)
        ok = d.verify(index, dnsfunc=dnsfunc_of(keys))
    except dkim.ValidationError as e:
        text = str(e)
        if "body hash mismatch" in text:
            return DkimResult("fail", domain, selector, b, "body hash did not verify")
        return DkimResult("permerror", domain, selector, b, text[:80])
    except dkim.DKIMException as e:  # KeyFormatError, MessageFormatError ...
        return DkimResult("permerror", domain, selector, b, str(e)[:80])
    except Exception as e:  # dkimpy on hostile input (IndexError, binascii.Error ...)
        log.info("dkimpy raised %s on d=%s s=%s: permerror", type(e).__name__, domain, selector)
        return DkimResult("permerror", domain, selector, b, f"malformed ({type(e).__name__})")
    if ok:
        return DkimResult("pass", domain, selector, b)
    return DkimResult("fail", domain, selector, b, "signature did not verify")


async def verify(
    message: bytes | ParsedMessage,
    resolver: Resolver,
    *,
    max_signatures: int = MAX_SIGNATURES,
    min_key_bits: int = 1024,
    scan_timeout: float = DEFAULT_SCAN_TIMEOUT,
) -> list[DkimResult]:
    """One result per DKIM-Signature field of `message` (empty: unsigned).
    `ScanTimeout` when the CPU work runs past `scan_timeout` seconds."""
    parsed = parsed_message(message)
    all_tags = await offload(lambda budget: signature_tags(parsed), scan_timeout)
    names = {
        n
        for t in all_tags[:max_signatures]
        if t is not None
        for n in [key_name(t)]
        if n is not None
    }
    keys = await fetch_keys(resolver, names)
    results: list[DkimResult] = []
    for index, tags in enumerate(all_tags):
        if index >= max_signatures:
            results.append(DkimResult("policy", "", "", "", "too many signatures"))
            continue
        if tags is None:
            results.append(DkimResult("permerror", "", "", "", "unparsable signature"))
            continue

        def one(budget: Budget, index: int = index, tags: dict[bytes, bytes] = tags) -> DkimResult:
            return _verify_sync(parsed, index, tags, keys, min_key_bits)

        results.append(await offload(one, scan_timeout))
    return results
