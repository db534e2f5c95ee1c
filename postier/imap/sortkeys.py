"""SORT keys (RFC 5256 §3, RFC 5957 §3) and the base subject (RFC 5256 §2.1) that SORT
SUBJECT and both THREAD algorithms share.

Rules:
- Strings compare case-insensitively (casefolded, a superset of i;ascii-casemap);
  ties between equal keys fall back to the next criterion, and last to the sequence
  number (RFC 5256 §3), which orders like the UID.
- FROM, TO and CC are the addr-mailbox of the first address of the field, read from
  the stored ENVELOPE (so a quoted display name with a comma cannot be mistaken
  for an address); a group's first entry is its name, as in the ENVELOPE
  (Dovecot sorts the same way). A missing field sorts as the empty string.
- DISPLAYFROM and DISPLAYTO (RFC 5957 §3) are the decoded display name of that
  address, else ``mailbox@host``, else the mailbox, else the empty string.
- DATE is the Date: header as an instant, else the internal date (RFC 5256 §2.2);
  ARRIVAL is the internal date; SIZE the RFC822.SIZE.
- `extract_base_subject` runs in time linear in the subject: every step moves two
  indexes instead of slicing, and a run of list tags is scanned once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from postier.imap.parse import SortCriterion
from postier.mime.address import Address
from postier.mime.encoding import decode_words
from postier.mime.envelope import Envelope, read_envelope
from postier.store.models import Message

# RFC 5256 §5 (subject extraction, after step 1 made every WSP run one space):
#   subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
#   subj-blob   = "[" *BLOBCHAR "]" *WSP
#   subj-leader = (*subj-blob subj-refwd) / WSP
_SUBJ_BLOB = re.compile(r"\[[^\[\]]*\] *")
_SUBJ_REFWD = re.compile(r"(?:re|fwd?) *(?:\[[^\[\]]*\] *)?:", re.IGNORECASE)
_WSP_RUN = re.compile(r"[ \t\r\n]+")


def extract_base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1: the base subject of a decoded subject (case kept), and whether
    the subject is a reply or forward: whether extraction removed a subj-refwd, a
    "(fwd)" trailer or a "[fwd:" ... "]" wrapper (RFC 5256 §2.1, used by §3.2 step 5).
    A mailing-list "[blob]" alone does not make a reply."""
    s = _WSP_RUN.sub(" ", subject)  # (1) encoded-words were decoded at delivery
    i, j = 0, len(s)  # the text left is s[i:j]
    reply = False
    while True:
        while j > i:  # (2) subj-trailer = "(fwd)" / WSP, repeated
            if s[j - 1] == " ":
                j -= 1
            elif j - i >= 5 and s[j - 5 : j].lower() == "(fwd)":
                j -= 5
                reply = True
            else:
                break
        blobs_end = -1  # s[i:blobs_end] is a run of blobs not followed by a subj-refwd
        while i < j:  # (5) repeat (3) and (4)
            if s[i] == " ":  # (3) subj-leader = WSP
                i += 1
                continue
            if i >= blobs_end:
                k = i  # (3) subj-leader = *subj-blob subj-refwd
                while (b := _SUBJ_BLOB.match(s, k, j)) is not None:
                    k = b.end()
                m = _SUBJ_REFWD.match(s, k, j)
                if m is not None:
                    i = m.end()
                    reply = True
                    continue
                blobs_end = k
            b = _SUBJ_BLOB.match(s, i, j)  # (4) only if a non-empty subj-base remains:
            if b is not None and b.end() < j:  # s[j-1] is not WSP after step (2)
                i = b.end()
                continue
            break
        if j - i >= 6 and s[i : i + 5].lower() == "[fwd:" and s[j - 1] == "]":
            i, j = i + 5, j - 1  # (6) subj-fwd-hdr and subj-fwd-trl, then from (2)
            reply = True
            continue
        return s[i:j], reply


def base_subject(subject: str) -> str:
    """The RFC 5256 §2.1 base subject as a comparison key (case-insensitive)."""
    return extract_base_subject(subject)[0].casefold()


def _mailbox(addrs: Sequence[Address]) -> str:
    """RFC 5256 §3: the addr-mailbox of the first address."""
    return (addrs[0].mailbox or "").casefold() if addrs else ""


def _display(addrs: Sequence[Address]) -> str:
    """RFC 5957 §3: the DISPLAY sort value of the first address."""
    if not addrs:
        return ""
    a = addrs[0]
    if a.name:
        name = " ".join(decode_words(a.name).split())
        if name:
            return name.casefold()
    if a.mailbox is not None and a.host is not None:
        return f"{a.mailbox}@{a.host}".casefold()
    return (a.mailbox or "").casefold()


class _Keyed:
    """One message's sort values, computed on first use."""

    __slots__ = ("_envelope", "m")

    def __init__(self, m: Message) -> None:
        self.m = m
        self._envelope: Envelope | None = None

    @property
    def envelope(self) -> Envelope:
        if self._envelope is None:
            env = read_envelope(self.m.summary.envelope)
            self._envelope = env or Envelope(None, None, [], [], [], [], [], [], None, None)
        return self._envelope


SortValue = str | int | datetime

#: the keys read from the stored ENVELOPE
ADDRESS_KEYS = frozenset({"FROM", "TO", "CC", "DISPLAYFROM", "DISPLAYTO"})

_VALUES: dict[str, Callable[[_Keyed], SortValue]] = {
    "ARRIVAL": lambda k: k.m.internal_date,
    "DATE": lambda k: (k.m.summary.date or k.m.internal_date).astimezone(UTC),
    "SIZE": lambda k: k.m.size,
    "SUBJECT": lambda k: base_subject(k.m.summary.subject),
    "FROM": lambda k: _mailbox(k.envelope.from_),
    "TO": lambda k: _mailbox(k.envelope.to),
    "CC": lambda k: _mailbox(k.envelope.cc),
    "DISPLAYFROM": lambda k: _display(k.envelope.from_),  # RFC 5957
    "DISPLAYTO": lambda k: _display(k.envelope.to),
}


def sort_messages(
    messages: Sequence[Message],
    criteria: Sequence[SortCriterion],
    check: Callable[[], None] = lambda: None,
) -> list[Message]:
    """`messages` (any order) sorted by `criteria`, ties by UID (RFC 5256 §3: by
    sequence number, which follows the UID). `check` is called once per message and
    may raise to stop a search that went over its budget."""
    keyed = sorted((_Keyed(m) for m in messages), key=lambda k: k.m.uid)
    for criterion in reversed(criteria):  # stable sorts, from the last criterion
        value = _VALUES[criterion.key]
        values: dict[int, SortValue] = {}
        for k in keyed:
            check()
            values[k.m.uid] = value(k)
        keyed.sort(key=lambda k: values[k.m.uid], reverse=criterion.reverse)
    return [k.m for k in keyed]


def sort_value(criterion: str, m: Message) -> SortValue:
    """The value one message sorts by under `criterion`."""
    return _VALUES[criterion](_Keyed(m))


def sort_values(criteria: Sequence[SortCriterion], m: Message) -> tuple[SortValue, ...]:
    """The values one message sorts by under each of `criteria` (kept contexts)."""
    k = _Keyed(m)
    return tuple(_VALUES[c.key](k) for c in criteria)
