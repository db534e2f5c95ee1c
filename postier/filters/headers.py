"""Header and body heuristics at end of data: the cheap tells of junk mail.

Rules (each a named score, weights in `spam.DEFAULT_SCORES`):
- MISSING_FROM / MISSING_DATE (RFC 5322 §3.6 requires both), MISSING_TO,
  MISSING_MESSAGE_ID (§3.6.4 SHOULD); FROM_MULTIPLE: more than one From: field
  (§3.6 allows one).
- FORGED_LOCAL_FROM: an unauthenticated client sends a From: in one of our
  domains and neither SPF nor DKIM passed for that domain (aligned relaxed).
- TO_TOO_MANY: more than `max_to` addresses in To: and Cc:.
- HTML_ONLY: the text is HTML with no text/plain alternative.
- URL_IP_HOST: a link to a bare IP address; URL_TEXT_MISMATCH: a link whose
  visible text is a URL on another domain than its target (the phishing trick).
The text comes from `Context.texts` (text.py: inline text parts, decoded,
64 K characters at most); the header and body rules run off the event loop
with a time budget (`Context.analysis`). Every scan here is linear in the text: links
are found by a hand-written scanner (`links`), not a regex (the old one,
``<a\\s[^>]*?href...(.*?)</a\\s*>``, took 43 s on 32 KB of ``<a href=x ``:
cubic backtracking); tags are removed with ``<[^<>]*>``, whose matches never
overlap.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from urllib.parse import urlsplit

from postier.filters.pipeline import Context, Phase, Verdict, timeout_verdict
from postier.filters.spam import Weights
from postier.mail.headers import HeaderView
from postier.mailauth.dmarc import aligned
from postier.mime.address import addresses
from postier.offload import Budget, ScanTimeout

_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
# From each "<" the class stops at the next "<" or ">": every character is looked
# at from one start at most (``<[^>]+>`` rescanned a run of "<" from each one).
_TAG = re.compile(r"<[^<>]*>")
_SPACE = " \t\n\r\f"


def links(text: str) -> Iterator[tuple[str, str]]:
    """(href, inner HTML) of each ``<a ... href=...>...</a>`` in `text`.

    The rules of the regex this replaces: the first ``>`` ends the start tag; a
    start tag without href is no link; the first ``</a>`` after it (white space
    allowed before ``>``) ends the link; a link never closed ends the scan.
    Linear: every search starts where the previous one of its kind ended (the
    end of the link found last is remembered for the next start tags)."""
    lower = text.lower()
    pos = 0
    close = after = -1  # the last "</a>" found: its start, and the index of its ">"
    while True:
        start = lower.find("<a", pos)
        if start < 0:
            return
        if lower[start + 2 : start + 3] not in tuple(_SPACE):
            pos = start + 2  # <abbr>, <a>: not a link with attributes
            continue
        tag_end = lower.find(">", start)
        if tag_end < 0:
            return
        href = _href(text, lower, start + 2, tag_end)
        if not href:
            pos = tag_end + 1
            continue
        if close < tag_end:
            close, after = _closing(lower, tag_end)
            if close < 0:
                return
        yield href, text[tag_end + 1 : close]
        pos = after + 1


def _closing(lower: str, pos: int) -> tuple[int, int]:
    """The first ``</a\\s*>`` at or after `pos`: (its start, its ">"), or (-1, -1)."""
    while True:
        close = lower.find("</a", pos)
        if close < 0:
            return -1, -1
        after = close + 3
        while after < len(lower) and lower[after] in _SPACE:
            after += 1
        if lower[after : after + 1] == ">":
            return close, after
        pos = after  # "</abbr>": look further on


def _href(text: str, lower: str, start: int, end: int) -> str:
    """The href attribute's value inside the start tag ``text[start:end]``."""
    pos = start
    while True:
        i = lower.find("href", pos, end)
        if i < 0:
            return ""
        j = i + 4
        while j < end and lower[j] in _SPACE:
            j += 1
        if j < end and lower[j] == "=":
            j += 1
            while j < end and lower[j] in _SPACE:
                j += 1
            if j < end and lower[j] in "\"'":
                j += 1
            k = j
            while k < end and lower[k] not in "\"' \t\n\r\f>":
                k += 1
            if k > j:
                return text[j:k]
        pos = j


