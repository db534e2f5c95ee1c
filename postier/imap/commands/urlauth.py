"""URLAUTH (RFC 4467): GENURLAUTH, URLFETCH and RESETKEY; the checks and the keys are
`postier.auth.urlauth`'s, shared with SMTP BURL (RFC 4468).

Rules:
- GENURLAUTH answers one ``* GENURLAUTH`` with every signed URL in the client's
  order, or NO naming the first URL it refuses (nothing is signed then).
- URLFETCH answers one ``* URLFETCH`` with each URL and its data, or NIL for a URL
  that does not resolve for this session, whatever the reason (RFC 4467 §6.3:
  nothing tells a wrong token from a missing message). The data is never a
  synchronising concern of the client: a literal, NUL octets sent as 0x80 as FETCH
  does for plain literals (CHAR8).
- RESETKEY without a mailbox forgets every key of the user, with one the key of
  that mailbox; mechanisms other than INTERNAL are refused (RFC 4467 §6.1).
"""

from __future__ import annotations

from postier.auth.urlauth import MECHANISMS, Requester, UrlAuth, UrlAuthError
from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, no, ok

#: resp-text-code URLMECH (RFC 4467 §8)
URLMECH = "URLMECH " + " ".join(MECHANISMS)


def _service(ctx: Context) -> UrlAuth:
    s = ctx.settings
    return UrlAuth(ctx.store, s.server.hostname, allow_anonymous=s.imap.urlauth_anonymous)


async def genurlauth(ctx: Context, cmd: p.GenUrlAuth) -> Result:
    user = ctx.session.user
    assert user is not None
    service = _service(ctx)
    signed: list[str] = []
    for rump, mechanism in cmd.urls:
        try:
            signed.append(await service.generate(user, rump, mechanism))
        except UrlAuthError as e:
            return no(f"GENURLAUTH refused: {e.text}")
    ctx.send(b"* GENURLAUTH " + b" ".join(r.astring(u) for u in signed) + b"\r\n")
    return ok("GENURLAUTH completed")


async def urlfetch(ctx: Context, cmd: p.UrlFetch) -> Result:
    service = _service(ctx)
    requester = Requester(ctx.session.user)
    parts: list[bytes] = []
    for url in cmd.urls:
        try:
            data: bytes | None = await service.fetch(url, requester)
        except UrlAuthError:
            data = None
        value = b"NIL" if data is None else r.literal(data.replace(b"\x00", b"\x80"))
        parts.append(r.astring(url) + b" " + value)
        await ctx.maybe_drain()
    ctx.send(b"* URLFETCH " + b" ".join(parts) + b"\r\n")
    return ok("URLFETCH completed")


async def resetkey(ctx: Context, cmd: p.ResetKey) -> Result:
    user = ctx.session.user
    assert user is not None
    unknown = [m for m in cmd.mechanisms if m not in MECHANISMS]
    if unknown:
        return no(f"Unsupported URLAUTH mechanism {unknown[0]}")
    mailbox = None
    if cmd.mailbox is not None:
        mailbox = await ctx.mailbox(cmd.mailbox)
        if mailbox is None:
            return no("No such mailbox", r.NONEXISTENT)
    await _service(ctx).reset(user, mailbox)
    return ok("RESETKEY completed", URLMECH)
