"""COPY, MOVE and their UID forms (RFC 9051 §6.4.7, §6.4.8; RFC 6851; COPYUID from
UIDPLUS, RFC 4315 §3).

Rules:
- A missing target is ``NO [TRYCREATE]``; an empty UID set copies nothing and is OK
  (RFC 9051 §6.4.9); a sequence number beyond EXISTS is BAD.
- MOVE answers ``* OK [COPYUID ...]`` before the EXPUNGE (or VANISHED) responses of
  the moved messages, then the tagged OK (RFC 6851 §4.3). The store does the copy
  and the expunge in one transaction.
- A MOVE into or out of Junk teaches the user's Junk classifier, after the answer
  and never failing it (`ctx.learn_move`: `filters.bayes.MoveLearner`). COPY does
  not: the message stays where it was, and a client's COPY + EXPUNGE is not seen
  as one move.
- Messages expunged by another session but not yet announced are skipped (they
  are gone from the store); their EXPUNGE follows with this command's answer.
"""

from __future__ import annotations

import logging

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, bad, no, ok
from postier.imap.session import BadSequence
from postier.store.errors import QuotaExceeded
from postier.store.models import Mailbox, MailboxId, Uid

log = logging.getLogger("postier.imap")


async def copy_move(ctx: Context, cmd: p.Copy | p.Move) -> Result:
    s = ctx.session
    view = s.view
    assert view is not None
    move = isinstance(cmd, p.Move)
    if move and view.readonly:
        return no("Mailbox is read-only", r.READ_ONLY)
    try:
        picked = view.resolve(cmd.set, uid=cmd.uid, saved=s.saved)
    except BadSequence as e:
        return bad(str(e))
    dest = await ctx.mailbox(cmd.mailbox)
    if dest is None:
        return no("No such mailbox", r.TRYCREATE)
    uids = [Uid(u) for _, u in picked if u not in view.expunged]
    if not uids:
        return ok(f"{cmd.name} completed (no messages)")
    try:
        if move:
            pairs = await ctx.store.move(view.mailbox_id, uids, dest.id)
        else:
            pairs = await ctx.store.copy(view.mailbox_id, uids, dest.id)
    except QuotaExceeded:
        return no("Quota exceeded", r.OVERQUOTA)
    if dest.id == view.mailbox_id:
        view.dirty = True
    code = r.code_copyuid(dest.uidvalidity, [a for a, _ in pairs], [b for _, b in pairs])
    if move:
        ctx.send(r.untagged_status("OK", "Moved", code))  # RFC 6851 §4.3
        view.remove(a for a, _ in pairs)
        await _learn(ctx, view.mailbox_id, dest, [b for _, b in pairs])
        return ok("MOVE completed")
    return ok("COPY completed", code)


async def _learn(ctx: Context, source_id: MailboxId, dest: Mailbox, uids: list[Uid]) -> None:
    """Hand a MOVE to the Junk classifier; a failure here is logged, not the MOVE's."""
    user = ctx.session.user
    if ctx.learn_move is None or user is None or not uids:
        return
    try:
        source = await ctx.store.get_mailbox_by_id(source_id)
        if source is not None:
            ctx.learn_move(user.id, source, dest, uids)
    except Exception:
        log.exception("MOVE: could not hand the moved messages to the Junk classifier")
