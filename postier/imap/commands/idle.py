"""IDLE (RFC 2177, RFC 9051 §6.3.13): the client waits for updates; the session
core idles (`postier.imap.core`) while its adapter watches both the socket and the
change feed.

Rules:
- ``+ idling`` is sent at once; while idling, changes to the selected mailbox
  (EXISTS, EXPUNGE or VANISHED, FETCH FLAGS) are sent as soon as the change feed
  reports them, typically well within a second of another session's commit, an
  SMTP delivery or another process's change (the store polls for those).
- ``DONE`` ends it with the tagged OK; anything else is BAD and ends it too.
- IDLE is valid in the authenticated state as well (nothing to report there).
"""

from __future__ import annotations

from postier.imap import parse as p
from postier.imap.commands.context import Context, Idle


async def idle(ctx: Context, cmd: p.Idle) -> Idle:
    return Idle()
