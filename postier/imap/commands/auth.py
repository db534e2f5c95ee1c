"""Commands of any state and of the not-authenticated state: CAPABILITY, NOOP,
LOGOUT, STARTTLS, LOGIN, AUTHENTICATE PLAIN (SASL-IR), ENABLE, ID, NAMESPACE.

Rules:
- Before TLS, LOGIN and AUTHENTICATE PLAIN are refused unless the client is on
  loopback or `tls.allow_plaintext_auth` is set; CAPABILITY then says LOGINDISABLED
  and omits AUTH=PLAIN (RFC 9051 §6.2.3, §11.1).
- A successful login answers with the new CAPABILITY list in the tagged OK
  (RFC 9051 §6.2.2), subscribes to the user's change feed, and moves to the
  authenticated state. Failures are slowed down by the shared `AuthService`.
- ENABLE answers ``* ENABLED`` with the extensions newly enabled (RFC 5161 §3.1);
  QRESYNC implies CONDSTORE (RFC 7162 §3.2.3); IMAP4rev2 and UTF8=ACCEPT switch
  mailbox names to UTF-8 (RFC 9051 §6.3.1, RFC 6855 §3).
"""

from __future__ import annotations

import base64
import binascii
import logging

from postier.auth.service import AuthOutcome
from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import (
    SERVER_ID,
    Challenge,
    Context,
    Result,
    Status,
    bad,
    no,
    ok,
)
from postier.imap.session import State

log = logging.getLogger("postier.imap")

#: RFC 5161 §3.1 / RFC 9051 §6.3.1: what ENABLE knows
ENABLEABLE = ("IMAP4REV2", "CONDSTORE", "QRESYNC", "UTF8=ACCEPT")


async def capability(ctx: Context, cmd: p.Capability) -> Result:
    ctx.send(r.capability(ctx.capabilities()))
    return ok("CAPABILITY completed")


#: NOOP's and CHECK's tagged OK (a `Result` is immutable: one for every command)
_NOOP_DONE = {name: ok(f"{name} completed") for name in (p.Noop.name, p.Check.name)}


async def noop(ctx: Context, cmd: p.Noop | p.Check) -> Result:
    return _NOOP_DONE[cmd.name]  # the dispatcher's sync sends the updates


async def logout(ctx: Context, cmd: p.Logout) -> Result:
    ctx.send(r.bye("Logging out"))  # RFC 9051 §6.1.3: BYE before the tagged OK
    ctx.session.state = State.LOGOUT
    return ok("LOGOUT completed")


async def starttls(ctx: Context, cmd: p.StartTLS) -> Result:
    if ctx.session.tls:
        return bad("TLS is already active")
    # the handshake follows the OK (`postier.imap.core`); RFC 9051 §6.2.1: the client
    # must ask for CAPABILITY again, so nothing more is said
    return Result(Status.OK, "Begin TLS negotiation now", starttls=True)


def _plaintext_refused(ctx: Context) -> Result | None:
    if ctx.session.tls or ctx.plaintext_ok:
        return None
    return no("Plaintext authentication is disabled, use STARTTLS first", r.PRIVACYREQUIRED)


async def login(ctx: Context, cmd: p.Login) -> Result:
    refused = _plaintext_refused(ctx)
    if refused is not None:
        return refused
    return await _authenticate(ctx, cmd.username, cmd.password)


async def authenticate(ctx: Context, cmd: p.Authenticate) -> Result | Challenge:
    if cmd.mechanism != "PLAIN":
        return no(f"Unsupported authentication mechanism {cmd.mechanism}", r.CANNOT)
    refused = _plaintext_refused(ctx)
    if refused is not None:
        return refused
    if cmd.initial_response is None:

        async def resume(line: bytes) -> Result:
            if line.strip() == b"*":
                return bad("Authentication cancelled")  # RFC 9051 §6.2.2
            try:
                response = base64.b64decode(line.strip(), validate=True)
            except binascii.Error:
                return bad("Invalid base64 in authentication response")
            return await _plain(ctx, response)

        return Challenge("", resume)  # RFC 4616: PLAIN starts with an empty challenge
    return await _plain(ctx, cmd.initial_response)


async def _plain(ctx: Context, response: bytes) -> Result:
    # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    fields = response.split(b"\x00")
    if len(fields) != 3:
        return bad("Invalid PLAIN response")
    try:
        authzid, authcid, password = (f.decode("utf-8") for f in fields)
    except UnicodeDecodeError:
        return bad("Invalid PLAIN response: not UTF-8")
    if authzid and authzid.lower() != authcid.lower():
        return no("Cannot act as another user", r.AUTHORIZATIONFAILED)
    return await _authenticate(ctx, authcid, password)


async def _authenticate(ctx: Context, username: str, password: str) -> Result:
    result = await ctx.auth.authenticate(username, password, ctx.peer_ip, "imap")
    if result.outcome is AuthOutcome.LOCKED:
        return no("Too many failed logins, try again later", r.UNAVAILABLE)
    if not result.ok or result.user is None:
        return no("Invalid credentials", r.AUTHENTICATIONFAILED)
    s = ctx.session
    s.user = result.user
    s.state = State.AUTHENTICATED
    ctx.subscribe()
    log.info("sid=%s login user=%s", s.sid, result.user.address)
    return ok("Logged in", r.code_capability(ctx.capabilities()))


async def enable(ctx: Context, cmd: p.Enable) -> Result:
    s = ctx.session
    newly: list[str] = []
    for cap in cmd.capabilities:
        if cap not in ENABLEABLE or cap in s.enabled:
            continue  # RFC 5161 §3.1: unknown or already enabled ones are not listed
        if cap in ("CONDSTORE", "QRESYNC"):
            ctx.enable_condstore()  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
        s.enabled.add(cap)
        newly.append("IMAP4rev2" if cap == "IMAP4REV2" else cap)
    ctx.send(r.enabled(newly))
    return ok("ENABLE completed")


async def id_(ctx: Context, cmd: p.Id) -> Result:
    if cmd.params:
        fields = " ".join(f"{k}={v}" for k, v in cmd.params)
        log.info("sid=%s client id %s", ctx.session.sid, fields)
    ctx.send(r.id_response(SERVER_ID))
    return ok("ID completed")


async def namespace(ctx: Context, cmd: p.Namespace) -> Result:
    # RFC 9051 §6.3.10: one personal namespace, no prefix, "/" as the delimiter
    ctx.send(r.namespace((("", "/"),), None, None, utf8=ctx.session.utf8))
    return ok("NAMESPACE completed")
