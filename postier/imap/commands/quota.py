"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208) over the store's per-user quota.

Rules:
- Each user has one quota root, "" (the whole account), with the STORAGE resource
  in units of 1024 octets, rounded up (RFC 9208 §5.1). A user without a limit has
  no quota root: GETQUOTAROOT lists none and GETQUOTA "" is ``NO [NONEXISTENT]``.
- SETQUOTA is for administrators (the CLI): ``NO [NOPERM]``.
"""

from __future__ import annotations

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, no, ok

ROOT = ""


def _kib(octets: int) -> int:
    return (octets + 1023) // 1024


async def _quota_line(ctx: Context) -> bytes | None:
    user = ctx.session.user
    assert user is not None
    used, limit = await ctx.store.quota_usage(user.id)
    if limit <= 0:
        return None
    return r.quota(ROOT, [("STORAGE", _kib(used), limit // 1024)])


async def getquota(ctx: Context, cmd: p.GetQuota) -> Result:
    line = await _quota_line(ctx) if cmd.root == ROOT else None
    if line is None:
        return no("No such quota root", r.NONEXISTENT)
    ctx.send(line)
    return ok("GETQUOTA completed")


async def getquotaroot(ctx: Context, cmd: p.GetQuotaRoot) -> Result:
    mbox = await ctx.mailbox(cmd.mailbox)
    if mbox is None:
        return no("No such mailbox", r.NONEXISTENT)
    line = await _quota_line(ctx)
    ctx.send(r.quotaroot(mbox.name, [ROOT] if line is not None else [], utf8=ctx.session.utf8))
    if line is not None:
        ctx.send(line)
    return ok("GETQUOTAROOT completed")


async def setquota(ctx: Context, cmd: p.SetQuota) -> Result:
    return no("Quotas are set by the administrator", r.NOPERM)
