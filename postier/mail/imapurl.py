"""IMAP URLs (RFC 5092), absolute and relative, with their URLAUTH parts (RFC 4467
§7): what CATENATE (RFC 4469) and URLAUTH/BURL name messages with. It lives below
the protocols because IMAP and SMTP submission (BURL, RFC 4468) both parse them,
and so does the URLAUTH check they share.

Rules:
- `parse(text, base)` gives an `ImapUrl` with every component decoded: the mailbox
  percent-decoded then read as UTF-8 (RFC 5092 §3.2: IMAP URLs carry UTF-8 names,
  never modified UTF-7), the section percent-decoded (the caller parses it as a
  section-spec). A relative URL is resolved against `base` by RFC 3986 §5.2
  (RFC 5092 §7.1: ";UID=" and ";SECTION=" are path segments for resolution);
  without a base, only an absolute URL is accepted.
- Parameter names (";UIDVALIDITY=", ";UID=", ";SECTION=", ";PARTIAL=", ";AUTH=",
  ";EXPIRE=", ";URLAUTH=") are case-insensitive (ABNF strings are).
- Anything off the grammar is `UrlError` (a message fit for ``NO [BADURL ...]``).
  Parsing is a single pass of non-nested regular expressions over at most
  `MAX_URL` characters: linear in what the client sent.
- URLAUTH (RFC 4467): `rump` is the exact text of an absolute URL up to and
  including the access identifier (what GENURLAUTH signs); `mechanism` and
  `token` are the verifier after it, when present.
- The module knows no session or store: whether a URL names *this* server and
  user, and whether the message exists, is the caller's business.

Why hand-written: urllib.parse knows nothing of IMAP's ";PARAM=" segments, the
UTF-8 mailbox rule or URLAUTH, and is lenient where a server must refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import unquote_to_bytes

__all__ = ["MAX_URL", "ImapUrl", "UrlError", "parse", "quote_mailbox", "quote_user"]

#: longer URLs are refused (a client URL is an astring of at most a command line)
MAX_URL: Final = 8192

# unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"                 RFC 3986 §2.3
# sub-delims-sh = "!" / "$" / "'" / "(" / ")" / "*" / "+" / ","      RFC 5092 §11
# achar = uchar / "&" / "=" ; uchar = unreserved / sub-delims-sh / pct-encoded
# bchar = achar / ":" / "@" / "/"
_ACHAR = r"(?:[A-Za-z0-9\-._~!$'()*+,&=]|%[0-9A-Fa-f]{2})"
_BCHAR = r"(?:[A-Za-z0-9\-._~!$'()*+,&=:@/]|%[0-9A-Fa-f]{2})"
# iserver = [iuserinfo "@"] host [":" port]
# iuserinfo = enc-user [iauth] / [enc-user] iauth ; iauth = ";AUTH=" ("*" / enc-auth-type)
# host = IP-literal / IPv4address / reg-name                         RFC 3986 §3.2.2
_SERVER: Final = re.compile(
    rf"(?:(?P<user>{_ACHAR}+)?(?:;AUTH=(?P<auth>\*|{_ACHAR}+))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.vV]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,=]|%[0-9A-Fa-f]{2})*)"
    r"(?::(?P<port>[0-9]{0,5}))?",
    re.IGNORECASE,
)
# imailbox-ref = enc-mailbox [uidvalidity] ; uidvalidity = ";UIDVALIDITY=" nz-number
_MAILBOX: Final = re.compile(rf"(?P<mailbox>{_BCHAR}+?)(?:;UIDVALIDITY=(?P<uv>[1-9][0-9]*))?"
                             rf"(?=/;|\?|;|$)", re.IGNORECASE)  # fmt: skip
_UID: Final = re.compile(r"/;UID=([1-9][0-9]*)", re.IGNORECASE)
_SECTION: Final = re.compile(rf"/;SECTION=({_BCHAR}+?)(?=/;PARTIAL=|;EXPIRE=|;URLAUTH=|$)",
                             re.IGNORECASE)  # fmt: skip
# partial-range = number ["." nz-number]
_PARTIAL: Final = re.compile(r"/;PARTIAL=([0-9]+)(?:\.([1-9][0-9]*))?", re.IGNORECASE)
_SEARCH: Final = re.compile(rf"\?({_BCHAR}+)")
# iurlauth-rump = [expire] ";URLAUTH=" access ; expire = ";EXPIRE=" date-time (RFC 3339)
# access = ("submit+" enc-user) / ("user+" enc-user) / "authuser" / "anonymous"
# iua-verifier = ":" uauth-mechanism ":" enc-urlauth ; enc-urlauth = 32*HEXDIG
_URLAUTH: Final = re.compile(
    r"(?:;EXPIRE=(?P<expire>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})))?"
    rf";URLAUTH=(?P<access>(?:submit|user)\+{_ACHAR}+|authuser|anonymous)"
    r"(?::(?P<mech>INTERNAL|[A-Za-z0-9\-.]+):(?P<token>[0-9A-Fa-f]{32,}))?",
    re.IGNORECASE,
)
_SCHEME: Final = re.compile(r"imap://", re.IGNORECASE)


class UrlError(ValueError):
    """Not an IMAP URL (RFC 5092 §11), or a relative one without a base."""


@dataclass(frozen=True)
class ImapUrl:
    """One IMAP URL, decoded. `host` is None only for `base`-less relative forms,
    which `parse` never returns."""

    host: str
    port: int | None = None
    user: str | None = None  # enc-user, decoded
    auth: str | None = None  # ";AUTH=" value: "*" or a SASL mechanism
    mailbox: str | None = None  # Unicode (from %-encoded UTF-8)
    uidvalidity: int | None = None
    uid: int | None = None
    section: str | None = None  # a section-spec as text ("1.2", "HEADER.FIELDS (To)")
    partial: tuple[int, int | None] | None = None  # (offset, length)
    search: str | None = None  # enc-search, decoded
    expire: datetime | None = None  # URLAUTH ";EXPIRE=" (RFC 4467 §3)
    access: str | None = None  # URLAUTH access identifier ("submit+fred", "authuser")
    mechanism: str | None = None  # URLAUTH verifier mechanism (upper case)
    token: str | None = None  # URLAUTH verifier token (hex)
    rump: str | None = None  # text up to and including the access identifier

    @property
    def is_message(self) -> bool:
        """Names one message or a part of it (imessagepart)."""
        return self.mailbox is not None and self.uid is not None and self.search is None

    def __str__(self) -> str:
        """The canonical absolute form (without a URLAUTH verifier)."""
        out = "imap://"
        if self.user is not None or self.auth is not None:
            out += _quote(self.user or "", _SAFE_ACHAR)
            if self.auth is not None:
                out += ";AUTH=" + (
                    self.auth if self.auth == "*" else _quote(self.auth, _SAFE_ACHAR)
                )
            out += "@"
        out += self.host
        if self.port is not None:
            out += f":{self.port}"
        out += "/"
        if self.mailbox is not None:
            out += quote_mailbox(self.mailbox)
            if self.uidvalidity is not None:
                out += f";UIDVALIDITY={self.uidvalidity}"
            if self.search is not None:
                out += "?" + _quote(self.search, _SAFE_BCHAR)
            if self.uid is not None:
                out += f"/;UID={self.uid}"
            if self.section is not None:
                out += "/;SECTION=" + _quote(self.section, _SAFE_BCHAR)
            if self.partial is not None:
                start, length = self.partial
                out += f"/;PARTIAL={start}" + ("" if length is None else f".{length}")
        return out


_SAFE_ACHAR: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                               b"-._~!$'()*+,&=")  # fmt: skip
_SAFE_BCHAR: Final = _SAFE_ACHAR | frozenset(b":@/")


def _quote(text: str, safe: frozenset[int]) -> str:
    return "".join(
        chr(b) if b in safe else f"%{b:02X}" for b in text.encode("utf-8")
    )  # RFC 5092 §3.2: UTF-8, %-encoded


def quote_mailbox(name: str) -> str:
    """enc-mailbox for a Unicode mailbox name (RFC 5092 §3.2); ";" and "?" are
    escaped so the name cannot run into the parameters."""
    return _quote(name, _SAFE_BCHAR)


def quote_user(name: str) -> str:
    """enc-user for a user name (RFC 5092 §11): "@", ":", ";" and "/" escaped."""
    return _quote(name, _SAFE_ACHAR)


def _decode(text: str, what: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise UrlError(f"{what} is not UTF-8") from None


def parse(text: str, base: ImapUrl | str | None = None) -> ImapUrl:
    """An IMAP URL, resolved against `base` when relative (RFC 3986 §5.2)."""
    if len(text) > MAX_URL:
        raise UrlError("URL too long")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in text):
        raise UrlError("URL contains characters that must be %-encoded")
    if _SCHEME.match(text) is None:
        if base is None:
            raise UrlError("Relative URL without a base")
        text = _resolve(text, str(base) if isinstance(base, ImapUrl) else base)
    return _absolute(text)


def _split(url: str) -> tuple[str, str, str]:
    """(authority, path, query) of an absolute ``imap://`` URL."""
    rest = url[len("imap://") :]
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    path, q, query = path.partition("?")
    return authority, path, (q + query)


