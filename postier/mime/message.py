"""`ParsedMessage`: a message parsed once, at intake, for every reader there.

The filters (header rules, text, Bayes, the virus scan), DKIM and ARC
verification, the header edits and the stored summary (ENVELOPE,
BODYSTRUCTURE, preview) all read this one value instead of splitting the
bytes again each.

Rules:
- The header block is split into fields once (`parse_header`), keeping each
  field's octet positions; look-ups by name, the MIME root's fields and
  dkimpy's ``(name, value)`` list are all derived from those positions, and
  each value is unfolded and decoded once, on the first look-up.
- The MIME tree (`root`) is parsed once, on first use (CPU-bound: the first
  reader runs off the event loop), with the header fields above for its root.
- Decoded text parts (`texts`) are decoded once, on demand, bounded by
  `MAX_CHARS` characters in all: spam signals sit at the start, and a 50 MB
  text part must not cost 50 MB of regex work.
- `summary` describes the message as stored: our fields on top (trace,
  Authentication-Results, X-Spam-*, Date:/Message-ID: completion), then the
  client's header (possibly with fields removed), then the client's body;
  it gives what `summary.summarize` gives for those bytes, without parsing
  them again.
- Nothing here raises on any bytes, except `dkim_fields` and `dkim_body`,
  which raise `HeaderFormatError` where dkimpy's own parser raises (callers
  turn it into the result dkimpy would have given).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from postier.mail.headers import HeaderView
from postier.mail.summary import MessageSummary
from postier.mime.encoding import UnknownEncoding, decode_charset, decode_transfer
from postier.mime.parse import Part, find_header_end, parse

#: characters of decoded text `texts` returns at most, over all parts
MAX_CHARS = 64 * 1024

_LINE_END = re.compile(rb"\r?\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
#: %x21-7E, the octets of a field name as dkimpy reads one (``bytes.translate``
#: deletes them: a name made of them only leaves nothing)
_VISIBLE = bytes(range(0x21, 0x7F))


class HeaderFormatError(ValueError):
    """A header line dkimpy refuses (`line` is the line, without its end)."""

    def __init__(self, line: bytes) -> None:
        super().__init__(line)
        self.line = line


class Field(NamedTuple):
    """One header field (or a line that is none) by position in the message.
    A tuple, not a dataclass: a message has a dozen or more and each is made
    at intake (a frozen dataclass's ``__init__`` costs several times more)."""

    start: int  # first octet of the field's first line
    colon: int  # offset of the colon; -1: a line that is no field
    end: int  # the octet after the last line end of the field (continuations included)
    name: str = ""  # lower case ("" for a line that is no field)


# A field's first line (after `parse_header` saw it does not start with a blank):
# the name is what comes before the first colon, blanks before the colon allowed,
# none inside (RFC 5322 §4.5.3). Tried once per line, at its start: linear.
_NAME = re.compile(rb"([^ \t:]+)[ \t]*:")


def parse_header(data: bytes, end: int) -> tuple[Field, ...]:
    """The header fields of ``data[:end]`` (the header block), in order.

    The rules of `parse.parse_fields`: a line starting with white space
    continues the field above (RFC 5322 §2.2.3); a field name is what comes
    before the first colon, white space before the colon allowed (§4.5.3);
    any other line (a first line that continues nothing included) is recorded
    as no field (colon -1), and the continuation lines after it belong to it.
    Empty lines are skipped. Linear: the usual header (field lines and their
    continuations only) in one regex pass, any other line by line (one split
    of the block, one anchored match per line)."""
    block = data[:end]
    # the usual header: every line a field's first line or its continuation
    out: list[Field] = []
    pos = 0
    new = tuple.__new__  # Field(...) without its Python-level __new__
    findall = _FIELDS.findall
    window = 0  # where the next findall starts: a field's first line
    while window < end:
        stop = end if window + WINDOW >= end else _field_start_after(block, window + WINDOW, end)
        for name, blanks, value in findall(block, window, stop):
            start = pos
            colon = start + len(name) + len(blanks)
            pos = colon + 1 + len(value)
            out.append(new(Field, (start, colon, pos, name.decode("latin-1").lower())))
        if pos != stop:
            break  # a line that is no field (or a gap): line by line
        window = stop
    if pos == end:  # the matches, in order and apart, add up to the whole block
        return tuple(out)
    return _parse_lines(block, end)


#: header octets one findall covers: each call holds the GIL (a 1.3 MB header of
#: 100,000 fields held it 30 ms in a thread; 50 MB of header would hold it 1 s)
WINDOW = 64 * 1024


def _field_start_after(block: bytes, at: int, end: int) -> int:
    """The first line start at or after `at` that continues no field (a field's
    first line, or the end): findall's windows never cut a field."""
    if at >= end:
        return end
    nl = block.find(b"\n", at - 1)
    while 0 <= nl < end - 1 and block[nl + 1] in (0x20, 0x09):
        nl = block.find(b"\n", nl + 1)
    return end if nl < 0 or nl >= end - 1 else nl + 1


# One field of the usual header: at a line start, a name without blanks, CR or
# LF, blanks, the colon, the rest of the line and its continuation lines, each
# ended by LF. The matches cover the whole block exactly (their lengths add up
# to it) or the block takes `_parse_lines`. Linear: a match is tried at line
# starts only (elsewhere "^" fails at once) and possessive runs never give back.
_FIELDS = re.compile(rb"(?m)^([^ \t:\r\n]++)([ \t]*+):([^\n]*+\n(?:[ \t][^\n]*+\n)*+)")


def _parse_lines(block: bytes, end: int) -> tuple[Field, ...]:
    """`parse_header` line by line, for any header block."""
    out: list[Field] = []
    pos = 0
    # the open group: start, colon, end, name (start -1: none)
    g_start, g_colon, g_end, g_name = -1, -1, 0, ""
    match = _NAME.match
    lines = block.split(b"\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        line_end = pos + len(line) + 1 if i < last else end
        if not line or (line == b"\r" and i < last):  # an empty line (a CR alone ends none)
            pos = line_end
            continue
        c = line[0]
        if c == 0x20 or c == 0x09:
            if g_start < 0:  # a continuation with no field above: no field either
                g_start, g_colon, g_name = pos, -1, ""
            g_end = line_end
            pos = line_end
            continue
        if g_start >= 0:
            out.append(Field(g_start, g_colon, g_end, g_name))
        m = match(line)
        if m is None:
            g_start, g_colon, g_end, g_name = pos, -1, line_end, ""
        else:
            name = m.group(1)
            g_start, g_colon, g_end = pos, pos + m.end() - 1, line_end
            g_name = name.decode("latin-1").lower()
        pos = line_end
    if g_start >= 0:
        out.append(Field(g_start, g_colon, g_end, g_name))
    return tuple(out)


def _unfold(data: bytes, start: int, end: int) -> bytes:
    """A field value without its line ends (RFC 5322 §2.2.3), trimmed as
    `parse.parse_fields` trims it."""
    seg = data[start:end]
    nl = seg.find(b"\n")
    if nl < 0 or nl == len(seg) - 1:  # one line: its end is trimmed with the blanks
        return seg.strip(b" \t\r\n")
    return _LINE_END.sub(b"", seg).strip(b" \t\r")


@dataclass(frozen=True)
class Header(HeaderView):
    """The header block with its fields' positions: `fields` and `has` answer
    from them instead of scanning the block again.

    Each field is unfolded and decoded once, on the first look-up (the filters
    ask for From: three times, the header edits want every value, the MIME
    parser every unfolded value); the look-ups may run in worker threads, and
    two threads filling the cache at once fill it with equal values."""

    positions: tuple[Field, ...] = ()
    _cache: list[_Values] = field(default_factory=list, init=False, compare=False, repr=False)

    @classmethod
    def parse(cls, data: bytes, header_length: int, body_offset: int) -> Header:
        """The header of `data`: its first `header_length` octets, the body at
        `body_offset` (where `headers.HeaderScanner` found them)."""
        return cls(data[:header_length], body_offset, parse_header(data, header_length))

    def _values(self) -> _Values:
        cache = self._cache
        if cache:
            return cache[0]
        raw = self.raw
        unfolded: list[bytes] = []
        texts: list[str] = []
        by_name: dict[str, list[str]] = {}
        for f in self.positions:
            if f.colon < 0:
                unfolded.append(b"")
                texts.append("")
                continue
            u = _unfold(raw, f.colon + 1, f.end)
            # the decoded, trimmed value: as `value` gives it (`_unfold` trimmed
            # only ASCII blanks, which ``str.strip`` trims too, decoded alone)
            text = u.decode("utf-8", "replace").strip()
            unfolded.append(u)
            texts.append(text)
            same = by_name.get(f.name)
            if same is None:
                by_name[f.name] = [text]
            else:
                same.append(text)
        values = _Values(unfolded, texts, by_name)
        cache.append(values)
        return values

    def fields(self, name: str) -> list[str]:
        return list(self._values().by_name.get(name.lower(), ()))

    def value(self, f: Field) -> str:
        """The field's value unfolded, decoded (UTF-8, else U+FFFD) and trimmed."""
        raw = self.raw[f.colon + 1 : f.end]
        return _LINE_END.sub(b"", raw).decode("utf-8", "replace").strip()

    def without(self, unwanted: Callable[[str, str], bool]) -> bytes | None:
        """The header block without the fields for which ``unwanted(name, value)``
        is true, all else byte-identical; None when there is none such."""
        raw = self.raw
        texts = self._values().texts
        pieces: list[bytes] = []
        pos = 0
        for f, text in zip(self.positions, texts, strict=True):
            if f.colon >= 0 and unwanted(f.name, text):
                pieces.append(raw[pos : f.start])
                pos = f.end
        if not pieces:
            return None
        pieces.append(raw[pos:])
        return b"".join(pieces)

    def has(self, name: str) -> bool:
        return name.lower() in self._values().by_name

    def mime_fields(self) -> list[tuple[str, bytes]]:
        """(lower-case name, unfolded value): what `parse.parse_fields` gives."""
        unfolded = self._values().unfolded
        return [(f.name, u) for f, u in zip(self.positions, unfolded, strict=True) if f.colon >= 0]


class _Values(NamedTuple):
    """A header's fields unfolded and decoded (`Header._values`), by position
    (a line that is no field has b"" and "") and decoded by name."""

    unfolded: list[bytes]
    texts: list[str]
    by_name: dict[str, list[str]]


class ParsedMessage:
    """The client's message (no trace fields) and its one parse.

    `data` is the whole message in memory; `header` comes from the intake's
    header scanner (or `of`). `crlf_only`: the caller knows every line ends in
    CRLF, no bare CR or LF anywhere (SMTP DATA: the core refuses or rewrites
    them), so no one counts line ends to find out. Also a
    `filters.pipeline.MessageSource`."""

    def __init__(self, data: bytes, header: Header, *, crlf_only: bool = False) -> None:
        self.data = data
        self.header = header
        self.crlf_only = crlf_only
        self._lock = threading.Lock()
        self._root: Part | None = None
        self._texts: list[tuple[str, str]] | None = None
        self._dkim: tuple[list[list[bytes]], bytes] | Exception | None = None

    @classmethod
    def of(cls, data: bytes) -> ParsedMessage:
        """Any bytes (no header scanner ran): the header ends at the first empty line."""
        header_end, body_start = find_header_end(data, 0, len(data))
        return cls(data, Header.parse(data, header_end, body_start))

    @property
    def size(self) -> int:
        return len(self.data)

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        data = self.data
        for i in range(0, len(data), chunk_size):
            yield data[i : i + chunk_size]

    @property
    def root(self) -> Part:
        """The MIME tree (offsets into `data`), parsed on first use."""
        root = self._root
        if root is None:
            with self._lock:
                if self._root is None:
                    self._root = parse(self.data, root_fields=self.header.mime_fields())
                root = self._root
        return root

    def texts(self, check: Callable[[], None] | None = None) -> list[tuple[str, str]]:
        """(content type, decoded text) of each inline text/plain and text/html
        part, `MAX_CHARS` characters at most in all; decoded once. `check` is
        called between parts (a time budget: it raises to stop)."""
        if self._texts is None:
            self._texts = _texts(self.data, self.root, check)
        return self._texts

    # --- DKIM and ARC: the header and body as dkimpy's own parser gives them
    def dkim_fields(self) -> list[list[bytes]]:
        """dkimpy's header list (``[name, value + CRLF]``, as `dkim.rfc822_parse`
        returns it), a fresh copy each call (dkimpy changes it in place)."""
        return [list(f) for f in self._dkim_split()[0]]

    def dkim_body(self) -> bytes:
        """The body with CRLF line ends, as `dkim.rfc822_parse` returns it."""
        return self._dkim_split()[1]

    def _dkim_split(self) -> tuple[list[list[bytes]], bytes]:
        got = self._dkim
        if got is None:
            try:
                got = _dkim_split(self.data, self.header, self.crlf_only)
            except (HeaderFormatError, IndexError) as e:
                got = e
            self._dkim = got
        if isinstance(got, Exception):
            raise got
        return got

    # --- what the store keeps
    def summary(self, above: bytes = b"", client_header: bytes | None = None) -> MessageSummary:
        """The summary of ``above + client header + body``: `above` holds the
        fields we add on top, `client_header` the client's header block as
        stored (with fields removed; the empty line included), None when
        unchanged. Never raises (see `summary.summarize`)."""
        from postier.mime.summary import summary_of  # summary.py imports this module

        return summary_of(self, above, client_header)


def _texts(data: bytes, root: Part, check: Callable[[], None] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    budget = MAX_CHARS
    for part in root.walk():
        if check is not None:
            check()
        if part.is_multipart or budget <= 0:
            continue
        ctype = f"{part.maintype}/{part.subtype}".lower()
        if ctype not in ("text/plain", "text/html"):
            continue
        if (part.disposition or "").lower() == "attachment":
            continue
        # a few bytes per character at most: cut the raw body before decoding
        raw = data[part.body_start : min(part.body_end, part.body_start + budget * 4)]
        try:
            payload = decode_transfer(raw, part.cte)
        except UnknownEncoding:
            continue
        text = decode_charset(payload, part.param("charset"))[:budget]
        budget -= len(text)
        out.append((ctype, text))
    return out


def _dkim_split(
    data: bytes, header: Header, crlf_only: bool = False
) -> tuple[list[list[bytes]], bytes]:
    """`dkim.rfc822_parse(data)` from the field positions: the same lists, and
    `HeaderFormatError` or `IndexError` where it raises."""
    headers: list[list[bytes]] = []
    for f in header.positions:
        if data[f.start] in (0x20, 0x09):
            raise IndexError("the header starts with a continuation line")
        if f.colon >= 0:
            # a field: its colon is the first of its first line, after one octet
            # at least, where dkimpy looks for it; a name of visible ASCII is
            # dkimpy's name (else the general path below decides)
            name = data[f.start : f.colon]
            if not name.translate(None, _VISIBLE):
                seg = data[f.colon + 1 : f.end]
                if not crlf_only and seg.count(b"\n") != seg.count(b"\r\n"):
                    seg = _BARE_LF.sub(b"\r\n", seg)
                if not seg.endswith(b"\n"):
                    seg += b"\r\n"
                headers.append([name, seg])
                continue
        first_end = data.find(b"\n", f.start, f.end)
        first_end = f.end if first_end < 0 else first_end + 1
        line = data[f.start : first_end]
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        colon = line.find(b":", 1)  # dkimpy: ``([\x21-\x7e]+?):``, so ":" may start a name
        name = line[:colon] if colon > 0 else b""
        if name and all(0x21 <= c <= 0x7E for c in name):
            headers.append([name, _crlf_lines(data, f.start + colon + 1, f.end)])
            continue
        if line.startswith(b"From "):  # an mbox separator: dkimpy skips the line
            if first_end < f.end:  # its continuations continue the field above
                headers[-1][1] += _crlf_lines(data, first_end, f.end)
            continue
        raise HeaderFormatError(line)
    # dkimpy's body starts after the first empty line, as the MIME parser's does
    body = data[find_header_end(data, 0, len(data))[1] :]
    if not crlf_only and body.count(b"\n") != body.count(b"\r\n"):
        body = _BARE_LF.sub(b"\r\n", body)
    return headers, body


def _crlf_lines(data: bytes, start: int, end: int) -> bytes:
    """``data[start:end]`` with each line ended by CRLF (dkimpy joins the lines
    it split at ``\\r?\\n`` with CRLF, and ends the last one with CRLF too)."""
    seg = data[start:end]
    if seg.count(b"\n") != seg.count(b"\r\n"):
        seg = _BARE_LF.sub(b"\r\n", seg)
    if not seg.endswith(b"\n"):
        seg += b"\r\n"
    return seg


def with_fields(root: Part, fields: list[tuple[str, bytes]]) -> Part:
    """`root` with `fields` above its own (first occurrence wins): the part as
    seen once our fields are on top, sharing everything else."""
    headers = dict(fields)
    for name, value in root.fields:
        headers.setdefault(name, value)
    return replace(root, headers=headers, address_cache={})
