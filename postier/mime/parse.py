"""The MIME structure of a message as a tree of `Part`s with exact octet offsets.

Owns: splitting a message (bytes, CRLF or bare LF line ends) into header and
body, parsing the header fields the rest of `postier.mime` needs (RFC 5322
§2.2 unfolding; RFC 2045 Content-*; RFC 2183 Content-Disposition; RFC 3282
Content-Language; RFC 2557 Content-Location; RFC 1864 Content-MD5), multipart
bodies (RFC 2046 §5.1) and encapsulated messages (RFC 2046 §5.2.1,
RFC 6532 §3.7 message/global).

Rules:
- `parse` never raises on any input; malformed input yields a best-effort tree.
  A part without (or with an unusable) Content-Type is text/plain;
  charset=us-ascii (RFC 2045 §5.2), or message/rfc822 inside multipart/digest
  (RFC 2046 §5.1.5).
- Offsets index the original bytes: ``data[part.header_start:part.body_start]``
  is the header including the blank line, ``data[part.body_start:part.body_end]``
  the body as transmitted. Nothing is copied or normalised.
- The line end before a boundary delimiter belongs to the delimiter
  (RFC 2046 §5.1.1), so a body part ends before it. A missing close delimiter
  ends the last part at the end of the enclosing body; preamble and epilogue
  belong to no child.
- A multipart without a boundary parameter, or beyond `max_depth` / `max_parts`,
  is treated as an opaque text/plain part (its header fields are kept).
  message/rfc822 and message/global are parsed as nested messages only when
  their transfer encoding is an identity one (7bit, 8bit, binary; RFC 2046
  §5.2.1) and the limits allow; otherwise they are leaves.
- Header values are kept unfolded (CRLF before WSP removed, RFC 5322 §2.2.3)
  and stripped of surrounding whitespace; the first occurrence of a field wins.

Why hand-written: the stdlib `email` package is slow on large messages, rewrites
bytes (line ends, header folding) and gives no octet offsets, which IMAP needs
for BODY[section], part sizes and line counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postier.mime.address import Address
from postier.mime.encoding import decode_charset

DEFAULT_MAX_DEPTH = 50
"""Nesting levels (multipart children and encapsulated messages) parsed before
a part is treated as an opaque leaf."""

MAX_DEPTH_CEILING = 200
"""`max_depth` is capped here: the parser and serialisers recurse about three
Python frames per level and must stay below the interpreter's recursion limit."""

DEFAULT_MAX_PARTS = 10_000
"""Parts created for one message before further multiparts become leaves."""

_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
_TSPECIALS = frozenset('()<>@,;:\\"/[]?= \t')
# RFC 2045 §5.1 token: any CHAR except SPACE, CTLs, or tspecials
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


@dataclass(frozen=True, slots=True)
class Param:
    """One Content-Type or Content-Disposition parameter after RFC 2231 merging.

    `value` is decoded text. `raw` is set only for RFC 2231 extended parameters
    (``name*=charset'lang'%XX``): the merged ``charset'lang'%XX`` form, which is
    what BODYSTRUCTURE carries under the name ``name*`` (as Dovecot does).
    """

    name: str
    value: str
    raw: str | None = None


@dataclass(slots=True, eq=False)
class Part:
    """One entity: the whole message, a body part, or an encapsulated message."""

    header_start: int
    header_end: int  # first octet of the blank line (or body_start if none)
    body_start: int
    body_end: int
    fields: list[tuple[str, bytes]] = field(default_factory=list)
    headers: dict[str, bytes] = field(default_factory=dict)  # first occurrence by lower name
    maintype: str = "text"  # as written in the message
    subtype: str = "plain"
    params: list[Param] = field(default_factory=list)
    content_type_given: bool = False
    encoding: str | None = None  # Content-Transfer-Encoding token as written
    disposition: str | None = None
    disposition_params: list[Param] = field(default_factory=list)
    language: list[str] | None = None
    children: list[Part] = field(default_factory=list)  # multipart body parts
    message: Part | None = None  # the encapsulated message of message/rfc822
    is_multipart: bool = False
    lines: int = 0  # LF count of the body, for text/* and message/* parts
    address_cache: dict[str, list[Address]] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        """Octets of the body as transmitted (encoded)."""
        return self.body_end - self.body_start

    @property
    def content_type(self) -> str:
        """``type/subtype`` lower-cased, for comparisons."""
        return f"{self.maintype}/{self.subtype}".lower()

    @property
    def is_message(self) -> bool:
        return self.message is not None

    @property
    def cte(self) -> str:
        """The transfer encoding lower-cased; "7bit" when absent."""
        return self.encoding.lower() if self.encoding else "7bit"

    def header(self, name: str) -> bytes | None:
        """The unfolded value of the first field called `name` (any case)."""
        return self.headers.get(name.lower())

    def text_header(self, name: str) -> str | None:
        v = self.headers.get(name.lower())
        return None if v is None else v.decode("utf-8", "surrogateescape")

    def param(self, name: str) -> str | None:
        return _find_param(self.params, name)

    def disposition_param(self, name: str) -> str | None:
        return _find_param(self.disposition_params, name)

    @property
    def filename(self) -> str | None:
        """RFC 2183 filename, else the Content-Type name parameter."""
        return self.disposition_param("filename") or self.param("name")

    def walk(self) -> list[Part]:
        """This part and every descendant, depth first, in message order."""
        out: list[Part] = []
        stack: list[Part] = [self]
        while stack:
            p = stack.pop()
            out.append(p)
            if p.message is not None:
                stack.append(p.message)
            stack.extend(reversed(p.children))
        return out