def most_addresses(values: list[str]) -> int:
    """An upper bound of ``len(addresses(values))``, without parsing: every
    address `parse_address_list` gives ends at a "," or ";" outside quotes and
    comments, or at the end of its value (a group's name is no address)."""
    return sum(v.count(",") + v.count(";") + 1 for v in values)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _is_ip_host(host: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", host)) or ":" in host


class HeadersStage:
    name = "headers"
    phases = frozenset({Phase.DATA})

    def __init__(
        self,
        weights: Weights,
        *,
        is_local_domain: Callable[[str], Awaitable[bool]],
        max_to: int = 50,
    ) -> None:
        self.weights = weights
        self.is_local_domain = is_local_domain
        self.max_to = max_to

    def _v(self, rule: str, detail: str) -> Verdict:
        return Verdict.scored(self.name, rule, self.weights[rule], detail)

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.header is None:
            return []
        got: tuple[list[Verdict], list[str], list[Verdict] | ScanTimeout]
        got = await ctx.analysis(self)
        out, from_domains, body = got
        if not ctx.authenticated:
            for domain in from_domains:
                if await self.is_local_domain(domain) and not self._authenticated_for(ctx, domain):
                    out.append(
                        self._v(
                            "FORGED_LOCAL_FROM", f"From: {domain} is ours but the client is not"
                        )
                    )
                    break
        if isinstance(body, ScanTimeout):  # the header rules above still count
            out.append(timeout_verdict(self.name, body, self.weights["SCAN_TIMEOUT"]))
        else:
            out += body
        return out

    def analyse(
        self, ctx: Context, budget: Budget
    ) -> tuple[list[Verdict], list[str], list[Verdict] | ScanTimeout]:
        """CPU-bound (a worker thread): the header rules, the domains of the From:
        addresses, and the body rules (or the `ScanTimeout` they ended in)."""
        if ctx.header is None:
            return [], [], []
        out, from_domains = self._header(ctx.header)
        body: list[Verdict] | ScanTimeout = []
        if ctx.message is not None:
            try:
                body = self._body(ctx.texts(budget), budget)
            except ScanTimeout as e:
                body = e
        return out, from_domains, body

    def _header(self, view: HeaderView) -> tuple[list[Verdict], list[str]]:
        """The header rules, and the domains of the From: addresses."""
        out: list[Verdict] = []
        froms = view.fields("From")
        values = view.fields("To") + view.fields("Cc")
        if not froms:
            out.append(self._v("MISSING_FROM", "no From: header"))
        elif len(froms) > 1:
            out.append(self._v("FROM_MULTIPLE", f"{len(froms)} From: headers"))
        if not view.has("To"):
            out.append(self._v("MISSING_TO", "no To: header"))
        if not view.has("Date"):
            out.append(self._v("MISSING_DATE", "no Date: header"))
        if not view.has("Message-ID"):
            out.append(self._v("MISSING_MESSAGE_ID", "no Message-ID: header"))
        if most_addresses(values) > self.max_to:  # else the list need not be parsed
            n_to = len(addresses(values))
            if n_to > self.max_to:
                out.append(self._v("TO_TOO_MANY", f"{n_to} addresses in To:/Cc:"))
        return out, [a.rpartition("@")[2] for a in addresses(froms)]

    @staticmethod
    def _authenticated_for(ctx: Context, domain: str) -> bool:
        if (
            ctx.spf is not None
            and ctx.spf.status == "pass"
            and aligned(ctx.spf.domain, domain, "r")
        ):
            return True
        return any(r.status == "pass" and aligned(r.domain, domain, "r") for r in ctx.dkim or [])

    def _body(self, parts: list[tuple[str, str]], budget: Budget) -> list[Verdict]:
        """CPU-bound (a worker thread): HTML_ONLY, URL_IP_HOST, URL_TEXT_MISMATCH."""
        out: list[Verdict] = []
        types = {t for t, _ in parts}
        if "text/html" in types and "text/plain" not in types:
            out.append(self._v("HTML_ONLY", "HTML without a text/plain part"))
        ip_url = mismatch = ""
        for ctype, text in parts:
            budget.check()
            if "://" not in text:
                continue  # no URL at all: skip the regex work (most text parts)
            for url in _URL.findall(text):
                if _is_ip_host(_host(url)) and not ip_url:
                    ip_url = url
            if ctype != "text/html":
                continue
            for href, inner in links(text):
                budget.check()
                shown = html.unescape(_TAG.sub("", inner)).strip()
                m = _URL.search(shown)
                target, shown_host = _host(href), _host(m.group(0)) if m else ""
                if target and shown_host and not mismatch and not aligned(target, shown_host, "r"):
                    mismatch = f"text {shown_host} links to {target}"
        if ip_url:
            out.append(self._v("URL_IP_HOST", f"link to an IP address: {ip_url[:80]}"))
        if mismatch:
            out.append(self._v("URL_TEXT_MISMATCH", mismatch))
        return out
