"""STATUS (RFC 9051 §6.3.11; SIZE RFC 8438, DELETED RFC 9051, HIGHESTMODSEQ RFC 7162
§3.1.2.3, APPENDLIMIT RFC 7889, RECENT RFC 3501), also used by LIST-STATUS.

Rules:
- Items come back in the client's order. Counts come from the mailbox row the store
  keeps current; DELETED and RECENT, which it does not count, read the message
  list only when asked for.
- STATUS of the selected mailbox is allowed and answers the store's truth (RFC 9051
  §6.3.11 says clients should not rely on it there).
"""

from __future__ import annotations

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, no, ok
from postier.store.models import Mailbox


async def status_items(
    ctx: Context, mbox: Mailbox, items: tuple[str, ...]
) -> list[tuple[str, int]]:
    messages = None
    out: list[tuple[str, int]] = []
    for item in items:
        if item == "MESSAGES":
            value = mbox.messages
        elif item == "UIDNEXT":
            value = mbox.uidnext
        elif item == "UIDVALIDITY":
            value = mbox.uidvalidity
        elif item == "UNSEEN":
            value = mbox.unseen
        elif item == "SIZE":
            value = mbox.size
        elif item == "HIGHESTMODSEQ":
            value = mbox.highestmodseq
        elif item == "APPENDLIMIT":
            value = ctx.settings.imap.max_literal_size
        elif item == "DELETED":
            if messages is None:
                messages = await ctx.store.list_messages(mbox.id, summaries=False)
            value = sum(1 for m in messages if "\\Deleted" in m.flags)
        else:  # RECENT: not yet claimed by any session (RFC 3501 §2.3.2)
            last = await ctx.recent.last(mbox.id)
            if messages is None:
                messages = await ctx.store.list_messages(mbox.id, summaries=False)
            value = sum(1 for m in messages if m.uid > last)
        out.append((item, value))
    return out


async def status(ctx: Context, cmd: p.Status) -> Result:
    if "HIGHESTMODSEQ" in cmd.items:
        ctx.enable_condstore()  # RFC 7162 §3.1: STATUS (HIGHESTMODSEQ) enables it
    mbox = await ctx.mailbox(cmd.mailbox)
    if mbox is None:
        return no("No such mailbox", r.NONEXISTENT)
    ctx.send(r.status(mbox.name, await status_items(ctx, mbox, cmd.items), utf8=ctx.session.utf8))
    return ok("STATUS completed")
