"""RFC 5322 §3.4 address lists as IMAP address structures (name, adl, mailbox, host).

Owns: tokenising and parsing From/To/Cc/... header values, keeping the raw
text (encoded-words are not decoded: IMAP ENVELOPE carries them as written).

Rules:
- Never raises; junk yields best-effort addresses.
- Groups (RFC 5322 §3.4 ``display-name ":" [group-list] ";"``) become a start
  marker ``(None, None, name, None)`` and an end marker ``(None, None, None, None)``
  (RFC 9051 §7.5.2); an unterminated group is closed at the end of the value.
- Missing parts are filled as Dovecot does: mailbox ``MISSING_MAILBOX``, host
  ``MISSING_DOMAIN``, so a broken address can never look like a group marker.
- The display name is the phrase with quotes removed and quoted-pairs undone,
  words joined by one space where the source had whitespace; with no phrase,
  a comment after an addr-spec (``a@b (Name)``) is the name. The local part is
  unquoted; a source route (obs-route, RFC 5322 §4.4) becomes the adl.

Why hand-written: `email.utils.getaddresses` flattens groups, decodes and
normalises, and `email._header_value_parser` is private.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"


class Address(NamedTuple):
    """One IMAP address structure; a group marker has ``host is None``."""

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None

    @property
    def is_group_start(self) -> bool:
        return self.host is None and self.mailbox is not None

    @property
    def is_group_end(self) -> bool:
        return self.host is None and self.mailbox is None

    @property
    def addr_spec(self) -> str:
        return f"{self.mailbox}@{self.host}"


GROUP_END = Address(None, None, None, None)


class _Tok(NamedTuple):
    kind: str  # "atom", "qs", "lit", "(" (comment) or the special character itself
    text: str
    ws: bool  # whitespace or a comment came before it


_LEX = re.compile(
    r"""(?P<ws>[ \t\r\n]+)"""
    r"""|(?P<atom>[^(<>@,;:."\[\] \t\r\n]+)"""
    # an unterminated quoted string runs to the end, a lone backslash there included:
    # the branch always matches, so an opening quote never makes the regex scan the
    # rest of the value and give up (many quotes made the tokenizer quadratic)
    r"""|"(?P<qs>(?:[^"\\]|\\.)*)(?:"|\\?\Z)"""
    r"""|(?P<lit>\[[^\]]*(?:\]|\Z))"""
    r"""|(?P<special>[<>@,;:.\]])""",
    re.DOTALL,
)
_QP = re.compile(r"\\(.)|[\r\n]", re.DOTALL)


def _comment(s: str, i: int) -> tuple[str, int]:
    """RFC 5322 §3.2.2 comment starting at s[i] == "(" (nested); → (text, end)."""
    depth = 0
    n = len(s)
    buf: list[str] = []
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            buf.append(s[i + 1])
            i += 2
            continue
        if c == "(":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c == ")":
            depth -= 1
            if not depth:
                return "".join(buf).strip(), i + 1
        buf.append(c)
        i += 1
    return "".join(buf).strip(), n


def tokenize(s: str) -> list[_Tok]:
    """RFC 5322 §3.2 lexical tokens; comments kept as kind "("."""
    toks: list[_Tok] = []
    i = 0
    n = len(s)
    ws = False
    match = _LEX.match
    while i < n:
        if s[i] == "(":
            text, i = _comment(s, i)
            toks.append(_Tok("(", text, ws))
            ws = True
            continue
        m = match(s, i)
        if m is None:  # pragma: no cover - every character matches one branch
            i += 1
            continue
        kind = m.lastgroup or "special"
        i = m.end()
        if kind == "ws":
            ws = True
            continue
        if kind == "atom":
            toks.append(_Tok("atom", m.group(kind), ws))
        elif kind == "qs":
            # RFC 5322 §3.2.4: quoted-pair undone, CR/LF of folding dropped
            toks.append(_Tok("qs", _QP.sub(lambda q: q.group(1) or "", m.group(kind)), ws))
        elif kind == "lit":
            toks.append(_Tok("lit", "".join(m.group(kind).split()), ws))
        else:
            ch = m.group(kind)
            toks.append(_Tok(ch, ch, ws))
        ws = False
    return toks


def _phrase(toks: list[_Tok]) -> str:
    out: list[str] = []
    for t in toks:
        if t.kind == "(":
            continue
        if out and t.ws:
            out.append(" ")
        out.append(t.text)
    return "".join(out)


def _joined(toks: list[_Tok]) -> str:
    return "".join(t.text for t in toks if t.kind != "(")


def _last_comment(toks: list[_Tok]) -> str | None:
    for t in reversed(toks):
        if t.kind == "(" and t.text:
            return t.text
    return None


def _make(name: str | None, adl: str | None, mailbox: str, host: str) -> Address:
    return Address(name or None, adl or None, mailbox or MISSING_MAILBOX, host or MISSING_DOMAIN)


# The forms most mail has: one address, bare or in angle brackets, after a
# display name of plain words or a simple quoted string; no comments, routes,
# groups or escapes; alone, or a list of them without quotes. `parse_address_list`
# answers them without tokenizing (what the tokenizer would give, test_mime_addresses
# checks); anything else, however close, takes the general path.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SPEC = rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?P<host>{_ATEXT}(?:\.{_ATEXT})*)"
_SIMPLE = re.compile(
    rf"[ \t]*(?:"
    rf"(?:(?P<words>{_ATEXT}(?:[ \t]+{_ATEXT})*)|\"(?P<quoted>[^\"\\\r\n]*)\")?[ \t]*<{_SPEC}>"
    rf"|{_SPEC.replace('?P<local>', '?P<local2>').replace('?P<host>', '?P<host2>')}"
    rf")[ \t]*\Z"
)


def parse_address_list(value: str) -> list[Address]:
    """Parse an (unfolded) address-list header value. Never raises."""
    m = _SIMPLE.match(value)
    if m is not None:
        return [_simple(m)]
    if "," in value and '"' not in value:
        # a list of the common forms ("Bob <b@x>, c@y"): outside quoted strings
        # (and comments, groups, routes, which the shortcut refuses) the tokenizer
        # parses the addresses between commas one by one, as the shortcut does
        out = []
        for piece in value.split(","):
            m = _SIMPLE.match(piece)
            if m is None:
                break
            out.append(_simple(m))
        else:
            return out
    return _parse_tokens(value)


def _simple(m: re.Match[str]) -> Address:
    """The address of a `_SIMPLE` match."""
    local = m.group("local")
    if local is None:  # a bare addr-spec
        return Address(None, None, m.group("local2"), m.group("host2"))
    words, quoted = m.group("words"), m.group("quoted")
    name = " ".join(words.split()) if words else quoted
    return Address(name or None, None, local, m.group("host"))


def _parse_tokens(value: str) -> list[Address]:
    """`parse_address_list` of any value, through the tokenizer."""
    toks = tokenize(value)
    n = len(toks)
    out: list[Address] = []
    in_group = False
    i = 0
    while i < n:
        phrase: list[_Tok] = []
        while i < n and toks[i].kind not in ("<", "@", ":", ",", ";"):
            if toks[i].kind != ">":
                phrase.append(toks[i])
            i += 1
        stop = toks[i].kind if i < n else ""
        if stop == "<":
            addr, i = _angle(toks, i + 1, _phrase(phrase))
            out.append(addr)
        elif stop == "@":
            i += 1
            dom: list[_Tok] = []
            while i < n and toks[i].kind not in (",", ";", "<"):
                dom.append(toks[i])
                i += 1
            if i < n and toks[i].kind == "<":
                # "a@b <c@d>": the addr-spec-looking text was the display name
                shown = _phrase([*phrase, _Tok("@", "@", False), *dom])
                addr, i = _angle(toks, i + 1, shown)
                out.append(addr)
            else:
                out.append(_make(_last_comment(phrase + dom), None, _joined(phrase), _joined(dom)))
        elif stop == ":":
            i += 1
            if not in_group:
                out.append(Address(None, None, _phrase(phrase), None))  # group start
                in_group = True
        else:  # "," ";" or the end
            if any(t.kind != "(" for t in phrase):
                out.append(_make(None, None, _joined(phrase), ""))
            if stop == ";" and in_group:
                out.append(GROUP_END)
                in_group = False
            i += 1
    if in_group:
        out.append(GROUP_END)
    return out


def _angle(toks: list[_Tok], i: int, name: str | None) -> tuple[Address, int]:
    """After "<": [obs-route ":"] addr-spec ">" (RFC 5322 §3.4, §4.4)."""
    n = len(toks)
    adl = None
    if i < n and toks[i].kind == "@":
        j = i
        route: list[_Tok] = []
        while j < n and toks[j].kind not in (":", ">", ";"):
            route.append(toks[j])
            j += 1
        if j < n and toks[j].kind == ":":
            adl = _joined(route)
            i = j + 1
    local: list[_Tok] = []
    while i < n and toks[i].kind not in ("@", ">", ",", ";"):
        local.append(toks[i])
        i += 1
    dom: list[_Tok] = []
    if i < n and toks[i].kind == "@":
        i += 1
        while i < n and toks[i].kind not in (">", ",", ";"):
            dom.append(toks[i])
            i += 1
    if i < n and toks[i].kind == ">":
        i += 1
    trailing: list[_Tok] = []
    while i < n and toks[i].kind not in (",", ";"):
        trailing.append(toks[i])
        i += 1
    if not name:
        name = _last_comment(trailing)
    if not local and not dom:
        return Address(name or None, adl, MISSING_MAILBOX, MISSING_DOMAIN), i
    return _make(name, adl, _joined(local), _joined(dom)), i


# RFC 5322 §3.2.3 dot-atom (8-bit allowed, RFC 6532); atext excludes ".": linear
_DOT_ATOM = re.compile(
    r"[^\x00-\x20()<>\[\]:;@\\,.\"\x7f]+(?:\.[^\x00-\x20()<>\[\]:;@\\,.\"\x7f]+)*"
)


def addresses(values: list[str]) -> list[str]:
    """The addr-specs of address-list field values, lower-cased domain.

    `parse_address_list` parses them: linear and never raises. (The stdlib's
    `email.utils.getaddresses` recursed once per nested "(": a From: with a
    thousand of them raised RecursionError in every stage that read it.)"""
    out = []
    for value in values:
        for a in parse_address_list(value):
            if a.host is None or a.mailbox is None:
                continue  # a group's start or end
            if a.mailbox == MISSING_MAILBOX or a.host == MISSING_DOMAIN:
                continue
            local = a.mailbox
            if not _DOT_ATOM.fullmatch(local):  # RFC 5322 §3.4.1: quoted-string form
                local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out.append(f"{local}@{a.host.lower().rstrip('.')}")
    return out
