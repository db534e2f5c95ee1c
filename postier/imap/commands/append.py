"""APPEND (RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502), CATENATE (RFC 4469),
literal8 (BINARY, RFC 3516 §4.4), UTF8 (RFC 6855 §4), APPENDUID (UIDPLUS, RFC 4315
§3) and APPENDLIMIT (RFC 7889).

Rules:
- A missing target mailbox is ``NO [TRYCREATE]`` (RFC 9051 §6.3.12).
- MULTIAPPEND is all or nothing (RFC 3502 §6.3.11): when a later message fails, the
  ones already stored are removed again before the NO.
- Literals above APPENDLIMIT never reach here: the receiver refuses them with
  ``NO [TOOBIG]`` before the client sends them.
- A zero-length message is refused: it is no RFC 5322 message.
- CATENATE (RFC 4469): the message is its TEXT parts and the octets its URLs name
  (`urlpart`: the user's own messages only), in order. A URL naming nothing is
  ``NO [BADURL url]``; a result above APPENDLIMIT is ``NO [TOOBIG]`` (§6); every
  message of the command is composed before any is stored.
- A system flag other than the five storable ones (\\Recent included: it cannot be
  set, RFC 9051 §2.3.2) is ``BAD Invalid system flag``, as for STORE (Dovecot).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, no, ok
from postier.imap.commands.flags import invalid_flag
from postier.imap.commands.urlpart import BadUrl, PartReader
from postier.mime.summary import summarize_source
from postier.store.errors import QuotaExceeded, StoreError
from postier.store.models import Message, NewMessage, Uid

log = logging.getLogger("postier.imap")


async def append(ctx: Context, cmd: p.Append) -> Result:
    for m in cmd.messages:
        refused = invalid_flag(m.flags)
        if refused is not None:
            return refused
    mbox = await ctx.mailbox(cmd.mailbox)
    if mbox is None:
        return no("No such mailbox", r.TRYCREATE)
    contents: list[bytes | Path] = []
    for m in cmd.messages:
        if m.catenate is None:
            data = m.data
        else:
            try:
                data = await _catenate(ctx, m.catenate)
            except BadUrl as e:
                return no(e.text, r.code_badurl(e.url))  # RFC 4469 §5
            except _TooBig:
                return no("Composed message grows too big", r.TOOBIG)  # RFC 4469 §6
        if not data:
            return no("Empty message refused")
        contents.append(data)
    stored: list[Message] = []
    try:
        for m, data in zip(cmd.messages, contents, strict=True):
            summary = await asyncio.to_thread(summarize_source, data)
            stored.append(
                await ctx.store.append(
                    mbox.id, NewMessage(data, summary), frozenset(m.flags), m.internal_date
                )
            )
    except QuotaExceeded:
        await _undo(ctx, mbox.id, stored)
        return no("Quota exceeded", r.OVERQUOTA)  # RFC 9208 §4.4
    except StoreError as e:
        await _undo(ctx, mbox.id, stored)
        return no(f"Cannot append: {e}", r.CANNOT)
    view = ctx.session.view
    if view is not None and view.mailbox_id == mbox.id:
        view.dirty = True  # RFC 9051 §6.3.12: EXISTS for the selected mailbox
    code = r.code_appenduid(mbox.uidvalidity, [m.uid for m in stored])
    return ok("APPEND completed", code)


class _TooBig(Exception):
    pass


async def _catenate(ctx: Context, parts: tuple[p.CatPart, ...]) -> bytes:
    """The message CATENATE composes (RFC 4469 §3): TEXT octets and the octets
    each URL names, in order; all URLs are checked before anything is stored."""
    limit = ctx.settings.imap.max_literal_size  # APPENDLIMIT holds for the result
    reader = PartReader(ctx, budget=2 * limit)  # messages read, each at most once
    out = bytearray()
    for part in parts:
        if part.url is not None:
            out += await reader.read(part.url)
        elif isinstance(part.text, Path):  # a large TEXT, spooled by the adapter
            out += await asyncio.to_thread(part.text.read_bytes)
        else:
            assert part.text is not None
            out += part.text  # an empty TEXT adds nothing (as Dovecot)
        if len(out) > limit:
            raise _TooBig
    return bytes(out)


async def _undo(ctx: Context, mailbox_id: int, stored: list[Message]) -> None:
    if not stored:
        return
    try:
        await ctx.store.expunge(
            stored[0].mailbox_id, [Uid(m.uid) for m in stored], flagged_only=False
        )
    except StoreError:
        log.exception("sid=%s MULTIAPPEND undo failed", ctx.session.sid)
