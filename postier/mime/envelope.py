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
"""

from __future__ import annotations

from postier.mime.address import Address, parse_address_list
from postier.mime.parse import Part
from postier.mime.quote import DEFAULT_LITERAL_OVER, nstring


def addresses(part: Part, name: str) -> list[Address]:
    """The parsed address list of header `name`, empty when absent."""
    key = name.lower()
    cached = part.address_cache.get(key)
    if cached is not None:
        return cached
    raw = part.headers.get(key)
    addrs = [] if raw is None else parse_address_list(raw.decode("utf-8", "surrogateescape"))
    part.address_cache[key] = addrs
    return addrs


def _address_list(addrs: list[Address], literal_over: int) -> bytes:
    if not addrs:
        return b"NIL"
    out = [b"("]
    for a in addrs:
        out += (
            b"(",
            nstring(a.name, literal_over),
            b" ",
            nstring(a.adl, literal_over),
            b" ",
            nstring(a.mailbox, literal_over),
            b" ",
            nstring(a.host, literal_over),
            b")",
        )
    out.append(b")")
    return b"".join(out)


def envelope(part: Part, *, literal_over: int = DEFAULT_LITERAL_OVER) -> bytes:
    """The parenthesised ENVELOPE of the message whose header `part` holds."""
    h = part.headers
    frm = addresses(part, "from")
    sender = addresses(part, "sender") or frm
    reply_to = addresses(part, "reply-to") or frm
    return b"".join(
        (
            b"(",
            nstring(h.get("date"), literal_over),
            b" ",
            nstring(h.get("subject"), literal_over),
            b" ",
            _address_list(frm, literal_over),
            b" ",
            _address_list(sender, literal_over),
            b" ",
            _address_list(reply_to, literal_over),
            b" ",
            _address_list(addresses(part, "to"), literal_over),
            b" ",
            _address_list(addresses(part, "cc"), literal_over),
            b" ",
            _address_list(addresses(part, "bcc"), literal_over),
            b" ",
            nstring(h.get("in-reply-to"), literal_over),
            b" ",
            nstring(h.get("message-id"), literal_over),
            b")",
        )
    )
