"""IMAP sequence sets: message sequence numbers and UID sets (RFC 9051 §9).

Owns parsing, formatting, resolution against a mailbox and compression of sets
such as ``1:3,5,7:*`` and the saved-result reference ``$`` (RFC 5182).

Rules:
- A set keeps the ranges as the client wrote them (order, direction, duplicates):
  ``str(SequenceSet.parse(s)) == s`` for every valid `s`. Resolution against a
  mailbox (`resolve`, `contains`, `select`) normalises: ``5:2`` is ``2:5`` and ``*``
  is the largest number in use (RFC 9051 §6.4.8: ``*`` in a UID set is the highest
  UID; ``n:*`` includes that UID even when it is below `n`).
- `STAR` (0) stands for ``*``; real members are 1 … 4294967295 (nz-number).
- ``$`` stands alone; it is never combined with other ranges (RFC 5182 §2.1).
- Compression (`format_ids`) keeps the order it is given, so COPYUID source and
  destination sets stay paired (RFC 4315 §3); pass ``sort=True`` for ESEARCH ALL.

No library: this is thirty lines of grammar and the server needs exact control of
normalisation and of ``*``/``$``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

#: the value of ``*`` in a range
STAR: Final = 0
#: nz-number = digit-nz *DIGIT ; (0 < n < 4,294,967,296)   RFC 9051 §9
MAX_NUMBER: Final = 4294967295


def parse_nz_number(text: str) -> int:
    """nz-number = digit-nz *DIGIT, at most 4294967295; ValueError otherwise."""
    if not text or not text.isascii() or not text.isdigit() or text[0] == "0":
        raise ValueError(f"invalid number {text!r}")
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise ValueError(f"number out of range {text!r}")
    return int(text)


@dataclass(frozen=True)
class SequenceSet:
    """A parsed sequence-set; `ranges` are (first, last) as written, `STAR` for ``*``."""

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False  # "$": the result saved by SEARCH RETURN (SAVE), RFC 5182

    # sequence-set    = (seq-number / seq-range) ["," sequence-set]
    # sequence-set    =/ seq-last-command
    # seq-last-command = "$"
    # seq-number      = nz-number / "*"
    # seq-range       = seq-number ":" seq-number
    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse a sequence-set; ValueError with a short reason on bad syntax."""
        if text == "$":
            return cls(saved=True)  # RFC 5182 §2.1
        if text.isdigit() and text.isascii() and text[0] != "0" and len(text) <= 10:
            n = int(text)  # one number, the commonest set: what the loop below makes
            if n <= MAX_NUMBER:
                return cls(((n, n),))
        if not text:
            raise ValueError("empty sequence set")
        ranges: list[tuple[int, int]] = []
        for item in text.split(","):
            first, sep, last = item.partition(":")
            a = _seq_number(first)
            b = _seq_number(last) if sep else a
            ranges.append((a, b))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, *values: int) -> SequenceSet:
        """A set of single numbers, compressed in the given order (``of(1,2,3,5)`` is
        ``1:3,5``)."""
        return cls.from_ids(values, sort=False)

    @classmethod
    def from_ids(cls, ids: Iterable[int], *, sort: bool = True) -> SequenceSet:
        """Compress numbers into ranges; ascending runs only, in the given order unless
        `sort` (duplicates are dropped when sorting)."""
        values = sorted(set(ids)) if sort else list(ids)
        ranges: list[tuple[int, int]] = []
        for v in values:
            if v < 1 or v > MAX_NUMBER:
                raise ValueError(f"number out of range {v}")
            if ranges and ranges[-1][1] + 1 == v:
                ranges[-1] = (ranges[-1][0], v)
            else:
                ranges.append((v, v))
        return cls(tuple(ranges))

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_fmt(a) if a == b else f"{_fmt(a)}:{_fmt(b)}" for a, b in self.ranges)

    def __bool__(self) -> bool:
        return self.saved or bool(self.ranges)

    @property
    def has_star(self) -> bool:
        return any(STAR in r for r in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with ``*`` replaced by `largest`.

        `largest` is the number of messages (sequence numbers) or the highest UID in
        use (0 for an empty mailbox, where a range with ``*`` names nothing). The
        saved set ``$`` cannot be resolved here: the session substitutes its saved
        result first (ValueError).
        """
        if self.saved:
            raise ValueError("the saved result $ must be substituted by the session")
        if len(self.ranges) == 1:  # the commonest: nothing to sort or merge
            span = _span(*self.ranges[0], largest)
            return [] if span is None else [span]
        spans = []
        for a, b in self.ranges:
            span = _span(a, b, largest)
            if span is not None:
                spans.append(span)
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, value: int, largest: int) -> bool:
        return any(lo <= value <= hi for lo, hi in self.resolve(largest))

    def select(self, values: Sequence[int], largest: int | None = None) -> list[int]:
        """The members of `values` (ascending, e.g. a mailbox's UIDs) in this set, in
        O(ranges · log n). `largest` defaults to the last of `values`."""
        if largest is None:
            largest = values[-1] if values else 0
        out: list[int] = []
        for lo, hi in self.resolve(largest):
            i = bisect.bisect_left(values, lo)
            j = bisect.bisect_right(values, hi)
            out.extend(values[i:j])
        return out

    def max_number(self, largest: int) -> int:
        """The highest number named (``*`` as `largest`): for "sequence number out of
        range" checks (RFC 9051 §9 seq-number)."""
        resolved = self.resolve(largest)
        return resolved[-1][1] if resolved else 0


def format_ids(ids: Iterable[int], *, sort: bool = True) -> str:
    """``[1, 2, 3, 5]`` → ``"1:3,5"`` (for COPYUID, APPENDUID, ESEARCH ALL, VANISHED)."""
    return str(SequenceSet.from_ids(ids, sort=sort))


def _span(a: int, b: int, largest: int) -> tuple[int, int] | None:
    """One range of `SequenceSet.resolve`, ascending, or None when it names nothing."""
    if largest < 1 and STAR in (a, b):
        return None  # "*" names the last message; an empty mailbox has none
    a = largest if a == STAR else a
    b = largest if b == STAR else b
    lo, hi = (a, b) if a <= b else (b, a)
    if hi < 1:
        return None
    return (max(lo, 1), hi)


def _seq_number(text: str) -> int:
    if text == "*":
        return STAR
    return parse_nz_number(text)


def _fmt(value: int) -> str:
    return "*" if value == STAR else str(value)
