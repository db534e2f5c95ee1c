"""mbox reading (RFC 4155, mboxrd): splitting, unquoting, flags, dates, limits."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from postier.ops import mbox
from postier.ops.mbox import MboxError, MboxMessage, Oversized

MBOX = (
    b"From alice@example.test Wed Jan  3 10:20:30 2024\n"
    b"From: Alice <alice@example.test>\n"
    b"Subject: one\n"
    b"Status: RO\n"
    b"X-Status: AF\n"
    b"X-Keywords: $Label1, work\n"
    b"X-UID: 7\n"
    b"Content-Length: 999\n"
    b"\n"
    b"line\n"
    b">From here, quoted once\n"
    b">>From twice\n"
    b"From not a separator (no empty line before)\n"
    b"\n"
    b"From bob@example.test Thu Feb  1 00:00:00 2024 +0200\n"
    b"Subject: two\n"
    b"  folded\n"
    b"Date: Fri, 02 Feb 2024 10:00:00 +0000\n"
    b"\n"
    b"second\n"
    b"\n"
    b"\n"
)


def read(data: bytes, **kw: int) -> list[MboxMessage | Oversized]:
    return list(mbox.read_mbox(io.BytesIO(data), **kw))


def test_split_unquote_flags_and_dates() -> None:
    first, second = read(MBOX)
    assert isinstance(first, MboxMessage)
    assert isinstance(second, MboxMessage)
    assert first.data == (
        b"From: Alice <alice@example.test>\r\n"
        b"Subject: one\r\n"
        b"\r\n"
        b"line\r\n"
        b"From here, quoted once\r\n"
        b">From twice\r\n"
        b"From not a separator (no empty line before)\r\n"
    )
    assert first.flags == {"\\Seen", "\\Answered", "\\Flagged", "$Label1", "work"}
    assert first.internal_date == datetime(2024, 1, 3, 10, 20, 30, tzinfo=UTC)
    assert first.index == 1
    # the last empty line is the separator; the one before it is the message's
    assert second.data == (
        b"Subject: two\r\n  folded\r\nDate: Fri, 02 Feb 2024 10:00:00 +0000\r\n\r\nsecond\r\n\r\n"
    )
    assert second.flags == frozenset()
    assert second.internal_date == datetime(2024, 1, 31, 22, 0, tzinfo=UTC)  # +0200 applied


def test_date_header_when_from_line_has_no_date() -> None:
    (m,) = read(b"From MAILER-DAEMON\nDate: Fri, 02 Feb 2024 10:00:00 +0100\n\nx\n")
    assert isinstance(m, MboxMessage)
    assert m.internal_date == datetime(2024, 2, 2, 9, 0, tzinfo=UTC)


def test_no_date_at_all() -> None:
    (m,) = read(b"From x\nSubject: none\n\nx\n")
    assert isinstance(m, MboxMessage)
    assert m.internal_date is None


@pytest.mark.parametrize(
    ("line", "when"),
    [
        (b"From a@b Mon Dec 31 23:59:59 2001", datetime(2001, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (b"From a@b Mon Dec 31 23:59 2001", datetime(2001, 12, 31, 23, 59, tzinfo=UTC)),
        (b"From a@b Tue Jan  1 01:00:00 CET 2002", datetime(2002, 1, 1, 1, tzinfo=UTC)),
        (b"From a@b Tue Jan  1 01:00:00 -0100 2002", datetime(2002, 1, 1, 2, tzinfo=UTC)),
        (b"From a@b Tue Feb 30 01:00:00 2002", None),
        (b"From a@b yesterday", None),
    ],
)
def test_from_line_dates(line: bytes, when: datetime | None) -> None:
    assert mbox.from_line_date(line) == when


def test_not_an_mbox() -> None:
    with pytest.raises(MboxError, match="does not start with a 'From ' line"):
        read(b"Subject: x\n\nbody\n")


def test_oversized_message_is_skipped_not_buffered() -> None:
    big = b"From a Mon Jan  1 00:00:00 2024\n\n" + b"x" * 100 + b"\n\nFrom b\n\nsmall\n"
    items = read(big, max_message_size=50)
    assert items[0] == Oversized(1, 103)  # every line counted, none kept
    assert isinstance(items[1], MboxMessage)
    assert items[1].data == b"\r\nsmall\r\n"


def test_crlf_mbox() -> None:
    (m,) = read(b"From a\r\nSubject: x\r\nStatus: R\r\n\r\nbody\r\n")
    assert isinstance(m, MboxMessage)
    assert m.data == b"Subject: x\r\n\r\nbody\r\n"
    assert m.flags == {"\\Seen"}
