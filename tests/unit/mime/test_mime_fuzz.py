"""Invariant: any bytes parse, summarise and serve every section without raising."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.mime import (
    Part,
    Section,
    SectionError,
    SectionText,
    UnknownEncoding,
    binary,
    bodystructure,
    envelope,
    extract,
    parse,
    parse_address_list,
    summarize,
)
from postier.mime.bodystructure import bodystructures
from postier.mime.parse import parse_params

SAMPLES = [
    p.read_bytes()
    for p in sorted((Path(__file__).resolve().parents[2] / "data" / "mime").glob("*.eml"))
]

# fragments that steer random input towards interesting MIME structure
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"--b",
    b"--b--",
    b"--c",
    b": ",
    b";",
    b"=",
    b'"',
    b"(",
    b")",
    b"<",
    b">",
    b"@",
    b",",
    b":;",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/digest; boundary=c\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset*0*=utf-8''%E2; charset*1*=%82\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*=x''y\r\n",
    b"From: ",
    b"To: g: a@b;\r\n",
    b"Subject: =?utf-8?b?w6k=?=\r\n",
    b" ",
    b"\t",
    b"\xff",
    b"\x00",
    b"=?",
    b"?=",
]

fragments = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=8)), max_size=60).map(
    b"".join
)


def _check_tree(data: bytes, part, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.header_end <= part.body_start <= part.body_end <= hi
    for child in part.children:
        _check_tree(data, child, part.body_start, part.body_end)
    if part.message is not None:
        m = part.message
        assert (m.header_start, m.body_end) == (part.body_start, part.body_end)
        _check_tree(data, m, part.body_start, part.body_end)


def _paths(part: Part, prefix: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    """Every section path of the tree (and a few that name nothing)."""
    yield prefix
    if len(prefix) > 6:
        return
    if part.is_multipart:
        for k, child in enumerate(part.children, 1):
            yield from _paths(child.message or child, (*prefix, k))
    else:
        yield (*prefix, 1)
    yield (*prefix, 99)


def _exercise(data: bytes) -> None:
    root = parse(data)
    _check_tree(data, root, 0, len(data))
    env = envelope(root)
    assert env.startswith(b"(")
    assert env.endswith(b")")
    bs = bodystructure(root)
    # the one-walk pair the stored summary uses is the two forms made apart
    assert bodystructures(root) == (bs, bodystructure(root, extensible=False))
    assert bs.startswith(b"(")
    assert bs.endswith(b")")
    if b"{" not in bs:  # without literals, parentheses outside strings balance
        depth = 0
        quoted = escaped = False
        for c in bs:
            if quoted:
                if escaped:
                    escaped = False
                elif c == 0x5C:
                    escaped = True
                elif c == 0x22:
                    quoted = False
            elif c == 0x22:
                quoted = True
            elif c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
                assert depth >= 0
        assert depth == 0
    summarize(data)
    for path in list(_paths(root))[:40]:
        for text in (
            None,
            SectionText.MIME,
            SectionText.HEADER,
            SectionText.TEXT,
            SectionText.HEADER_FIELDS,
            SectionText.HEADER_FIELDS_NOT,
        ):
            if text is SectionText.MIME and not path:
                continue
            got = extract(data, root, Section(path, text, ("Subject", "content-type")))
            assert got is None or isinstance(got, bytes)
        with contextlib.suppress(UnknownEncoding):
            binary(data, root, path)


def test_samples_give_both_forms_in_one_walk():
    for data in SAMPLES:
        root = parse(data)
        pair = (bodystructure(root), bodystructure(root, extensible=False))
        assert bodystructures(root) == pair, data[:200]
        assert bodystructures(root, literal_over=8) == (
            bodystructure(root, literal_over=8),
            bodystructure(root, extensible=False, literal_over=8),
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragments)
def test_structured_garbage_never_raises(data):
    _exercise(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data):
    _exercise(data)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), max_size=5),
)
def test_mutated_samples_never_raise(sample, edits):
    data = bytearray(sample)
    for pos, chunk in edits:
        p = pos % (len(data) + 1)
        data[p : p + len(chunk) // 2] = chunk
    _exercise(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_header_value_parsers_never_raise(text):
    parse_address_list(text)
    parse_params(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_section_parse_raises_only_section_error(spec):
    with contextlib.suppress(SectionError):
        Section.parse(spec)
