"""STORE and UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (CONDSTORE, RFC 7162
§3.1.3).

Rules:
- Read-only mailboxes refuse STORE (``NO [READ-ONLY]``).
- Without .SILENT every named message gets ``* n FETCH (FLAGS ...)`` with its flags
  after the change (RFC 9051 §6.4.6), plus UID for UID STORE; once CONDSTORE is on,
  UID and MODSEQ always (RFC 7162 §3.1, §3.1.3). With .SILENT and CONDSTORE,
  changed messages still get ``FETCH (UID MODSEQ)`` so the client learns the new
  MODSEQ.
- Messages refused by UNCHANGEDSINCE are listed in ``OK [MODIFIED set]`` (sequence
  numbers for STORE, UIDs for UID STORE) and are not changed.
- Only the five storable system flags may be named: "\\" with any other atom
  (\\Recent included, RFC 9051 §2.3.2: the client cannot alter it) is ``BAD
  Invalid system flag`` and changes nothing, as Dovecot answers (flag-extension
  is reserved for future RFCs, RFC 9051 §2.3.2).
- Once CONDSTORE is on, every untagged FETCH carries UID and MODSEQ (RFC 7162
  §3.1); a keyword new to the mailbox is announced by FLAGS and PERMANENTFLAGS
  before the first FETCH that shows it (RFC 9051 §7.3.5).
- Messages expunged elsewhere but not announced are left alone; no EXPUNGE is sent
  during STORE (RFC 9051 §7.5.1).
"""

from __future__ import annotations

from collections.abc import Iterable

from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, bad, no, ok
from postier.imap.session import BadSequence
from postier.store.errors import Invalid
from postier.store.models import SYSTEM_FLAGS, ModSeq, Uid


def invalid_flag(flags: Iterable[str]) -> Result | None:
    """BAD for a system flag that cannot be stored: an unknown "\\atom" or \\Recent."""
    for flag in flags:
        if flag.startswith("\\") and flag not in SYSTEM_FLAGS:
            return bad(f"Invalid system flag {flag}")  # RFC 9051 §2.3.2
    return None


async def store(ctx: Context, cmd: p.Store) -> Result:
    s = ctx.session
    view = s.view
    assert view is not None
    refused_flag = invalid_flag(cmd.flags)
    if refused_flag is not None:
        return refused_flag
    if view.readonly:
        return no("Mailbox is read-only", r.READ_ONLY)
    try:
        picked = view.resolve(cmd.set, uid=cmd.uid, saved=s.saved)
    except BadSequence as e:
        return bad(str(e))
    picked = [(seq, u) for seq, u in picked if u not in view.expunged]
    if cmd.unchanged_since is not None:
        ctx.enable_condstore()  # RFC 7162 §3.1: the first CONDSTORE command enables it
    uids = [Uid(u) for _, u in picked]
    since = None if cmd.unchanged_since is None else ModSeq(cmd.unchanged_since)
    try:
        changed, refused = await ctx.store.store_flags(
            view.mailbox_id, uids, frozenset(cmd.flags), cmd.mode, unchanged_since=since
        )
    except Invalid as e:
        return bad(f"Invalid flag: {e}")
    changed_uids = set()
    for m in changed:
        view.record_flags(m)
        view.flag_changes.discard(m.uid)
        changed_uids.add(m.uid)
    refused_set = set(refused)
    ctx.announce_keywords(view)  # RFC 9051 §7.3.5: before the FETCH that shows one
    for seq, u in picked:
        if u in refused_set:
            continue
        if cmd.silent and not (s.condstore and u in changed_uids):
            continue
        items: list[tuple[str, r.FetchValue]] = []
        if cmd.uid or s.condstore:
            items.append(("UID", u))  # RFC 7162 §3.1: UID and MODSEQ once enabled
        if not cmd.silent:
            items.append(("FLAGS", view.flags_of(u, with_recent=not s.rev2)))
        if s.condstore:
            items.append(("MODSEQ", r.Raw(b"(%d)" % view.modseq(u))))
        ctx.send(r.fetch(seq, items))
        await ctx.maybe_drain()
    if refused:
        ids = sorted(refused) if cmd.uid else sorted(seq for seq, u in picked if u in refused_set)
        return ok("Conditional STORE failed for some messages", r.code_modified(ids))
    return ok("STORE completed")
