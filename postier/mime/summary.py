"""`summarize(data)`: everything intake caches about a message, parsed once.

Rules:
- Never raises on any bytes; malformed MIME yields a best-effort summary.
- Every text field is valid Unicode (no surrogates: the store's database and
  every UTF-8 writer refuse them): raw 8-bit header octets are read as UTF-8,
  else Windows-1252 (`encoding.from_escaped`); anything else undecodable is
  U+FFFD. The raw octets stay in the message itself.
- `envelope`, `bodystructure` and `body` are IMAP syntax (see `envelope.py`,
  `bodystructure.py`); the text fields are for people: encoded-words decoded
  (RFC 2047), addresses shown as ``Name <box@host>`` joined by ", ", groups as
  ``name: members;``.
- `date` is the Date: header as an aware datetime (RFC 5322 §3.3; ``-0000``
  and obsolete zones read as UTC), or None when it does not parse.
- Cost: header parsing plus `bytes.count` over text bodies for line counts and
  the first octets of one text part for the preview; a large single-part body
  is never scanned in Python.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from postier.mail.summary import MessageSummary
from postier.mime.address import MISSING_DOMAIN, MISSING_MAILBOX, Address
from postier.mime.bodystructure import bodystructures
from postier.mime.encoding import decode_words, from_escaped, header_text, valid_text
from postier.mime.envelope import addresses, envelope_of
from postier.mime.message import ParsedMessage, with_fields
from postier.mime.parse import Part, parse, parse_fields
from postier.mime.preview import preview

log = logging.getLogger(__name__)


_MONTHS = {
    m: i + 1 for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())
}
# RFC 5322 §3.3 as nearly every client writes it: the shortcut `parse_date` takes
# before `email.utils` (whose answer for these is the same: test_mime_summary).
# Blanks between the tokens may repeat ("Sun,  6 Dec": a one-digit day padded),
# and whatever follows the zone after a blank is ignored, as `email.utils` reads
# only the first five tokens: the comment of "+0000 (UTC)" (smtp-source, Postfix)
_DATE = re.compile(
    rb"[ \t]*(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),[ \t]*)?(\d{1,2})[ \t]+(Jan|Feb|Mar|Apr|May|Jun"
    rb"|Jul|Aug|Sep|Oct|Nov|Dec)[ \t]+([1-9]\d{3})[ \t]+(\d\d):(\d\d)(?::(\d\d))?[ \t]+"
    rb"([+-])(\d\d)(\d\d)(?:[ \t][\s\S]*)?\Z"
)


def _common_date(m: re.Match[bytes]) -> datetime | None:
    day, month, year, hh, mm, ss, sign, zh, zm = m.groups()
    try:
        return datetime(
            int(year),
            _MONTHS[month],
            int(day),
            int(hh),
            int(mm),
            int(ss or 0),
            tzinfo=_zone(sign, zh, zm),
        )
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _zone(sign: bytes, zh: bytes, zm: bytes) -> timezone:
    """The zone of ``+hhmm`` / ``-hhmm`` (cached: mail comes from a few zones);
    ValueError past ±24 hours."""
    offset = int(zh) * 3600 + int(zm) * 60
    if sign == b"-" and not offset:  # -0000: no zone information (RFC 5322 §3.3)
        return UTC
    return timezone(timedelta(seconds=-offset if sign == b"-" else offset))


def parse_date(raw: bytes | None) -> datetime | None:
    """The Date: header as an aware datetime, or None."""
    if raw is None:
        return None
    m = _DATE.match(raw)
    if m is not None:
        return _common_date(m)
    return _email_date(raw)


def _email_date(raw: bytes) -> datetime | None:
    """`parse_date` of any value, through `email.utils`."""
    try:
        dt = parsedate_to_datetime(raw.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # RFC 5322 §3.3: -0000 means "no zone info"
    return dt


def format_address(a: Address) -> str:
    """One address for display: ``Name <box@host>`` or ``box@host``."""
    if a.host is None:
        return ""
    name = " ".join(decode_words(from_escaped(a.name)).split()) if a.name else ""
    if a.mailbox == MISSING_MAILBOX:
        spec = ""
    elif a.host == MISSING_DOMAIN:
        spec = from_escaped(a.mailbox or "")
    else:
        spec = from_escaped(a.addr_spec)
    if name and spec:
        return f"{name} <{spec}>"
    return name or spec


def display_addresses(part: Part, name: str) -> str:
    """A header's addresses as search text: ``Name <box@host>`` joined by ", ", with
    group syntax kept (``Team: a@x, Bob <b@y>;``, ``undisclosed-recipients:;``), so
    SEARCH TO matches a group's name as well as its members, as Dovecot's normalised
    address text does."""
    return display_list(addresses(part, name))


def display_list(addrs: Iterable[Address]) -> str:
    """`display_addresses` of a parsed address list (also one read back from a
    stored ENVELOPE)."""
    out: list[str] = []
    label: str | None = None  # the name of the open group
    members: list[str] = []  # its members
    for a in addrs:
        if a.host is None:  # a group's start or end marker
            if label is not None:  # an unterminated group ends where the next one starts
                out.append(f"{label}: {', '.join(members)};" if members else f"{label}:;")
            label = decode_words(from_escaped(a.mailbox)) if a.mailbox is not None else None
            members = []
            continue
        text = format_address(a)
        if text:
            (out if label is None else members).append(text)
    if label is not None:
        out.append(f"{label}: {', '.join(members)};" if members else f"{label}:;")
    return ", ".join(out)


def crlf_size(data: bytes) -> int:
    """Octets of `data` with every bare LF sent as CRLF and a final CRLF added when
    missing: what POP3 announces and sends (RFC 1939 §11). Two C-speed counts."""
    size = len(data) + data.count(b"\n") - data.count(b"\r\n")
    if data and not data.endswith(b"\n"):
        size += 2
    return size


def summarize_source(data: bytes | Path) -> MessageSummary:
    """`summarize` of bytes, or of a file's content (blocking: reads it)."""
    return summarize(data.read_bytes() if isinstance(data, Path) else data)


