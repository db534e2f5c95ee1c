"""`headers.HeaderScanner` and `intake.Spool`: where a header ends, the empty line a
header lacks, hop counting; whole and byte by byte, in memory and spooled."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.mail.headers import HeaderView
from postier.mime.summary import summarize
from postier.offload import INLINE_MAX
from postier.smtp.headers import MAX_FIELD_PREFIX, HeaderScanner
from postier.smtp.intake import Spool
from postier.store.models import NewMessage


def scan(data: bytes, step: int = 0) -> tuple[bytes, HeaderScanner]:
    s = HeaderScanner()
    if step:
        out = b"".join(s.feed(data[i : i + step]) for i in range(0, len(data), step))
    else:
        out = s.feed(data)
    return out + s.close(), s


NICOLAS = b"subject: A l'attention de Nicolas\r\nBonjour Nicolas\r\n"

# (client bytes, stored bytes, header_length, body_offset)
CASES = [
    pytest.param(
        NICOLAS,
        b"subject: A l'attention de Nicolas\r\n\r\nBonjour Nicolas\r\n",
        35,
        37,
        id="no-empty-line",
    ),
    pytest.param(b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n", 12, 14, id="normal"),
    pytest.param(b"hello\r\n", b"\r\nhello\r\n", 0, 2, id="body-only"),
    pytest.param(b"\r\nbody\r\n", b"\r\nbody\r\n", 0, 2, id="empty-header"),
    pytest.param(b"Subject: x\r\n", b"Subject: x\r\n", 12, 12, id="header-only"),
    pytest.param(
        b"Subject: x\r\n\tfolded\r\nBody: is a field\r\n\r\n",
        b"Subject: x\r\n\tfolded\r\nBody: is a field\r\n\r\n",
        39,
        41,
        id="continuation",
    ),
    # RFC 5322 §4.5.3: white space before the colon is an (obsolete) field
    pytest.param(b"Subject : x\r\n\r\n", b"Subject : x\r\n\r\n", 13, 15, id="obs-wsp"),
    pytest.param(b" lead\r\n", b"\r\n lead\r\n", 0, 2, id="continuation-first"),
    pytest.param(
        b"From a@b Mon Jan 1\r\nSubject: x\r\n\r\n",
        b"\r\nFrom a@b Mon Jan 1\r\nSubject: x\r\n\r\n",
        0,
        2,
        id="mbox-from-line",
    ),
    pytest.param(
        b"Subject: x\r\nS\xc3\xbcbject: 8-bit name\r\n",
        b"Subject: x\r\n\r\nS\xc3\xbcbject: 8-bit name\r\n",
        12,
        14,
        id="8bit-name",
    ),
    pytest.param(b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n\nbody\n", 10, 11, id="bare-lf-bdat"),
    pytest.param(b"Subject: x\r\nlast", b"Subject: x\r\n\r\nlast", 12, 14, id="last-no-crlf"),
    pytest.param(b"Subject: x\r\nName:", b"Subject: x\r\nName:", 17, 17, id="last-field"),
    pytest.param(
        b"X: 1\r\n" + b"a" * MAX_FIELD_PREFIX + b": too long\r\n",
        b"X: 1\r\n\r\n" + b"a" * MAX_FIELD_PREFIX + b": too long\r\n",
        6,
        8,
        id="name-too-long",
    ),
]


@pytest.mark.parametrize(("data", "stored", "header_length", "body_offset"), CASES)
@pytest.mark.parametrize("step", [0, 1, 2, 5])
def test_header_scanner(
    data: bytes, stored: bytes, header_length: int, body_offset: int, step: int
) -> None:
    out, s = scan(data, step)
    assert out == stored
    assert (s.header_length, s.body_offset) == (header_length, body_offset)
    assert s.inserted == (len(stored) != len(data))


def test_header_scanner_counts_hops_in_the_header_only() -> None:
    data = (
        b"Received: from a\r\n\tby b\r\nreceived : x\r\nDelivered-To: u@x\r\n"
        b"X-Received: no\r\n\r\nReceived: in the body\r\n"
    )
    for step in (0, 1, 3):
        assert scan(data, step)[1].hops == 3


@given(
    st.lists(
        st.sampled_from(
            [b"Received", b"X", b"a b", b" ", b"\t", b":", b" :", b"\r", b"\n", b"\r\n"]
        ),
        max_size=25,
    ),
    st.integers(min_value=1, max_value=7),
)
def test_header_scanner_same_result_whatever_the_packets(parts: list[bytes], step: int) -> None:
    data = b"".join(parts)
    whole, a = scan(data)
    pieces, b = scan(data, step)
    assert whole == pieces
    assert (a.header_length, a.body_offset, a.hops, a.inserted) == (
        b.header_length,
        b.body_offset,
        b.hops,
        b.inserted,
    )
    # the client's bytes are kept; at most the empty line is added, where the body starts
    assert (
        whole == data
        if not a.inserted
        else whole == data[: a.header_length] + b"\r\n" + data[a.header_length :]
    )


def test_header_scanner_holds_back_only_an_undecided_line_start() -> None:
    s = HeaderScanner()
    assert s.feed(b"Subject: x\r\nBonj") == b"Subject: x\r\n"
    assert s.feed(b"our\r\nmore") == b"\r\nBonjour\r\nmore"
    assert s.done and s.feed(b"rest") == b"rest"


def spool(tmp_path: Path, threshold: int, seen: list[HeaderView]) -> Spool:
    def on_header(view: HeaderView) -> bytes:
        seen.append(view)
        return b"Added: 1\r\n"

    return Spool(b"Received: x\r\n", threshold, tmp_path / "spool", on_header=on_header)


@pytest.mark.parametrize("threshold", [1 << 20, 16])
@pytest.mark.parametrize("step", [1, 7, 1000])
def test_spool_adds_the_empty_line_in_memory_and_on_disk(
    tmp_path: Path, threshold: int, step: int
) -> None:
    seen: list[HeaderView] = []
    sp = spool(tmp_path, threshold, seen)
    body = b"Bonjour Nicolas\r\n" * 3
    data = b"Subject: hi\r\nTo: n@x\r\n" + body
    for i in range(0, len(data), step):
        sp.write(data[i : i + step])
    view = sp.ensure_header()
    assert view.fields("Subject") == ["hi"]
    assert sp.inserted_blank_line
    assert sp.size == len(data) + 2
    out = sp.finish(sp.parse())
    whole = stored(out)
    assert whole == b"Received: x\r\nAdded: 1\r\nSubject: hi\r\nTo: n@x\r\n\r\n" + body
    assert out.summary == summarize(whole)
    assert len(seen) == 1
    sp.discard()


def stored(message: NewMessage) -> bytes:
    """The message as the store keeps it: bytes, or head + file[skip:]."""
    if isinstance(message.data, bytes):
        return message.data
    return message.head + message.data.read_bytes()[message.skip :]


@pytest.mark.parametrize("threshold", [1 << 20, 16])
def test_spool_drops_forged_fields_without_rewriting_the_spool_file(
    tmp_path: Path, threshold: int
) -> None:
    """Fields the filters add and forged results removed: in memory one join; a
    spooled file is the blob as written, what changes on top is its head."""
    sp = spool(tmp_path, threshold, [])
    header = b"Subject: hi\r\nX-Spam-Status: Yes\r\n folded\r\nTo: n@x\r\n\r\n"
    body = b"body line\r\n" * 20
    sp.write(header + body)
    parsed = sp.parse()
    file_before = sp.path.read_bytes() if sp.path is not None else None
    out = sp.finish(parsed, b"X-Ours: 1\r\n", lambda name, value: name == "x-spam-status")
    want = b"Received: x\r\nAdded: 1\r\nX-Ours: 1\r\nSubject: hi\r\nTo: n@x\r\n\r\n" + body
    assert stored(out) == want
    assert out.summary == summarize(want)
    if threshold == 16:
        assert out.data == sp.path
        assert sp.path.read_bytes() == file_before == header + body  # never rewritten
        assert out.skip == len(header)
    sp.discard()


def test_spool_header_view_of_a_well_formed_message(tmp_path: Path) -> None:
    seen: list[HeaderView] = []
    sp = spool(tmp_path, 1 << 20, seen)
    sp.write(b"Subject: hi\r\n\r\nbody\r\n")
    assert [(v.raw, v.body_offset) for v in seen] == [(b"Subject: hi\r\n", 15)]
    assert sp.parse().data == b"Subject: hi\r\n\r\nbody\r\n"
    assert not sp.inserted_blank_line


def test_spool_never_joins_the_header_again_per_write(tmp_path: Path) -> None:
    """A header trickled one byte per write costs linear time (the old Spool joined
    everything received so far on each write until it saw the empty line)."""
    import gc
    import time

    def run(n: int) -> float:
        sp = spool(tmp_path, 1 << 30, [])
        data = b"X-Long: " + b"a" * n + b"\r\n\r\n"
        pieces = [data[i : i + 1] for i in range(len(data))]
        gc.disable()
        try:
            t = time.thread_time()  # CPU time: what else the machine runs does not count
            for piece in pieces:
                sp.write(piece)
            sp.ensure_header()
            return time.thread_time() - t
        finally:
            gc.enable()

    run(1000)  # warm up
    small = min(run(50_000) for _ in range(3))
    big = min(run(200_000) for _ in range(3))
    assert big < small * 8  # linear: 4x; the old code was 16x


@pytest.mark.parametrize("threshold", [1 << 20, 4096])
def test_a_large_header_is_split_at_the_end_not_while_it_streams_in(
    tmp_path: Path, threshold: int
) -> None:
    """Splitting a header is linear, but 20,000 fields took 30 ms, and a spill
    inside the header split up to 512 KB of it on the loop. A header over
    `INLINE_MAX` is split by `ensure_header` (which `Intake.finish` runs in a
    thread, as `header_is_large` says), whole, read back from the spool file if
    it spilled; a small one still while it streams in."""
    seen: list[HeaderView] = []
    sp = spool(tmp_path, threshold, seen)
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(3000))
    assert len(fields) > INLINE_MAX
    data = b"Subject: big\r\n" + fields + b"\r\nbody\r\n"
    for i in range(0, len(data), 1000):
        sp.write(data[i : i + 1000])
    assert seen == []
    assert sp.header_is_large
    view = sp.ensure_header()
    assert len(seen) == 1
    assert view.fields("Subject") == ["big"]
    assert view.fields("X-F2999") == ["v"]
    assert sp.spilled == (threshold < len(data))
    out = sp.finish(sp.parse())
    assert stored(out) == b"Received: x\r\nAdded: 1\r\n" + data
    sp.discard()

    small = spool(tmp_path, threshold, seen)
    small.write(b"Subject: small\r\n\r\nbody\r\n")
    assert len(seen) == 2
    assert not small.header_is_large


@pytest.mark.parametrize(
    ("content_type", "threaded"),
    [
        (b"", False),
        (b"Content-Type: text/plain; charset=utf-8\r\n", False),
        (b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n", False),
        (b"Content-Type: Multipart/Mixed; boundary=b\r\n", True),
        (b"Content-Type:  message/rfc822\r\n", True),
    ],
)
def test_a_message_over_inline_max_is_parsed_in_a_thread_when_it_may_have_parts(
    tmp_path: Path, content_type: bytes, threaded: bool
) -> None:
    """Its summary's work grows with its parts (512 KB of small parts: 39 ms),
    not with one part's size (512 KB of text: 0.2 ms, less than a thread's
    hand-over): `Intake.finish` parses in a thread a message over `INLINE_MAX`
    that is multipart or message/*, or whose header is large."""
    from postier.smtp.intake import _may_have_parts

    sp = spool(tmp_path, 1 << 20, [])
    sp.write(b"Subject: s\r\n" + content_type + b"\r\n" + b"x" * (INLINE_MAX + 10) + b"\r\n")
    sp.ensure_header()
    assert _may_have_parts(sp) is threaded
    sp.discard()
