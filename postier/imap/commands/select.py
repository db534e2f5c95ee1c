"""SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE (RFC 9051 §6.3.2,
§6.3.3, §6.4.1, §6.4.2, §6.4.3; RFC 4315 §2.1; RFC 7162 §3.1.2, §3.2.5).

Rules:
- Selecting while a mailbox is selected closes it first, without expunging, and says
  so with ``* OK [CLOSED]`` (RFC 9051 §6.3.2, RFC 7162 §3.2.11).
- The SELECT answer lists FLAGS, EXISTS, UIDVALIDITY, UIDNEXT, PERMANENTFLAGS and
  HIGHESTMODSEQ; IMAP4rev1 sessions also get RECENT and ``OK [UNSEEN n]``,
  IMAP4rev2 sessions the mailbox's LIST line instead (RFC 9051 §6.3.2).
- QRESYNC (RFC 7162 §3.2.5): when the client's UIDVALIDITY matches, what vanished
  and what changed since its MODSEQ is sent before the tagged OK.
- CLOSE expunges silently (no EXPUNGE responses) unless the mailbox is read-only.
"""

from __future__ import annotations

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, bad, no, ok
from postier.imap.session import BadSequence, Columns, MailboxView, State, newer, snapshots
from postier.store.models import SYSTEM_FLAGS, Mailbox, ModSeq, Uid


async def select(ctx: Context, cmd: p.Select) -> Result:
    s = ctx.session
    if cmd.qresync is not None and not s.qresync:
        return bad("QRESYNC is not enabled")  # RFC 7162 §3.2.5
    if s.view is not None:
        s.view = None
        s.state = State.AUTHENTICATED
        ctx.send(r.untagged_status("OK", "Previous mailbox is now closed", r.CLOSED))
    s.saved = []
    s.live.clear()  # RFC 5267 §4.3: updates cease when the mailbox is closed
    if cmd.condstore:
        ctx.enable_condstore()  # RFC 7162 §3.1.8: a CONDSTORE parameter enables it
    mbox = await ctx.mailbox(cmd.mailbox)
    if mbox is None:
        return no("No such mailbox", r.NONEXISTENT)
    shared_states = snapshots(ctx.store)
    shared = shared_states.get(mbox)  # another session holds this very state: no store read
    columns = shared if shared is not None else await list_columns(ctx, mbox)
    uids = columns.uids
    if cmd.readonly:
        last = await ctx.recent.last(mbox.id)
        recent = newer(uids, last)  # EXAMINE shows \Recent, claims nothing
    else:
        recent = await ctx.recent.claim(mbox.id, uids)
    view = MailboxView(
        mbox, readonly=cmd.readonly, recent=recent, columns=columns, shared=shared is not None
    )
    if shared is None:
        shared_states.keep(mbox, view)
    keywords = view.keywords()
    view.announced, view.new_keywords = set(keywords), set()
    ctx.send(r.flags(SYSTEM_FLAGS | keywords))
    ctx.send(r.exists(view.exists))
    if not s.rev2:
        ctx.send(r.recent(len(recent)))
        unseen = view.first_unseen()
        if unseen is not None:
            ctx.send(r.untagged_status("OK", "First unseen", r.code_unseen(unseen)))
    ctx.send(r.untagged_status("OK", "UIDs valid", r.code_uidvalidity(mbox.uidvalidity)))
    ctx.send(r.untagged_status("OK", "Predicted next UID", r.code_uidnext(view.uidnext)))
    if cmd.readonly:
        ctx.send(r.untagged_status("OK", "Read-only mailbox", "PERMANENTFLAGS ()"))
    else:
        ctx.send(
            r.untagged_status(
                "OK", "Flags permitted", r.code_permanentflags(SYSTEM_FLAGS | keywords)
            )
        )
    ctx.send(r.untagged_status("OK", "Highest", r.code_highestmodseq(mbox.highestmodseq)))
    if s.rev2:
        ctx.send(r.list_response(mbox.name, (), utf8=s.utf8))  # RFC 9051 §6.3.2
    s.view = view
    s.state = State.SELECTED
    if cmd.qresync is not None and cmd.qresync.uidvalidity == mbox.uidvalidity:
        await _qresync(ctx, view, cmd.qresync)
    code = r.READ_ONLY if cmd.readonly else r.READ_WRITE
    return ok(f"{cmd.name} completed", code)


#: UIDs per store query when listing a mailbox at SELECT (grows when sparse)
LIST_WINDOW = 2000


async def list_columns(ctx: Context, mbox: Mailbox) -> Columns:
    """The mailbox's UIDs, MODSEQs and flags (`Store.list_flags`: no `Message` per
    row), read in UID windows so a large mailbox is never all in memory at once as
    rows: a thousand clients selecting a 10,000-message INBOX must not each hold
    megabytes, even briefly."""
    cols = Columns()
    lo, window = 1, LIST_WINDOW
    top = mbox.uidnext - 1
    while lo <= top:
        hi = lo + window - 1
        rows = await ctx.store.list_flags(mbox.id, lo, hi)
        cols.extend(rows)
        if len(rows) < window // 4:
            window *= 2  # sparse UIDs (after many expunges): fewer, wider queries
        lo = hi + 1
    # messages that arrived after the mailbox row was read
    cols.extend(await ctx.store.list_flags(mbox.id, max(lo, top + 1)))
    return cols


async def _qresync(ctx: Context, view: MailboxView, q: p.QResync) -> None:
    """RFC 7162 §3.2.5.2: VANISHED (EARLIER) then FETCH for what changed."""
    gone = await ctx.store.vanished_since(view.mailbox_id, ModSeq(q.modseq))
    if q.known_uids is not None:
        gone = [u for u in gone if q.known_uids.contains(u, max(gone, default=0))]
    if gone:
        ctx.send(r.vanished(gone, earlier=True))
    for seq, uid in enumerate(view.uids, 1):
        if view.modseq(uid) > q.modseq:
            ctx.send(ctx.flags_fetch(view, seq, uid))


async def close(ctx: Context, cmd: p.Close) -> Result:
    s = ctx.session
    view = s.view
    assert view is not None
    if not view.readonly:
        await ctx.store.expunge(view.mailbox_id)  # RFC 9051 §6.4.1: silently
    s.view = None
    s.state = State.AUTHENTICATED
    s.saved = []
    s.live.clear()
    return ok("CLOSE completed")


async def unselect(ctx: Context, cmd: p.Unselect) -> Result:
    s = ctx.session
    s.view = None
    s.state = State.AUTHENTICATED
    s.saved = []
    s.live.clear()
    return ok("UNSELECT completed")  # RFC 3691: no expunge


async def expunge(ctx: Context, cmd: p.Expunge) -> Result:
    view = ctx.session.view
    assert view is not None
    if view.readonly:
        return no("Mailbox is read-only", r.READ_ONLY)
    uids: list[Uid] | None = None
    if cmd.uids is not None:  # RFC 4315 §2.1: only these UIDs
        try:
            uids = [Uid(u) for _, u in view.resolve(cmd.uids, uid=True, saved=ctx.session.saved)]
        except BadSequence as e:
            return bad(str(e))
        if not uids:
            return ok("EXPUNGE completed")
    removed = await ctx.store.expunge(view.mailbox_id, uids)
    view.remove(removed)
    return ok("EXPUNGE completed")
