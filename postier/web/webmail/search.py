"""The search box: what the reader typed, turned into an IMAP search program and
run by the IMAP SEARCH machinery (`postier.imap.matcher`) over one folder.

Rules:
- One box, words and `field:value` terms, all of which must match: a plain word
  (or "a quoted phrase") is looked for in From, To, Cc, Subject and the text;
  `from:`, `to:`, `cc:`, `subject:`, `body:` look in that one place;
  `after:`/`since:` and `before:` take a day (YYYY-MM-DD) of the Date: header
  (as IMAP's SENTSINCE/SENTBEFORE, the arrival day when there is none);
  `is:unread`, `is:read`, `is:flagged` test flags. An unknown `field:` is a word.
- The same matcher IMAP SEARCH uses answers it, so the web and IMAP clients find
  the same messages, and what makes IMAP search faster (the store's header index)
  makes this faster too: From/To/Cc/Subject and flags are answered without reading
  a message; only text terms read the bytes of the messages the rest did not
  rule out. It runs in the search threads under the CPU budget of
  `imap.search_time_limit`; past it the page says the search was too broad.
- When the index bounds the answer (a From/To/Cc/Subject term that every match
  must satisfy: the term alone, one of an AND, both sides of an OR), only the
  messages it names are read (`narrowed`, up to `NARROW_MAX` of them), not the
  folder's every row: a `from:` search of a folder of 10,000 reads its ~100 matches.
- Parsing is one linear pass over at most `MAX_QUERY` characters and at most
  `MAX_TERMS` terms; no regular expression is built from what was typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import cast

from postier.imap import parse as p
from postier.imap.matcher import (
    Budget,
    Facts,
    IndexAnswers,
    compile_program,
    in_search_thread,
    index_answers,
    matching,
)
from postier.imap.session import MailboxView
from postier.store.api import Store
from postier.store.models import MailboxId, Message, Uid

MAX_QUERY = 500
MAX_TERMS = 20
#: messages read by their UIDs (one query) when the index narrowed the search;
#: beyond, the folder's rows are read at once
NARROW_MAX = 256
FIELDS = {"from": "From", "to": "To", "cc": "Cc", "subject": "Subject"}


class QueryError(ValueError):
    """What was typed cannot be a search; the text says why."""


@dataclass(frozen=True)
class _NoNumbers:
    """What `compile_program` reads of a mailbox view when no key names message
    numbers (the box never makes one): nothing is recent, no UID is known."""

    recent: frozenset[int] = frozenset()
    uids: tuple[int, ...] = ()
    exists: int = 0


def tokens(query: str) -> list[str]:
    """Terms of `query`: whitespace-separated, a double-quoted run is one term
    (`from:"Carol Example"` too); the quotes are dropped."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for c in query[:MAX_QUERY]:
        if c == '"':
            quoted = not quoted
        elif c.isspace() and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(c)
    if cur:
        out.append("".join(cur))
    return out


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{name}: {value[:40]!r} is not a day like 2026-12-31.") from None


def _anywhere(word: str) -> p.SearchKey:
    keys: list[p.SearchKey] = [p.SearchHeader(h, word) for h in ("From", "To", "Cc", "Subject")]
    keys.append(p.SearchText("body", word))
    key = keys[-1]
    for k in reversed(keys[:-1]):
        key = p.SearchOr(k, key)
    return key


def program(query: str) -> p.SearchKey | None:
    """The search key for `query`, None when it has no term; `QueryError` when a
    term cannot be understood."""
    keys: list[p.SearchKey] = []
    terms = tokens(query)
    if len(terms) > MAX_TERMS:
        raise QueryError(f"At most {MAX_TERMS} terms.")
    for term in terms:
        name, sep, value = term.partition(":")
        name = name.lower()
        if not sep or not value:
            keys.append(_anywhere(term))
        elif name in FIELDS:
            keys.append(p.SearchHeader(FIELDS[name], value))
        elif name in ("body", "text"):
            keys.append(p.SearchText("body", value))
        elif name in ("after", "since"):
            keys.append(p.SearchDate("sent", "since", _day(value, name)))
        elif name == "before":
            keys.append(p.SearchDate("sent", "before", _day(value, name)))
        elif name == "is" and value.lower() in ("unread", "read", "seen", "unseen"):
            keys.append(p.SearchFlag("\\Seen", value.lower() in ("read", "seen")))
        elif name == "is" and value.lower() == "flagged":
            keys.append(p.SearchFlag("\\Flagged"))
        else:
            keys.append(_anywhere(term))
    if not keys:
        return None
    return keys[0] if len(keys) == 1 else p.SearchAnd(tuple(keys))


def narrowed(key: p.SearchKey, answers: IndexAnswers) -> frozenset[int] | None:
    """The UIDs outside of which `key` matches nothing, from the header index's
    `answers` (what the matcher itself uses for those terms); None when the index
    does not bound `key`."""
    if isinstance(key, p.SearchHeader):
        return answers.get((key.header.lower(), key.value))
    if isinstance(key, p.SearchAnd):
        bounds = [b for k in key.keys if (b := narrowed(k, answers)) is not None]
        return frozenset.intersection(*bounds) if bounds else None
    if isinstance(key, p.SearchOr):
        left, right = narrowed(key.left, answers), narrowed(key.right, answers)
        return None if left is None or right is None else left | right
    return None


async def candidates(
    store: Store, mailbox_id: MailboxId, key: p.SearchKey
) -> tuple[list[Message], IndexAnswers]:
    """The folder's messages `key` may match (every one, unless the header index
    bounds the answer to at most `NARROW_MAX`), ascending by UID, and the index's
    answers for `search`."""
    answers = await index_answers(store, mailbox_id, key)
    within = narrowed(key, answers)
    if within is None or len(within) > NARROW_MAX:
        return await store.list_messages(mailbox_id, structures=False), answers
    got = await store.get_messages(mailbox_id, [Uid(u) for u in sorted(within)], structures=False)
    return got, answers


async def search(
    store: Store,
    messages: Sequence[Message],
    key: p.SearchKey,
    seconds: float,
    answers: IndexAnswers | None = None,
) -> list[Message]:
    """The members of `messages` (one folder's, with summaries) that match `key`,
    in the order given. Raises `matcher.TooComplex` past `seconds` of CPU.
    `answers`: the header index's answers for `key` when the caller has them."""
    # From/To/Cc/Bcc/Subject terms from the header index: one folder, one mailbox id
    if answers is None:
        answers = await index_answers(store, messages[0].mailbox_id, key) if messages else {}
    compiled = compile_program(key, cast(MailboxView, _NoNumbers()), (), indexed=answers)
    # one Facts a message: for a folder of 50,000, 30-200 ms the loop would pay
    facts = await in_search_thread(_facts, messages)
    return [f.m for f in await matching(store, compiled, facts, Budget(seconds))]


def _facts(messages: Sequence[Message]) -> list[Facts]:
    return [Facts(i, m) for i, m in enumerate(messages, 1)]
