"""Sequence sets: parsing, formatting, resolution and compression."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.imap.sequence import STAR, SequenceSet, format_ids


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("1", ((1, 1),)),
        ("1:3,5", ((1, 3), (5, 5))),
        ("*", ((STAR, STAR),)),
        ("5:*", ((5, STAR),)),
        ("*:5", ((STAR, 5),)),
        ("3:1", ((3, 1),)),
        ("4294967295", ((4294967295, 4294967295),)),
        ("2,2,1", ((2, 2), (2, 2), (1, 1))),
    ],
)
def test_parse_and_format(text: str, ranges: tuple[tuple[int, int], ...]) -> None:
    seq = SequenceSet.parse(text)
    assert seq.ranges == ranges
    assert str(seq) == text


def test_saved_result() -> None:
    seq = SequenceSet.parse("$")
    assert seq.saved
    assert str(seq) == "$"
    with pytest.raises(ValueError, match="saved result"):
        seq.resolve(10)


@pytest.mark.parametrize(
    "text",
    ["", "0", "1:0", "01", "4294967296", "1,", ",1", "1::2", "a", "1:2:3", "$,1", "1,$", "-1"],
)
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every reason is fine here
        SequenceSet.parse(text)


def test_resolve() -> None:
    assert SequenceSet.parse("5:*").resolve(3) == [(3, 5)]  # RFC 9051 §6.4.8
    assert SequenceSet.parse("3:1,7,2:4,*").resolve(10) == [(1, 4), (7, 7), (10, 10)]
    assert SequenceSet.parse("1:*").resolve(0) == []
    assert SequenceSet.parse("4:5").contains(5, 3)
    assert not SequenceSet.parse("4:5").contains(6, 3)


def test_select_uses_the_members_given() -> None:
    uids = [2, 4, 9, 15, 16]
    assert SequenceSet.parse("3:9,16:*").select(uids) == [4, 9, 16]
    assert SequenceSet.parse("100:*").select(uids) == [16]  # "*" is the highest UID
    assert SequenceSet.parse("1:4294967295").select(uids) == uids
    assert SequenceSet.parse("1").select([]) == []


def test_compression() -> None:
    assert format_ids([1, 2, 3, 5]) == "1:3,5"
    assert format_ids([5, 3, 2, 1, 3]) == "1:3,5"
    assert format_ids([]) == ""
    assert format_ids([5, 6, 1, 2], sort=False) == "5:6,1:2"  # COPYUID order kept
    assert str(SequenceSet.of(7, 8, 9)) == "7:9"
    with pytest.raises(ValueError):  # noqa: PT011
        format_ids([0])


@given(st.lists(st.integers(min_value=1, max_value=2**32 - 1), max_size=50))
def test_compression_round_trip(ids: list[int]) -> None:
    text = format_ids(ids)
    if not ids:
        assert text == ""
        return
    seq = SequenceSet.parse(text)
    assert str(seq) == text
    members = sorted(set(ids))
    assert seq.select(members) == members
    resolved = seq.resolve(max(ids))
    assert sum(hi - lo + 1 for lo, hi in resolved) == len(members)


seq_numbers = st.one_of(st.just(STAR), st.integers(min_value=1, max_value=2**32 - 1))


@given(st.lists(st.tuples(seq_numbers, seq_numbers), min_size=1, max_size=10))
def test_format_parse_round_trip(ranges: list[tuple[int, int]]) -> None:
    seq = SequenceSet(tuple(ranges))
    assert SequenceSet.parse(str(seq)) == SequenceSet(
        tuple((a, b) for a, b in ranges)  # a single number formats as "n", reads as (n, n)
    )


@given(
    st.one_of(
        st.text(alphabet="0123456789", max_size=12),
        st.integers(min_value=0, max_value=2**33).map(str),
        st.text(alphabet="0123456789\u0661\u00b2\uff11 +-_", max_size=6),
    )
)
def test_one_number_shortcut_agrees_with_the_loop(text: str) -> None:
    # "n,n" takes the general loop; its first range is what "n" must give
    def parsed(t: str) -> SequenceSet | None:
        try:
            return SequenceSet.parse(t)
        except ValueError:
            return None

    one, twice = parsed(text), parsed(f"{text},{text}")
    if twice is None:
        assert one is None
    else:
        assert one == SequenceSet(twice.ranges[:1])


@given(
    st.one_of(st.just(STAR), st.integers(min_value=1, max_value=2**32 - 1)),
    st.one_of(st.just(STAR), st.integers(min_value=1, max_value=2**32 - 1)),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_one_range_resolves_as_the_general_loop(a: int, b: int, largest: int) -> None:
    # the range twice takes the loop (sorting, merging): the same spans come out
    once = SequenceSet(((a, b),)).resolve(largest)
    assert once == SequenceSet(((a, b), (a, b))).resolve(largest)
