"""IMAP ENVELOPE (RFC 9051 §7.5.2, RFC 3501 §7.4.2) as pre-serialised bytes.

Rules:
- Fields in order: date, subject, from, sender, reply-to, to, cc, bcc,
  in-reply-to, message-id. A missing header is NIL.
- Strings are the raw header text, unfolded and trimmed, never decoded
  (encoded-words stay as written: the client decodes).
- sender and reply-to default to from when absent or empty (RFC 9051 §7.5.2:
  "the server sets the corresponding member of the envelope to be the same
  value as the from member").
- An address list that yields no address is NIL; group syntax uses the
  start/end markers produced by `postier.mime.address`.
- The first occurrence of a duplicated header is used.
- `read_envelope` reads the stored bytes back (SORT keys, the Date: header's own
  zone) in one linear pass; it never raises, junk yields None.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from postier.mime.address import Address, parse_address_list
from postier.mime.parse import Part
from postier.mime.quote import DEFAULT_LITERAL_OVER, PLAIN_TEXT, nstring


def addresses(part: Part, name: str) -> list[Address]:
    """The parsed address list of header `name`, empty when absent."""
    cache = part.address_cache
    cached = cache.get(name)  # callers name them in lower case
    if cached is not None:
        return cached
    key = name.lower()
    cached = cache.get(key)
    if cached is not None:
        return cached
    raw = part.headers.get(key)
    addrs = [] if raw is None else parse_address_list(raw.decode("utf-8", "surrogateescape"))
    cache[key] = addrs
    return addrs


def _address_list(addrs: list[Address], literal_over: int) -> bytes:
    if not addrs:
        return b"NIL"
    out = [b"("]
    for name, adl, mailbox, host in addrs:
        if mailbox is not None and host is not None and adl is None:
            # the common address: every string quoted as it is, which one match
            # of them joined tells (`PLAIN_TEXT` is a class of characters)
            text = mailbox + host if name is None else name + mailbox + host
            if len(text) <= literal_over and PLAIN_TEXT.fullmatch(text):
                if name is None:
                    out.append(f'(NIL NIL "{mailbox}" "{host}")'.encode())
                else:
                    out.append(f'("{name}" NIL "{mailbox}" "{host}")'.encode())
                continue
        out += (
            b"(",
            nstring(name, literal_over),
            b" ",
            nstring(adl, literal_over),
            b" ",
            nstring(mailbox, literal_over),
            b" ",
            nstring(host, literal_over),
            b")",
        )
    out.append(b")")
    return b"".join(out)


def envelope(part: Part, *, literal_over: int = DEFAULT_LITERAL_OVER) -> bytes:
    """The parenthesised ENVELOPE of the message whose header `part` holds."""
    frm = addresses(part, "from")
    return envelope_of(
        part,
        frm,
        addresses(part, "to"),
        addresses(part, "cc"),
        addresses(part, "bcc"),
        literal_over=literal_over,
    )


def envelope_of(
    part: Part,
    frm: list[Address],
    to: list[Address],
    cc: list[Address],
    bcc: list[Address],
    *,
    literal_over: int = DEFAULT_LITERAL_OVER,
) -> bytes:
    """`envelope(part)` given the address lists of its From:, To:, Cc: and Bcc:
    (`addresses`): the summary has them at hand for its own text fields."""
    h = part.headers
    from_list = _address_list(frm, literal_over)
    # sender and reply-to are most often from's own list (absent or empty)
    sender = addresses(part, "sender") or frm
    sender_list = from_list if sender is frm else _address_list(sender, literal_over)
    reply_to = addresses(part, "reply-to") or frm
    reply_to_list = from_list if reply_to is frm else _address_list(reply_to, literal_over)
    return b"".join(
        (
            b"(",
            nstring(h.get("date"), literal_over),
            b" ",
            nstring(h.get("subject"), literal_over),
            b" ",
            from_list,
            b" ",
            sender_list,
            b" ",
            reply_to_list,
            b" ",
            _address_list(to, literal_over),
            b" ",
            _address_list(cc, literal_over),
            b" ",
            _address_list(bcc, literal_over),
            b" ",
            nstring(h.get("in-reply-to"), literal_over),
            b" ",
            nstring(h.get("message-id"), literal_over),
            b")",
        )
    )


class Envelope(NamedTuple):
    """A stored ENVELOPE read back: strings as written in the header (raw octets
    decoded as UTF-8, undecodable octets kept as surrogates), address lists with
    their group markers."""

    date: str | None
    subject: str | None
    from_: list[Address]
    sender: list[Address]
    reply_to: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    in_reply_to: str | None
    message_id: str | None


# quoted = DQUOTE *QUOTED-CHAR DQUOTE; literal = "{" number "}" CRLF *CHAR8 (RFC 9051 §9)
_TOKEN = re.compile(rb'\s*(?:(\()|(\))|(NIL)|"((?:[^"\\]|\\.)*)"|\{([0-9]{1,10})\}\r\n)')
_UNQUOTE = re.compile(rb"\\(.)")
_Value = bytes | None | list["_Value"]


def _values(data: bytes) -> _Value:
    """The parenthesised value at the start of `data` as nested lists (an explicit
    stack: no recursion), or ValueError."""
    stack: list[list[_Value]] = []
    pos = 0
    while True:
        m = _TOKEN.match(data, pos)
        if m is None:
            raise ValueError("not an envelope")
        pos = m.end()
        value: _Value
        if m.group(1):
            stack.append([])
            continue
        if m.group(2):
            if not stack:
                raise ValueError("unbalanced")
            value = stack.pop()
        elif m.group(3):
            value = None
        elif m.group(5) is not None:
            n = int(m.group(5))
            value = data[pos : pos + n]
            pos += n
        else:
            value = _UNQUOTE.sub(rb"\1", m.group(4))
        if not stack:
            return value
        stack[-1].append(value)


def _text(value: _Value) -> str | None:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else None


def _addresses(value: _Value) -> list[Address]:
    out: list[Address] = []
    for item in value if isinstance(value, list) else ():
        if isinstance(item, list) and len(item) == 4:
            out.append(Address(*(_text(v) for v in item)))
    return out


def read_envelope(data: bytes) -> Envelope | None:
    """The fields of a stored ENVELOPE (`envelope`'s output), or None for bytes that
    are not one."""
    try:
        fields = _values(data)
    except ValueError:
        return None
    if not isinstance(fields, list) or len(fields) != 10:
        return None
    f = fields
    return Envelope(
        _text(f[0]), _text(f[1]), _addresses(f[2]), _addresses(f[3]), _addresses(f[4]),
        _addresses(f[5]), _addresses(f[6]), _addresses(f[7]), _text(f[8]), _text(f[9]),
    )  # fmt: skip