def _find_param(params: list[Param], name: str) -> str | None:
    n = name.lower()
    for p in params:
        if p.name.lower() == n:
            return p.value
    return None


def parse(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_parts: int = DEFAULT_MAX_PARTS,
    root_fields: list[tuple[str, bytes]] | None = None,
) -> Part:
    """Parse a whole message. Never raises; see the module rules.

    `root_fields`: the message header's fields as `parse_fields` gives them,
    when the caller split the header already (`message.ParsedMessage`)."""
    ctx = _Ctx(data, min(max_depth, MAX_DEPTH_CEILING), max_parts)
    return ctx.part(0, len(data), 0, digest=False, fields=root_fields)


class _Ctx:
    __slots__ = ("data", "max_depth", "max_parts", "parts")

    def __init__(self, data: bytes, max_depth: int, max_parts: int) -> None:
        self.data = data
        self.max_depth = max_depth
        self.max_parts = max_parts
        self.parts = 0

    def part(
        self,
        start: int,
        end: int,
        depth: int,
        *,
        digest: bool,
        fields: list[tuple[str, bytes]] | None = None,
    ) -> Part:
        data = self.data
        self.parts += 1
        header_end, body_start = find_header_end(data, start, end)
        p = Part(start, header_end, body_start, end)
        if fields is None:
            fields = parse_fields(data[start:header_end])
        p.fields = fields
        headers = p.headers
        for name, value in fields:
            if name not in headers:
                headers[name] = value
        _apply_content_headers(p, digest)
        can_nest = depth < self.max_depth and self.parts < self.max_parts
        if p.maintype.lower() == "multipart":
            boundary = p.param("boundary")
            if boundary and can_nest:
                p.is_multipart = True
                self.multipart(p, boundary.encode("utf-8", "surrogateescape"), depth)
            else:
                # RFC 2046 §5.1.1 makes boundary mandatory; without it (or past
                # the limits) the body is opaque text.
                _make_default_text(p)
        mt = p.maintype.lower()
        if mt == "text" or mt == "message":
            p.lines = data.count(b"\n", p.body_start, p.body_end)
        if (
            mt == "message"
            and p.subtype.lower() in ("rfc822", "global")
            and p.cte in _IDENTITY_ENCODINGS
            and can_nest
        ):
            p.message = self.part(p.body_start, p.body_end, depth + 1, digest=False)
        return p

    def multipart(self, p: Part, boundary: bytes, depth: int) -> None:
        """Split the body of `p` at its boundary delimiter lines (RFC 2046 §5.1.1)."""
        data = self.data
        start, end = p.body_start, p.body_end
        digest = p.subtype.lower() == "digest"
        delim = b"--" + boundary
        dlen = len(delim)
        pos = start
        part_start = -1  # start of the current body part, -1 while in the preamble
        while True:
            i = data.find(delim, pos, end)
            if i < 0:
                break
            pos = i + 1
            if i != start and data[i - 1] != 0x0A:
                continue  # not at the start of a line
            j = i + dlen
            close = data[j : j + 2] == b"--"
            if close:
                j += 2
            # transport-padding := *LWSP-char, then CRLF (RFC 2046 §5.1.1)
            while j < end and data[j] in (0x20, 0x09):
                j += 1
            if j < end:
                if data[j] == 0x0A:
                    j += 1
                elif data[j] == 0x0D and j + 1 < end and data[j + 1] == 0x0A:
                    j += 2
                else:
                    continue  # text after the boundary: not a delimiter line
            if part_start >= 0:
                # the line end before the delimiter is part of the delimiter
                pe = i
                if pe > part_start and data[pe - 1] == 0x0A:
                    pe -= 1
                    if pe > part_start and data[pe - 1] == 0x0D:
                        pe -= 1
                self.add_child(p, part_start, pe, depth, digest)
            if close:
                return
            part_start = j
            if self.parts >= self.max_parts:
                break
        if part_start >= 0:
            self.add_child(p, part_start, end, depth, digest)  # no close delimiter

    def add_child(self, p: Part, start: int, end: int, depth: int, digest: bool) -> None:
        p.children.append(self.part(start, end, depth + 1, digest=digest))