def summarize(data: bytes) -> MessageSummary:
    try:
        return _summarize(data)
    except Exception:  # the boundary of intake: a parser bug must not lose mail
        log.exception("mime: cannot summarise a %d-octet message", len(data))
        end = data.find(b"\r\n\r\n")
        return MessageSummary(
            header_size=end + 4 if end >= 0 else len(data), crlf_size=crlf_size(data)
        )


def _summarize(data: bytes) -> MessageSummary:
    root = parse(data)
    return _summary(root, data, root.body_start - root.header_start, crlf_size(data))


def summary_of(
    message: ParsedMessage, above: bytes = b"", client_header: bytes | None = None
) -> MessageSummary:
    """`summarize(above + client_header + body)` from the message's one parse
    (see `ParsedMessage.summary`): our fields on top are split here (they are
    ours and short), the client's header and MIME tree are not split again."""
    data = message.data
    try:
        root = message.root
        body_start = root.body_start
        head = data[:body_start] if client_header is None else client_header
        if above and _READ_FIELD.search(above) is not None:
            root = with_fields(root, parse_fields(above))
        size = _crlf_size_of(above, head, data, body_start, _bare_lfs(message, root))
        return _summary(root, data, len(above) + len(head), size)
    except Exception:  # the boundary of intake: a parser bug must not lose mail
        log.exception("mime: cannot summarise a %d-octet message", len(data))
        end = data.find(b"\r\n\r\n")
        head_len = end + 4 if end >= 0 else len(data)
        if client_header is not None:
            head_len = len(client_header)
        return MessageSummary(header_size=len(above) + head_len)


#: the header fields the summary reads from the root (`envelope`, `bodystructure`,
#: `_summary`; the MIME fields of the part itself are parsed with it, not from
#: above). Fields above the client's header that are none of these (our trace
#: fields, Authentication-Results, X-Spam-*) change no summary, so `summary_of`
#: splits them only when a line of `above` starts with one of these names (as
#: `parse_fields` reads a name: any case, blanks before the colon).
SUMMARY_FIELDS = (
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
    "content-id",
    "content-description",
    "content-md5",
    "content-location",
)
_READ_FIELD = re.compile(
    rb"^(?:" + b"|".join(re.escape(n.encode()) for n in SUMMARY_FIELDS) + rb")[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)


def _bare_lfs(message: ParsedMessage, root: Part) -> int:
    """LFs without a CR before them in the body (two counts over it at most)."""
    if message.crlf_only:
        return 0
    data, start = message.data, root.body_start
    # the parser counted the LFs of a text or message body already
    counted = root.maintype.lower() in ("text", "message")
    lfs = root.lines if counted else data.count(b"\n", start)
    return lfs - data.count(b"\r\n", start)


def _crlf_size_of(above: bytes, head: bytes, data: bytes, body_start: int, body_bare: int) -> int:
    """`crlf_size(above + head + data[body_start:])` without joining them;
    `body_bare`: the body's LFs without a CR before them."""
    body_len = len(data) - body_start
    size = len(above) + len(head) + body_len + body_bare
    size += above.count(b"\n") + head.count(b"\n")
    size -= above.count(b"\r\n") + head.count(b"\r\n")
    if above.endswith(b"\r") or head.endswith(b"\r"):  # else no CRLF across a join
        pieces = [p for p in (above, head, data[body_start : body_start + 1]) if p]
        for a, b in itertools.pairwise(pieces):
            if a.endswith(b"\r") and b.startswith(b"\n"):
                size -= 1  # a CRLF across the join
    last = data[-1:] if body_len else (head or above)[-1:]
    if last and last != b"\n":
        size += 2
    return size


def _summary(root: Part, data: bytes, header_size: int, crlf: int) -> MessageSummary:
    h = root.headers
    subject = h.get("subject")
    message_id = h.get("message-id")
    structure, body = bodystructures(root)
    frm, to = addresses(root, "from"), addresses(root, "to")
    cc, bcc = addresses(root, "cc"), addresses(root, "bcc")
    return MessageSummary(
        envelope=envelope_of(root, frm, to, cc, bcc),
        bodystructure=structure,
        body=body,
        subject=valid_text(header_text(subject)) if subject is not None else "",
        from_=valid_text(display_list(frm)),
        to=valid_text(display_list(to)),
        cc=valid_text(display_list(cc)),
        bcc=valid_text(display_list(bcc)),
        date=parse_date(h.get("date")),
        message_id=message_id.decode("utf-8", "replace").strip() if message_id else "",
        preview=valid_text(preview(data, root)),
        header_size=header_size,
        crlf_size=crlf,
    )