def _resolve(ref: str, base: str) -> str:
    """RFC 3986 §5.2.2 for a reference without a scheme (and without fragments,
    which IMAP URLs do not have)."""
    b_auth, b_path, b_query = _split(base)
    if ref.startswith("//"):
        return "imap:" + ref
    path, q, query = ref.partition("?")
    query = q + query
    if not path:
        path, query = b_path, query or b_query
    elif path.startswith("/"):
        path = _remove_dots(path)
    else:
        merged = (b_path[: b_path.rfind("/") + 1] if b_path else "/") + path
        path = _remove_dots(merged)
    return f"imap://{b_auth}{path}{query}"


def _remove_dots(path: str) -> str:
    """RFC 3986 §5.2.4 on "/"-separated segments."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out)


def _absolute(url: str) -> ImapUrl:
    # imapurl = "imap://" iserver ipath-query ; ipath-query = ["/" [icommand]]
    # icommand = imessagelist / imessagepart [iurlauth]
    # imessagelist = imailbox-ref [asearch]
    # imessagepart = imailbox-ref iuid [isection] [ipartial]
    pos = len("imap://")
    m = _SERVER.match(url, pos)
    if m is None or not m.group("host"):
        raise UrlError("Missing server")
    port = m.group("port")
    if port is not None and (not port or int(port) > 65535):
        raise UrlError("Invalid port")
    fields: dict[str, object] = {
        "host": m.group("host").lower(),
        "port": int(port) if port else None,
        "user": _decode(m.group("user"), "User") if m.group("user") else None,
        "auth": None if m.group("auth") is None else _decode(m.group("auth"), "AUTH"),
    }
    pos = m.end()
    if pos == len(url):
        return ImapUrl(**fields)  # type: ignore[arg-type]
    if url[pos] != "/":
        raise UrlError("Invalid server")
    pos += 1
    if pos == len(url):
        return ImapUrl(**fields)  # type: ignore[arg-type]
    m = _MAILBOX.match(url, pos)
    if m is None:
        raise UrlError("Invalid mailbox")
    fields["mailbox"] = _decode(m.group("mailbox"), "Mailbox name")
    if m.group("uv"):
        fields["uidvalidity"] = _number(m.group("uv"), "UIDVALIDITY")
    pos = m.end()
    m = _SEARCH.match(url, pos)
    if m is not None:  # imessagelist: nothing may follow the search
        fields["search"] = _decode(m.group(1), "Search")
        if m.end() != len(url):
            raise UrlError("Unexpected text after the search")
        return ImapUrl(**fields)  # type: ignore[arg-type]
    m = _UID.match(url, pos)
    if m is not None:
        fields["uid"] = _number(m.group(1), "UID")
        pos = m.end()
        m = _SECTION.match(url, pos)
        if m is not None:
            fields["section"] = _decode(m.group(1), "Section")
            pos = m.end()
        m = _PARTIAL.match(url, pos)
        if m is not None:
            length = m.group(2)
            fields["partial"] = (int(m.group(1)), None if length is None else int(length))
            if int(m.group(1)) > 2**32 - 1 or (length is not None and int(length) > 2**32 - 1):
                raise UrlError("PARTIAL out of range")
            pos = m.end()
        m = _URLAUTH.match(url, pos)
        if m is not None:
            fields["rump"] = url[: m.end("access")]
            fields["access"] = m.group("access")
            if m.group("expire"):
                try:
                    fields["expire"] = datetime.fromisoformat(m.group("expire").upper())
                except ValueError:
                    raise UrlError("Invalid EXPIRE") from None
            if m.group("mech"):
                fields["mechanism"] = m.group("mech").upper()
                fields["token"] = m.group("token").lower()
            pos = m.end()
    if pos != len(url):
        raise UrlError("Invalid URL")
    return ImapUrl(**fields)  # type: ignore[arg-type]


def _number(digits: str, what: str) -> int:
    # nz-number: 32-bit (RFC 9051 §9)
    if len(digits) > 10 or int(digits) > 2**32 - 1:
        raise UrlError(f"{what} out of range")
    return int(digits)