def find_header_end(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(header_end, body_start) of the entity in data[start:end].

    The header ends at the first empty line (RFC 5322 §2.1); with none, the
    whole entity is header and the body is empty.
    """
    if start >= end:
        return start, start
    c = data[start]
    if c == 0x0A:
        return start, start + 1
    if c == 0x0D and data[start + 1 : start + 2] == b"\n":
        return start, start + 2
    i = data.find(b"\n\r\n", start, end)
    j = data.find(b"\n\n", start, i + 2 if i >= 0 else end)
    if j >= 0 and (i < 0 or j < i):
        return j + 1, j + 2
    if i >= 0:
        return i + 1, i + 3
    return end, end


def parse_fields(block: bytes) -> list[tuple[str, bytes]]:
    """Header fields of a header block as (lower-case name, unfolded value).

    Lines that are neither a field nor a continuation (no colon, or a name with
    whitespace, e.g. an mbox ``From `` line) are skipped.
    """
    out: list[tuple[str, bytes]] = []
    name: str | None = None
    chunks: list[bytes] = []
    for line in block.split(b"\n"):
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line:
            continue
        c = line[0]
        if c == 0x20 or c == 0x09:
            if name is not None:
                chunks.append(line)  # RFC 5322 §2.2.3 unfolding: drop the CRLF only
            continue
        if name is not None:
            out.append((name, b"".join(chunks).strip(b" \t\r")))
            name = None
        colon = line.find(b":")
        if colon <= 0:
            continue
        raw = line[:colon].rstrip(b" \t")  # obs-optional: "Subject :" (RFC 5322 §4.5)
        if not raw or b" " in raw or b"\t" in raw:
            continue
        name = raw.decode("latin-1").lower()
        chunks = [line[colon + 1 :]]
    if name is not None:
        out.append((name, b"".join(chunks).strip(b" \t\r")))
    return out


def _make_default_text(p: Part) -> None:
    p.maintype, p.subtype = "text", "plain"
    p.params = []
    p.content_type_given = False
    p.is_multipart = False


def _apply_content_headers(p: Part, digest: bool) -> None:
    h = p.headers
    ct = h.get("content-type")
    parsed = False
    if ct is not None:
        token, params = parse_params(ct.decode("utf-8", "surrogateescape"))
        slash = token.find("/")
        if slash > 0:
            mt, st = token[:slash].strip(), token[slash + 1 :].strip()
            if mt and st and _is_token(mt) and _is_token(st):
                p.maintype, p.subtype, p.params = mt, st, params
                p.content_type_given = parsed = True
    if not parsed and digest:
        p.maintype, p.subtype = "message", "rfc822"  # RFC 2046 §5.1.5
    cte = h.get("content-transfer-encoding")
    if cte is not None:
        t = cte.decode("latin-1").strip()
        t = _strip_comments(t).strip() if "(" in t else t
        if t and _is_token(t):
            p.encoding = t  # RFC 2045 §6.1; an invalid one is ignored (7bit)
    cd = h.get("content-disposition")
    if cd is not None:
        token, params = parse_params(cd.decode("utf-8", "surrogateescape"))
        if token and _is_token(token):
            p.disposition, p.disposition_params = token, params  # RFC 2183 §2
    cl = h.get("content-language")
    if cl is not None:
        text = cl.decode("latin-1")
        text = _strip_comments(text) if "(" in text else text
        langs = [t.strip() for t in text.split(",")]  # RFC 3282 §2
        langs = [t for t in langs if t and _is_token(t)]
        p.language = langs or None


def _is_token(s: str) -> bool:
    return _TOKEN.fullmatch(s) is not None


def _strip_comments(s: str) -> str:
    """Remove RFC 5322 §3.2.2 comments outside quoted strings."""
    out: list[str] = []
    depth = 0
    quoted = False
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if quoted:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(s[i + 1])
                i += 1
            elif ch == '"':
                quoted = False
        elif depth:
            if ch == "\\":
                i += 1
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
        elif ch == "(":
            depth = 1
        else:
            if ch == '"':
                quoted = True
            out.append(ch)
        i += 1
    return "".join(out)


def parse_params(value: str) -> tuple[str, list[Param]]:
    """``token *(";" attribute "=" value)`` → (token, merged parameters).

    RFC 2045 §5.1 syntax, tolerant: unquoted values may contain spaces
    (up to the next ";"), an unterminated quoted string runs to the end.
    RFC 2231 continuations and charset/language are merged and decoded.
    """
    if "(" in value:
        value = _strip_comments(value)
    semi = value.find(";")
    if semi < 0:
        return value.strip(), []
    token = value[:semi].strip()
    raw: list[tuple[str, str, bool]] = []  # (name, value, was_quoted)
    i = semi + 1
    n = len(value)
    while i < n:
        eq = value.find("=", i)
        sc = value.find(";", i)
        if eq < 0 or (0 <= sc < eq):
            i = n if sc < 0 else sc + 1  # attribute without a value: skip it
            continue
        name = value[i:eq].strip()
        j = eq + 1
        while j < n and value[j] in " \t":
            j += 1
        if j < n and value[j] == '"':
            j += 1
            close = value.find('"', j)
            if close < 0:
                close = n  # unterminated: runs to the end
            if value.find("\\", j, close) < 0:  # no quoted-pair: the text as it is
                v = value[j:close]
                j = close
            else:
                buf: list[str] = []
                while j < n and value[j] != '"':
                    if value[j] == "\\" and j + 1 < n:
                        j += 1
                    buf.append(value[j])
                    j += 1
                v = "".join(buf)
            quoted = True
            sc = value.find(";", j)
            i = n if sc < 0 else sc + 1
        else:
            sc = value.find(";", j)
            end = n if sc < 0 else sc
            v = value[j:end].strip()
            quoted = False
            i = end + 1
        if name:
            raw.append((name, v, quoted))
    if not any("*" in name for name, _, _ in raw):
        return token, [Param(name, v) for name, v, _ in raw]
    return token, _merge_rfc2231(raw)


def _merge_rfc2231(raw: list[tuple[str, str, bool]]) -> list[Param]:
    """RFC 2231 §3 continuations and §4 charset/language, merged per name."""
    order: list[str] = []
    plain: dict[str, Param] = {}
    # lower base name -> (display name, {index: (value, extended)})
    groups: dict[str, tuple[str, dict[int, tuple[str, bool]]]] = {}
    for name, v, _quoted in raw:
        star = name.find("*")
        if star < 0:
            key = name.lower()
            if key not in plain and key not in groups:
                plain[key] = Param(name, v)
                order.append(key)
            continue
        base, rest = name[:star], name[star + 1 :]
        extended = rest.endswith("*") or rest == ""
        idx_text = rest[:-1] if rest.endswith("*") else rest
        if idx_text == "":
            index = 0
        elif idx_text.isascii() and idx_text.isdigit() and (idx_text == "0" or idx_text[0] != "0"):
            index = int(idx_text)  # RFC 2231 §3: no leading zeros
        else:
            continue
        key = base.lower()
        if key in plain:
            continue  # the plain form came first; RFC 2231 §3 forbids mixing
        if key not in groups:
            groups[key] = (base, {})
            order.append(key)
        segs = groups[key][1]
        if index not in segs:
            segs[index] = (v, extended)
    out: list[Param] = []
    for key in order:
        if key in plain:
            out.append(plain[key])
            continue
        base, segs = groups[key]
        values: list[tuple[str, bool]] = []
        k = 0
        while k in segs:  # segments must be numbered 0, 1, 2 ... without gaps
            values.append(segs[k])
            k += 1
        if not values:
            continue
        if not any(ext for _, ext in values):
            out.append(Param(base, "".join(v for v, _ in values)))
            continue
        charset, lang = "", ""
        first, first_ext = values[0]
        if first_ext:
            pieces = first.split("'", 2)
            if len(pieces) == 3:
                charset, lang, first = pieces
            values[0] = (first, True)
        octets = bytearray()
        encoded: list[str] = []
        for v, ext in values:
            if ext:
                b = _pct_decode(v)
                encoded.append(v)
            else:
                b = v.encode("utf-8", "surrogateescape")
                encoded.append(_pct_encode(b))
            octets += b
        text = decode_charset(bytes(octets), charset or "us-ascii")
        out.append(Param(base, text, f"{charset}'{lang}'" + "".join(encoded)))
    return out


_HEX = "0123456789abcdefABCDEF"


def _pct_decode(s: str) -> bytes:
    out = bytearray()
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "%" and i + 2 < n and s[i + 1] in _HEX and s[i + 2] in _HEX:
            out.append(int(s[i + 1 : i + 3], 16))
            i += 3
            continue
        out += ch.encode("utf-8", "surrogateescape")
        i += 1
    return bytes(out)


def _pct_encode(b: bytes) -> str:
    # RFC 2231 §7 attribute-char: no SPACE, CTLs, "*", "'", "%", or tspecials
    out: list[str] = []
    for c in b:
        ch = chr(c)
        if 0x21 <= c <= 0x7E and ch not in _TSPECIALS and ch not in "*'%":
            out.append(ch)
        else:
            out.append(f"%{c:02X}")
    return "".join(out)
