"""IMAP BODYSTRUCTURE and BODY (RFC 9051 §7.5.2, RFC 3501 §7.4.2) as bytes.

Rules:
- body-type-1part: type, subtype, params, id, description, encoding, size;
  text/* adds the line count; message/rfc822 and message/global add envelope,
  body and line count. body-type-mpart: the children (no separator), then the
  subtype. The extensible form appends body-ext-1part (md5, disposition,
  language, location) or body-ext-mpart (params, disposition, language,
  location).
- Types, subtypes, parameter names and values are sent as written in the
  message. Defaults are the RFC's upper-case spelling: a part without a usable
  Content-Type is ``"TEXT" "PLAIN" ("CHARSET" "US-ASCII")`` (RFC 2045 §5.2),
  a text/* part without charset gets ``"CHARSET" "US-ASCII"`` appended
  (RFC 2046 §4.1.2), a missing encoding is ``"7BIT"`` (RFC 2045 §6.1).
- Sizes are octets of the body as stored (what BODY[section] returns); line
  counts are LF counts.
- RFC 2231 extended parameters are sent merged under ``name*`` with the value
  ``charset'lang'%XX…`` (as Dovecot does), plain ones decoded and merged.
- A multipart with no body part found gets one empty text/plain child, and a
  message/rfc822 part that was not parsed (non-identity encoding, limits)
  gets an empty envelope and body, so the result is always valid syntax.
- Content-Language is always a parenthesised list.
"""

from __future__ import annotations

from postier.mime.envelope import envelope
from postier.mime.parse import Param, Part
from postier.mime.quote import DEFAULT_LITERAL_OVER, PLAIN_TEXT, nstring, quote

_EMPTY_TEXT = b'"TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0'
_EMPTY_ENVELOPE = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def bodystructure(
    part: Part, *, extensible: bool = True, literal_over: int = DEFAULT_LITERAL_OVER
) -> bytes:
    """BODYSTRUCTURE (extensible=True) or BODY (extensible=False) of a message."""
    out: list[bytes] = []
    _Writer(extensible, literal_over, out).part(part)
    return b"".join(out)


def bodystructures(part: Part, *, literal_over: int = DEFAULT_LITERAL_OVER) -> tuple[bytes, bytes]:
    """``(bodystructure(part), bodystructure(part, extensible=False))`` in one walk
    of the tree: BODY is BODYSTRUCTURE without the extension data, so what both
    share is worked out once and goes into both."""
    out: list[bytes] = []
    plain: list[bytes] = []
    _Writer(True, literal_over, out, plain).part(part)
    return b"".join(out), b"".join(plain)


class _Writer:
    """Writes one form into `out`; with `plain` (and `ext`), BODY into `plain`
    beside BODYSTRUCTURE into `out`."""

    __slots__ = ("ext", "lo", "out", "plain")

    def __init__(
        self, ext: bool, literal_over: int, out: list[bytes], plain: list[bytes] | None = None
    ) -> None:
        self.ext = ext
        self.lo = literal_over
        self.out = out
        self.plain = plain

    def q(self, value: bytes | str) -> bytes:
        return quote(value, self.lo)

    def nq(self, value: bytes | str | None) -> bytes:
        return nstring(value, self.lo)

    def params(self, params: list[Param], extra: list[tuple[str, str]] | None = None) -> bytes:
        items: list[str] = []
        for p in params:
            if p.raw is None:
                items += (p.name, p.value)
            else:
                items += (p.name + "*", p.raw)
        if extra:
            for k, v in extra:
                items += (k, v)
        if not items:
            return b"NIL"
        text = "".join(items)
        if len(text) <= self.lo and PLAIN_TEXT.fullmatch(text):
            # every name and value quoted as it is (one match of them joined)
            return ('("' + '" "'.join(items) + '")').encode()
        return b"(" + b" ".join(self.q(s) for s in items) + b")"

    def tail(self, p: Part) -> bytes:
        """disposition, language, location: shared by both extension forms."""
        location = self.nq(p.headers.get("content-location"))
        if p.disposition is None and p.language is None:
            return b"NIL NIL " + location
        if p.disposition is None:
            dsp = b"NIL"
        else:
            dsp = b"(" + self.q(p.disposition) + b" " + self.params(p.disposition_params) + b")"
        if p.language is None:
            lang = b"NIL"
        else:
            lang = b"(" + b" ".join(self.q(t) for t in p.language) + b")"
        return dsp + b" " + lang + b" " + location

    def part(self, p: Part) -> None:
        out, plain = self.out, self.plain
        out.append(b"(")
        if plain is not None:
            plain.append(b"(")
        if p.is_multipart:
            if p.children:
                for child in p.children:
                    self.part(child)
            else:
                out.append(b"(" + _EMPTY_TEXT + (b" NIL NIL NIL NIL)" if self.ext else b")"))
                if plain is not None:
                    plain.append(b"(" + _EMPTY_TEXT + b")")
            subtype = b" " + self.q(p.subtype)
            out.append(subtype)
            if self.ext:
                out.append(b" " + self.params(p.params) + b" " + self.tail(p))
            out.append(b")")
            if plain is not None:
                plain += (subtype, b")")
            return
        mt = p.maintype.lower()
        h = p.headers
        extra: list[tuple[str, str]] | None = None
        if p.content_type_given:
            main, sub = p.maintype, p.subtype
            if len(main) + len(sub) <= self.lo and PLAIN_TEXT.fullmatch(main + sub):
                media = f'"{main}" "{sub}"'.encode()
            else:
                media = self.q(main) + b" " + self.q(sub)
            if mt == "text" and p.param("charset") is None:
                extra = [("CHARSET", "US-ASCII")]  # RFC 2046 §4.1.2
        elif mt == "message":
            media = b'"MESSAGE" "RFC822"'  # RFC 2046 §5.1.5 digest default
        else:
            media = b'"TEXT" "PLAIN"'  # RFC 2045 §5.2
            extra = [("CHARSET", "US-ASCII")]
        fields = (
            media,
            b" ",
            self.params(p.params, extra),
            b" ",
            self.nq(h.get("content-id")),
            b" ",
            self.nq(h.get("content-description")),
            b" ",
            self.q(p.encoding) if p.encoding else b'"7BIT"',
            b" %d" % p.size,
        )
        out += fields
        if plain is not None:
            plain += fields
        if mt == "text":
            lines = b" %d" % p.lines
            out.append(lines)
            if plain is not None:
                plain.append(lines)
        elif mt == "message" and p.subtype.lower() in ("rfc822", "global"):
            if p.message is not None:
                env = (b" ", envelope(p.message, literal_over=self.lo), b" ")
                out += env
                if plain is not None:
                    plain += env
                self.part(p.message)
            else:
                empty = b"(" + _EMPTY_TEXT + (b" NIL NIL NIL NIL)" if self.ext else b")")
                out += (b" ", _EMPTY_ENVELOPE, b" ", empty)
                if plain is not None:
                    plain += (b" ", _EMPTY_ENVELOPE, b" (", _EMPTY_TEXT, b")")
            lines = b" %d" % p.lines
            out.append(lines)
            if plain is not None:
                plain.append(lines)
        if self.ext:
            out += (b" ", self.nq(h.get("content-md5")), b" ", self.tail(p))
        out.append(b")")
        if plain is not None:
            plain.append(b")")
