"""SEARCH / UID SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731), SEARCHRES (RFC
5182), CONDSTORE's MODSEQ key (RFC 7162 §3.1.5), WITHIN (RFC 5032); SORT / UID SORT
(RFC 5256 §3, SORT=DISPLAY RFC 5957) with ESORT; CONTEXT=SEARCH and CONTEXT=SORT
(RFC 5267): PARTIAL results, UPDATE and CANCELUPDATE.

Rules:
- Keys are evaluated by `postier.imap.matcher`, every key in one pass per message,
  in the search threads, never on the event loop: FROM, TO, CC, BCC, SUBJECT from the
  store's header index, flags and numbers from the view (no row read when those
  are all), then dates and sizes from the rows, then the messages still undecided
  with their bytes, read in bounded batches.
- One command spends at most `imap.search_time_limit` CPU seconds matching and
  sorting; past it the answer is ``NO [LIMIT]`` (RFC 5530), nothing is saved and
  nothing is kept current.
- Answers: ``* SEARCH`` for plain SEARCH in an IMAP4rev1 session; ``* ESEARCH (TAG
  ...)`` when RETURN was given, and for every SEARCH once IMAP4rev2 is enabled (RFC
  9051 §6.4.4, §7.3.4: a plain SEARCH means RETURN (ALL)); an empty RETURN () means
  ALL, and so does one with only CONTEXT, a hint that changes nothing (RFC 5267
  §4.2). ``* SORT`` for plain SORT, ESEARCH for SORT RETURN (ESORT, RFC 5267 §3.1):
  MIN and MAX are the first and last in sort order, ALL keeps the sort order with
  ranges only for ascending runs (§3.2).
- MIN, MAX and ALL are left out when nothing matched (RFC 4731 §3.1); PARTIAL
  answers the positions asked, in result order, NIL when there are none (RFC 5267
  §4.4).
- SAVE keeps the result for ``$`` (RFC 5182 §2.4): only MIN and/or MAX of it when
  those are asked with SAVE; no ESEARCH when SAVE is the only option; a failed
  search leaves ``$`` empty (§2.1).
- A search that names MODSEQ answers with the highest MODSEQ of the matches and
  enables CONDSTORE (RFC 7162 §3.1.5).
- UPDATE keeps the result current (`postier.imap.commands.updates`); a tag already
  kept current is refused with BAD (RFC 5267 §4.3).
- No EXPUNGE is sent during SEARCH or SORT (RFC 9051 §7.5.1).
"""

from __future__ import annotations

from collections.abc import Sequence

from postier.imap import matcher
from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands import updates
from postier.imap.commands.context import Context, Result, bad, no, ok
from postier.imap.matcher import (
    Budget,
    Facts,
    TooComplex,
    highest_modseq,
    in_search_thread,
    names_modseq,
    numbers,
)
from postier.imap.session import BadSequence
from postier.imap.sortkeys import ADDRESS_KEYS, sort_messages

TOO_COMPLEX = "Search too complex, narrow it down"


def limit_refusal() -> Result:
    """The answer to a search that used up its budget (RFC 5530 LIMIT)."""
    return no(TOO_COMPLEX, r.LIMIT)


def new_budget(ctx: Context) -> Budget:
    return Budget(ctx.settings.imap.search_time_limit)


async def run_search(
    ctx: Context,
    key: p.SearchKey,
    *,
    summaries: bool = False,
    structures: bool = False,
    budget: Budget | None = None,
) -> Sequence[Facts]:
    """The messages matching `key`, in mailbox order, with their summaries when a
    key or the caller (SORT, THREAD) needs them, and their ENVELOPE when asked
    (`structures`: SORT by address); a plain search may have no row (`Facts.m`)
    when the view answered it alone. Raises `BadSequence` for a number beyond the
    mailbox and `TooComplex` past the budget (a new one by default)."""
    s = ctx.session
    assert s.view is not None
    return await matcher.search(
        ctx.store,
        s.view,
        key,
        s.saved,
        budget or new_budget(ctx),
        summaries=summaries,
        structures=structures,
    )


async def search(ctx: Context, cmd: p.Search) -> Result:
    return await _searching(ctx, cmd, None)


async def sort(ctx: Context, cmd: p.Sort) -> Result:
    return await _searching(ctx, cmd, cmd.criteria)


