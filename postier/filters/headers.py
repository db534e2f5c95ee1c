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
The body is parsed with the standard library's `email` package (compat32
policy: never raises on malformed input); only text parts are looked at.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.spam import Weights
from postier.mailauth.dmarc import aligned
from postier.smtp import headers as hdr

_LINK = re.compile(
    r"""<a\s[^>]*?href\s*=\s*["']?([^"'\s>]+)[^>]*>(.*?)</a\s*>""", re.IGNORECASE | re.DOTALL
)
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


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
        view = ctx.header
        out: list[Verdict] = []
        froms = view.fields("From")
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
        n_to = len(hdr.addresses(view.fields("To") + view.fields("Cc")))
        if n_to > self.max_to:
            out.append(self._v("TO_TOO_MANY", f"{n_to} addresses in To:/Cc:"))
        if not ctx.authenticated:
            for addr in hdr.addresses(froms):
                domain = addr.rpartition("@")[2]
                if await self.is_local_domain(domain) and not self._authenticated_for(ctx, domain):
                    out.append(
                        self._v(
                            "FORGED_LOCAL_FROM", f"From: {domain} is ours but the client is not"
                        )
                    )
                    break
        if ctx.message is not None:
            out.extend(self._body(ctx.texts))
        return out

    @staticmethod
    def _authenticated_for(ctx: Context, domain: str) -> bool:
        if (
            ctx.spf is not None
            and ctx.spf.status == "pass"
            and aligned(ctx.spf.domain, domain, "r")
        ):
            return True
        return any(r.status == "pass" and aligned(r.domain, domain, "r") for r in ctx.dkim or [])

    def _body(self, parts: list[tuple[str, str]]) -> list[Verdict]:
        out: list[Verdict] = []
        types = {t for t, _ in parts}
        if "text/html" in types and "text/plain" not in types:
            out.append(self._v("HTML_ONLY", "HTML without a text/plain part"))
        ip_url = mismatch = ""
        for ctype, text in parts:
            if "://" not in text:
                continue  # no URL at all: skip the regex work (most text parts)
            for url in _URL.findall(text):
                if _is_ip_host(_host(url)) and not ip_url:
                    ip_url = url
            if ctype != "text/html":
                continue
            for href, inner in _LINK.findall(text):
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
