"""mbox files: reading the messages, flags and dates of one (RFC 4155).

What it owns: splitting an mbox file into messages as `postier import` needs
them. Writing mbox is not offered: `postier export` writes Maildir, which keeps
flags and dates without the quoting ambiguities of mbox.

Rules:
- A message starts at a ``From `` line (the "From_" line, RFC 4155 §2) at the top
  of the file or after an empty line; the empty line before it ends the previous
  message and is not part of it. Any other ``From `` line is body text.
- Quoting is read as mboxrd: ``>From ``, ``>>From `` ... lose one ``>`` (the only
  reading that undoes the writer's quoting exactly; an mboxo writer's original
  ``>From `` lines lose their ``>``, the known mboxo ambiguity).
- Flags (the fields mutt, Thunderbird, Dovecot and UW-IMAP write): ``Status:`` R
  → \\Seen; ``X-Status:`` A → \\Answered, F → \\Flagged, T → \\Draft, D →
  \\Deleted; ``X-Keywords:`` names keywords. Those fields, and the other
  mbox-internal ones (X-UID, X-IMAP, X-IMAPbase, Content-Length), are removed
  from the header, as Dovecot hides them: they describe the mailbox, not the mail.
- INTERNALDATE: the date of the From_ line (asctime form, RFC 4155 §2: UTC
  unless a zone follows), else the Date: field, else the file's mtime.
- Line ends become CRLF (RFC 5322 §2.1). Reading streams line by line; one
  message larger than `max_message_size` is reported and skipped, never buffered
  past the limit.

Why hand-written: the stdlib `mailbox.mbox` reads mboxo (no unquoting), indexes
the whole file before the first message, and knows only the Status flags.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from postier.ops.maildir import to_crlf

#: header fields that belong to the mbox, not to the message
MBOX_FIELDS = frozenset(
    {b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase", b"content-length"}
)
X_STATUS_FLAGS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}

_QUOTED_FROM = re.compile(rb"^>+From ")
# RFC 4155 §2: "From " addr-spec SP timestamp; asctime: "Wed Jan  1 00:00:00 2020"
_ASCTIME = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" +(\d{1,2}) +(\d{1,2}):(\d{2})(?::(\d{2}))? +(?:([A-Z]{2,5}|[+-]\d{4}) +)?(\d{4})"
    rb"(?: +([+-]\d{4}))?"
)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.DOTALL)


class MboxError(Exception):
    """The file is not an mbox."""


@dataclass(frozen=True)
class MboxMessage:
    data: bytes  # CRLF, mbox fields removed
    flags: frozenset[str]
    internal_date: datetime | None  # None: no date found (the caller picks one)
    index: int  # 1-based position in the file


@dataclass(frozen=True)
class Oversized:
    """A message over the size limit, skipped."""

    index: int
    size: int


def is_mbox(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(5) == b"From "
    except OSError:
        return False


def from_line_date(line: bytes) -> datetime | None:
    m = _ASCTIME.search(line)
    if not m:
        return None
    mon, day, hh, mm, ss, zone1, year, zone2 = m.groups()
    try:
        when = datetime(
            int(year),
            _MONTHS.index(mon.decode()) + 1,
            int(day),
            int(hh),
            int(mm),
            int(ss or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    zone = zone2 or (zone1 if zone1 and zone1[:1] in (b"+", b"-") else None)
    if zone:
        sign = 1 if zone[:1] == b"+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        when = datetime.fromtimestamp(when.timestamp() - offset, UTC)
    return when


def _split_header(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(header lines, the rest starting with the empty line) of one message."""
    for i, line in enumerate(lines):
        if line in (b"\n", b"\r\n"):
            return lines[:i], lines[i:]
    return lines, []


def _clean(lines: list[bytes], index: int, fallback: datetime | None) -> MboxMessage:
    header, body = _split_header(lines)
    fields: list[list[bytes]] = []
    for line in header:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    kept: list[bytes] = []
    flags: set[str] = set()
    date_field: bytes | None = None
    for f in fields:
        m = _FIELD.match(f[0])
        name = m.group(1).lower() if m else b""
        value = b"".join(f).split(b":", 1)[1] if m else b""
        text = value.decode("utf-8", "replace").strip()
        if name == b"status":
            if "R" in text:
                flags.add("\\Seen")
        elif name == b"x-status":
            flags.update(flag for letter, flag in X_STATUS_FLAGS.items() if letter in text)
        elif name == b"x-keywords":
            flags.update(k for k in re.split(r"[\s,]+", text) if k and not k.startswith("\\"))
        if name in MBOX_FIELDS:
            continue
        if name == b"date":
            date_field = value
        kept.extend(f)
    data = to_crlf(b"".join(kept + body))
    when = fallback
    if when is None and date_field is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(date_field.decode("ascii", "replace"))
            when = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (TypeError, ValueError, IndexError):
            when = None
    return MboxMessage(data, frozenset(flags), when, index)


def read_mbox(
    f: BinaryIO, *, max_message_size: int = 50 * 1024 * 1024
) -> Iterator[MboxMessage | Oversized]:
    """The messages of an open mbox file, in order (see the module rules)."""
    first = f.readline()
    if not first.startswith(b"From "):
        raise MboxError("not an mbox file (it does not start with a 'From ' line)")
    index = 1
    from_line = first
    lines: list[bytes] = []
    size = 0
    oversized = False
    previous_empty = False
    pending_empty: bytes | None = None  # an empty line that may end the message

    def finish() -> MboxMessage | Oversized:
        if oversized:
            return Oversized(index, size)
        return _clean(lines, index, from_line_date(from_line))

    for line in iter(f.readline, b""):
        if line.startswith(b"From ") and previous_empty:
            yield finish()
            index += 1
            from_line, lines, size, oversized = line, [], 0, False
            pending_empty, previous_empty = None, False
            continue
        if pending_empty is not None:
            lines.append(pending_empty)
            pending_empty = None
        previous_empty = line in (b"\n", b"\r\n")
        if _QUOTED_FROM.match(line):
            line = line[1:]  # mboxrd: one level of quoting undone
        size += len(line)
        if size > max_message_size:
            oversized = True
            lines = []
        if oversized:
            continue
        if previous_empty:
            pending_empty = line  # kept only if the message goes on
        else:
            lines.append(line)
    yield finish()  # a last empty line is the separator RFC 4155 writers add: dropped