async def _searching(
    ctx: Context, cmd: p.Search | p.Sort, criteria: tuple[p.SortCriterion, ...] | None
) -> Result:
    s = ctx.session
    done = f"{cmd.name} completed"
    opts = set(cmd.returns or ()) - {"CONTEXT"}
    if "UPDATE" in opts and cmd.tag in s.live:
        return bad("Tag reuse")  # RFC 5267 §4.3: the tag names a context kept current
    budget = new_budget(ctx)
    try:
        found = await run_search(
            ctx,
            cmd.key,
            summaries=criteria is not None,
            structures=criteria is not None and any(c.key in ADDRESS_KEYS for c in criteria),
            budget=budget,
        )
        if criteria is not None:
            found = await in_search_thread(_sort, found, criteria, budget)
    except BadSequence as e:
        return bad(str(e))
    except TooComplex:
        if "SAVE" in opts:
            s.saved = []  # RFC 5182 §2.1: a failed search leaves $ empty
        return limit_refusal()
    uses_modseq = names_modseq(cmd.key)
    if uses_modseq:
        ctx.enable_condstore()  # RFC 7162 §3.1: a MODSEQ key enables CONDSTORE
    ids = numbers(found, cmd.uid)
    if cmd.returns is None and (criteria is not None or not s.rev2):
        make = r.search if criteria is None else r.sort
        ctx.send(make(ids, _highest_modseq(found) if uses_modseq else None))
        return ok(done)
    opts = opts or {"ALL"}  # RFC 4731 §3.1; RFC 9051 §6.4.4 (IMAP4rev2: plain SEARCH)
    returned = found
    if opts & {"MIN", "MAX"} and not opts & {"ALL", "COUNT", "PARTIAL"}:
        returned = [
            *(found[:1] if "MIN" in opts else []),
            *(found[-1:] if "MAX" in opts else []),
        ]  # RFC 4731 §3.2: then MODSEQ is that of the messages returned
    modseq = _highest_modseq(returned) if uses_modseq else None
    if "SAVE" in opts:
        saved = found
        if opts & {"MIN", "MAX"}:  # RFC 5182 §2.4
            saved = [*(found[:1] if "MIN" in opts else []), *(found[-1:] if "MAX" in opts else [])]
        s.saved = sorted(set(numbers(saved, True)))
    if "UPDATE" in opts:
        refused = await updates.start(ctx, cmd.tag, cmd.uid, cmd.key, criteria, found)
        if refused is not None:
            ctx.send(refused)
    if opts == {"SAVE"}:
        return ok(f"{done}, result saved")
    partial = None
    if cmd.partial is not None:
        lo, hi = sorted(cmd.partial)
        partial = (cmd.partial, ids[lo - 1 : hi])
    ctx.send(
        r.esearch(
            cmd.tag,
            uid=cmd.uid,
            min=ids[0] if "MIN" in opts and ids else None,
            max=ids[-1] if "MAX" in opts and ids else None,
            all=ids if "ALL" in opts else None,
            count=len(ids) if "COUNT" in opts else None,
            modseq=modseq,
            partial=partial,
            sorted_order=criteria is not None,
        )
    )
    return ok(done)


def _sort(
    found: Sequence[Facts], criteria: tuple[p.SortCriterion, ...], budget: Budget
) -> list[Facts]:
    """SORT's ordering (in a search thread), within what is left of the budget."""
    budget.start()
    try:
        by_uid = {f.uid: f for f in found}
        ordered = sort_messages([f.m for f in found], criteria, budget.check)
        return [by_uid[m.uid] for m in ordered]
    finally:
        budget.stop()


def _highest_modseq(found: Sequence[Facts]) -> int | None:
    return highest_modseq(found)


async def cancelupdate(ctx: Context, cmd: p.CancelUpdate) -> Result:
    """RFC 5267 §4.3.5: stop updating the contexts the tags name."""
    unknown = [t for t in cmd.tags if t not in ctx.session.live]
    if unknown:
        return no(f"Unknown search tag {unknown[0]}")  # Dovecot: NO, nothing cancelled
    for tag in cmd.tags:
        updates.cancel(ctx.session, tag)
    return ok("CANCELUPDATE completed")
