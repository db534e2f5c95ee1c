"""The IMAP command table and dispatcher: which command runs in which state, and how
a handler's result becomes the tagged response. The session core
(`postier.imap.core`) calls `dispatch`; a command that waits for the client (IDLE,
an AUTHENTICATE challenge) comes back unfinished and the core ends it later with
`finish` (its failures mapped by `failure`).

Rules:
- `TABLE` maps each parsed command type to the states it is valid in (RFC 9051 §6)
  and its handler. A command in the wrong state is BAD and changes nothing.
- After the handler and before the tagged line, other sessions' changes to the
  selected mailbox are announced (`Context.sync`); EXPUNGE/VANISHED is held back
  during FETCH, STORE, SEARCH, SORT and THREAD (RFC 9051 §7.5.1) and their UID forms.
  After NOTIFY SET, `Notifier.after_command` does it and adds other mailboxes'
  events (RFC 5465).
- Store refusals become NO with a response code; any other exception becomes
  ``NO [SERVERBUG]`` naming the session id, with the traceback in the log.
- Consecutive BAD answers are counted; `imap.max_bad_commands` of them in a row end
  the connection with BYE (a client that lost sync, or a flood).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands import (
    append,
    auth,
    copymove,
    fetch,
    flags,
    idle,
    mailboxes,
    notify,
    quota,
    search,
    select,
    status,
    thread,
    urlauth,
)
from postier.imap.commands.context import (
    Context,
    Outcome,
    Refuse,
    Result,
    Status,
    bad,
    no,
    store_error,
)
from postier.imap.session import State
from postier.store.errors import StoreError
from postier.store.models import MailboxId

log = logging.getLogger("postier.imap")

Handler = Callable[[Context, Any], Awaitable[Outcome]]

ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


TABLE: dict[type[p.Command], tuple[frozenset[State], Handler]] = {
    p.Capability: (ANY, auth.capability),
    p.Noop: (ANY, auth.noop),
    p.Logout: (ANY, auth.logout),
    p.Id: (ANY, auth.id_),
    p.StartTLS: (NOT_AUTH, auth.starttls),
    p.Login: (NOT_AUTH, auth.login),
    p.Authenticate: (NOT_AUTH, auth.authenticate),
    p.Enable: (AUTH, auth.enable),
    p.Namespace: (AUTH, auth.namespace),
    p.Select: (AUTH, select.select),
    p.Examine: (AUTH, select.select),
    p.Create: (AUTH, mailboxes.create),
    p.Delete: (AUTH, mailboxes.delete),
    p.Rename: (AUTH, mailboxes.rename),
    p.Subscribe: (AUTH, mailboxes.subscribe),
    p.Unsubscribe: (AUTH, mailboxes.subscribe),
    p.List: (AUTH, mailboxes.list_),
    p.Lsub: (AUTH, mailboxes.lsub),
    p.Status: (AUTH, status.status),
    p.Append: (AUTH, append.append),
    p.Idle: (AUTH, idle.idle),
    p.GetQuota: (AUTH, quota.getquota),
    p.GetQuotaRoot: (AUTH, quota.getquotaroot),
    p.SetQuota: (AUTH, quota.setquota),
    p.Check: (SELECTED, auth.noop),
    p.Close: (SELECTED, select.close),
    p.Unselect: (SELECTED, select.unselect),
    p.Expunge: (SELECTED, select.expunge),
    p.Search: (SELECTED, search.search),
    p.Sort: (SELECTED, search.sort),
    p.Thread: (SELECTED, thread.thread),
    p.CancelUpdate: (SELECTED, search.cancelupdate),
    p.Fetch: (SELECTED, fetch.fetch),
    p.Store: (SELECTED, flags.store),
    p.Copy: (SELECTED, copymove.copy_move),
    p.Move: (SELECTED, copymove.copy_move),
    p.Notify: (AUTH, notify.notify),
    p.GenUrlAuth: (AUTH, urlauth.genurlauth),
    p.UrlFetch: (AUTH, urlauth.urlfetch),
    p.ResetKey: (AUTH, urlauth.resetkey),
}

#: RFC 9051 §7.5.1: no EXPUNGE while answering these
NO_EXPUNGE = (p.Fetch, p.Store, p.Search, p.Sort, p.Thread)


def _wrong_state(state: State, allowed: frozenset[State]) -> Result:
    if state is State.NOT_AUTHENTICATED:
        return bad("Log in first")
    if State.NOT_AUTHENTICATED in allowed:
        return bad("Already logged in")
    return bad("No mailbox selected")


async def run(ctx: Context, cmd: p.Command) -> Outcome:
    """Run one command's handler (if the state allows it); its failures as results."""
    entry = TABLE.get(type(cmd))
    if entry is None:  # pragma: no cover - the parser only makes commands in TABLE
        return bad("Unknown command")
    if ctx.session.state not in entry[0]:
        return _wrong_state(ctx.session.state, entry[0])
    try:
        return await entry[1](ctx, cmd)
    except Exception as e:
        return failure(ctx, cmd, e)


def failure(ctx: Context, cmd: p.Command, e: Exception) -> Result:
    """The result a command's exception stands for (the module's rules), also for the
    later steps of a command that waited for the client; I/O errors propagate."""
    if isinstance(e, Refuse):
        return e.result
    if isinstance(e, StoreError):
        log.info("sid=%s %s refused by the store: %s", ctx.session.sid, cmd.name, e)
        return store_error(e)
    if isinstance(e, (ConnectionError, OSError)):
        raise e
    log.error("sid=%s %s failed", ctx.session.sid, cmd.name, exc_info=e)
    return no(f"Internal error, session {ctx.session.sid}", r.SERVERBUG)


def selected_id(ctx: Context) -> MailboxId | None:
    """The selected mailbox before a command, for `finish` (NOTIFY compares)."""
    view = ctx.session.view
    return view.mailbox_id if view is not None else None


async def finish(
    ctx: Context, cmd: p.Command, result: Result, was_selected: MailboxId | None
) -> None:
    """Announce pending updates, then write the command's tagged response."""
    s = ctx.session
    allow_expunge = not isinstance(cmd, NO_EXPUNGE)
    try:
        if ctx.notifier is not None and s.state is not State.LOGOUT:
            await ctx.notifier.after_command(ctx, cmd, was_selected, allow_expunge=allow_expunge)
        elif s.state is State.SELECTED and not ctx.quiet():
            await ctx.sync(allow_expunge=allow_expunge)
    except StoreError:
        log.exception("sid=%s cannot read mailbox changes", s.sid)
    code = result.code
    if ctx.highestmodseq_owed:
        ctx.highestmodseq_owed = False
        if s.view is not None:
            # RFC 7162 §3.1: HIGHESTMODSEQ in the OK of the enabling command
            owed = r.code_highestmodseq(s.view.highest_modseq())
            if result.status is Status.OK and code is None:
                code = owed
            else:
                ctx.send(r.untagged_status("OK", "Highest", owed))
    ctx.send(r.tagged(cmd.tag, result.status._value_, result.text, code))  # value, unwrapped
    if result.status is Status.BAD:
        ctx.count_bad()
    else:
        s.bad_commands = 0


async def dispatch(ctx: Context, cmd: p.Command) -> Outcome:
    """Run one command; when it is over (a `Result`), write its tagged response after
    pending updates. `Idle` and `Challenge` (the command goes on with the client's
    next lines) are returned unfinished, for `postier.imap.core` to carry on."""
    was_selected = selected_id(ctx)
    outcome = await run(ctx, cmd)
    if isinstance(outcome, Result):
        await finish(ctx, cmd, outcome, was_selected)
    return outcome
