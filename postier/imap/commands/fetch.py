"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2) with BINARY (RFC 3516), MODSEQ,
CHANGEDSINCE (RFC 7162 §3.1.4) and VANISHED (RFC 7162 §3.2.6).

Rules:
- ENVELOPE, BODYSTRUCTURE and BODY come pre-serialised from the message summary
  computed at delivery; FLAGS, UID and MODSEQ from the session's view. Message
  rows are read from the store in UID-range batches; a blob is read only for body
  sections, and parsed only for sections below the top level.
- A body fetch that is not .PEEK sets \\Seen unless the mailbox is read-only; the
  flags are stored once for the whole command, before any response, and the
  FETCH responses of those messages then carry FLAGS (RFC 9051 §6.4.5).
- A section naming no part gives an empty string; an unknown transfer encoding in a
  BINARY fetch is ``NO [UNKNOWN-CTE]`` (RFC 3516 §4.3).
- A message expunged elsewhere but not yet announced stays addressable (no EXPUNGE
  during FETCH, RFC 9051 §7.5.1); if its data is gone the command ends with
  ``NO [EXPUNGEISSUED]`` after serving the rest.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from postier import mime
from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, bad, no, ok
from postier.imap.session import BadSequence, MailboxView
from postier.mime.sections import SectionText
from postier.store.errors import NotFound
from postier.store.models import BlobId, Message, ModSeq, Uid

#: messages whose rows are loaded from the store at once
BATCH = 50  # messages per store round trip (their bytes are held at once)
_VIEW_ONLY = frozenset({"UID", "FLAGS", "MODSEQ"})
_BLOB_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE"})
#: items that cut the message at its header's end (the summary's header_size)
_HEADER_CUT = frozenset({"RFC822.HEADER", "RFC822.TEXT"})


class _UnknownCte(Exception):
    pass


class Rows(enum.Enum):
    """How much of each message row a FETCH reads (`Store.list_messages`)."""

    LIGHT = "light"  # the messages table: UID, flags, dates, sizes, blob id
    TEXT = "text"  # and the summary's text fields and sizes
    STRUCTURES = "structures"  # and the pre-serialised ENVELOPE, BODYSTRUCTURE, BODY


async def fetch(ctx: Context, cmd: p.Fetch) -> Result:
    s = ctx.session
    view = s.view
    assert view is not None
    if cmd.vanished and not s.qresync:
        return bad("VANISHED requires ENABLE QRESYNC")  # RFC 7162 §3.2.6
    try:
        picked = view.resolve(cmd.set, uid=cmd.uid, saved=s.saved)
    except BadSequence as e:
        return bad(str(e))
    items = cmd.items
    names = {i.name for i in items}
    if cmd.changed_since is not None or "MODSEQ" in names:
        ctx.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE command enables it
    if cmd.changed_since is not None:
        since = cmd.changed_since
        picked = [(q, u) for q, u in picked if view.modseq(u) > since]
        if cmd.vanished:
            gone = await ctx.store.vanished_since(view.mailbox_id, ModSeq(since))
            largest = view.uidnext - 1
            gone = [u for u in gone if cmd.set.contains(u, largest)]
            if gone:
                ctx.send(r.vanished(gone, earlier=True))  # RFC 7162 §3.2.6
    need_rows = not names <= _VIEW_ONLY
    need_blob = not names.isdisjoint(_BLOB_ITEMS) or any(i.section is not None for i in items)
    rows_kind = _rows_kind(items) if need_rows else Rows.LIGHT
    seen_set: set[int] = set()
    if need_rows and not view.readonly and any(i.sets_seen for i in items):
        unseen = [
            Uid(u) for _, u in picked if "\\Seen" not in view.flags(u) and u not in view.expunged
        ]
        if unseen:
            changed, _ = await ctx.store.store_flags(
                view.mailbox_id, unseen, frozenset({"\\Seen"}), "add"
            )
            for row in changed:
                view.record_flags(row)
                view.flag_changes.discard(row.uid)
                seen_set.add(row.uid)
    if not need_rows:  # FLAGS, UID, MODSEQ: the view has them, nothing to read
        with_recent = not s.rev2
        for seq, uid in picked:
            ctx.send(r.fetch(seq, _view_items(view, items, uid, with_recent)))
            await ctx.maybe_drain()
        return ok("FETCH completed")
    response_names = [i.response_name() for i in items]  # once, not per message
    missing = False
    for start in range(0, len(picked), BATCH):
        chunk = picked[start : start + BATCH]
        rows = await _load(ctx, view, [u for _, u in chunk], rows_kind) if need_rows else {}
        # the chunk's message bytes in one store round trip, not one per message
        blobs = await ctx.store.read_blobs([m.blob_id for m in rows.values()]) if need_blob else {}
        for seq, uid in chunk:
            m: Message | None = rows.get(uid)
            if need_rows and m is None:
                missing = True
                continue
            try:
                out = await _items(
                    ctx, view, items, response_names, uid, m, need_blob, blobs, rows_kind
                )
            except NotFound:
                missing = True
                continue
            except _UnknownCte:
                return no("Unknown Content-Transfer-Encoding", r.UNKNOWN_CTE)
            if uid in seen_set and "FLAGS" not in names:
                out.append(("FLAGS", view.flags_of(uid, with_recent=not s.rev2)))
            if uid in seen_set and s.condstore:
                # RFC 7162 §3.1: an implicit \Seen change carries UID and MODSEQ
                if "UID" not in names:
                    out.append(("UID", uid))
                if "MODSEQ" not in names:
                    out.append(("MODSEQ", r.Raw(b"(%d)" % view.modseq(uid))))
            ctx.send_parts(r.fetch_parts(seq, out))
            await ctx.maybe_drain()
    if missing:
        return no("Some messages were expunged meanwhile", r.EXPUNGEISSUED)
    return ok("FETCH completed")


def _rows_kind(items: Sequence[p.FetchAtt]) -> Rows:
    """The lightest message rows that answer these items. Building each row's whole
    summary (structures, dates) cost a body FETCH more than sending the bytes."""
    if any(
        i.name in ("ENVELOPE", "BODYSTRUCTURE") or (i.name == "BODY" and i.section is None)
        for i in items
    ):
        return Rows.STRUCTURES
    if any(
        i.name in _HEADER_CUT
        or (i.section is not None and not i.section.part and i.section.text in ("HEADER", "TEXT"))
        for i in items
    ):
        return Rows.TEXT  # the summary's header_size, not a scan that a bodiless header fools
    return Rows.LIGHT


async def _load(
    ctx: Context, view: MailboxView, uids: Sequence[int], kind: Rows
) -> dict[int, Message]:
    """Rows of these UIDs (ascending): one range query when dense, else one by one."""
    if not uids:
        return {}
    lo, hi = uids[0], uids[-1]
    if hi - lo + 1 <= 4 * len(uids):
        rows = await ctx.store.list_messages(
            view.mailbox_id,
            lo,
            hi,
            summaries=kind is not Rows.LIGHT,
            structures=kind is Rows.STRUCTURES,
        )
        wanted = set(uids)
        return {m.uid: m for m in rows if m.uid in wanted}
    out: dict[int, Message] = {}
    for u in uids:
        m = await ctx.store.get_message(view.mailbox_id, Uid(u))
        if m is not None:
            out[u] = m
    return out


def _view_items(
    view: MailboxView, items: Sequence[p.FetchAtt], uid: int, with_recent: bool
) -> list[tuple[str, r.FetchValue]]:
    """UID, FLAGS and MODSEQ: what the view answers alone."""
    out: list[tuple[str, r.FetchValue]] = []
    for item in items:
        name = item.name
        if name == "UID":
            out.append(("UID", uid))
        elif name == "FLAGS":
            out.append(("FLAGS", view.flags_of(uid, with_recent=with_recent)))
        else:
            out.append(("MODSEQ", r.Raw(b"(%d)" % view.modseq(uid))))  # RFC 7162
    return out


def _mime_section(section: p.Section) -> mime.Section:
    text = SectionText(section.text) if section.text else None
    return mime.Section(section.part, text, section.fields)


async def _items(
    ctx: Context,
    view: MailboxView,
    items: Sequence[p.FetchAtt],
    response_names: Sequence[str],
    uid: int,
    m: Message | None,
    need_blob: bool,
    blobs: dict[BlobId, bytes],
    kind: Rows,
) -> list[tuple[str, r.FetchValue]]:
    s = ctx.session
    data = b""
    if need_blob:
        assert m is not None
        got = blobs.get(m.blob_id)
        data = got if got is not None else await ctx.store.read_blob(m.blob_id)
    root: mime.Part | None = None
    summary = m.summary if m is not None else None
    if kind is Rows.STRUCTURES and summary is not None and summary.bodystructure == b"NIL" and data:
        summary = mime.summarize(data)  # summary missing (intake failed): compute now
    out: list[tuple[str, r.FetchValue]] = []
    for item, response_name in zip(items, response_names, strict=True):
        name = item.name
        if name == "UID":
            out.append(("UID", uid))
        elif name == "FLAGS":
            out.append(("FLAGS", view.flags_of(uid, with_recent=not s.rev2)))
        elif name == "MODSEQ":
            out.append(("MODSEQ", r.Raw(b"(%d)" % view.modseq(uid))))  # RFC 7162
        else:
            assert m is not None
            assert summary is not None
            if name == "INTERNALDATE":
                out.append((name, m.internal_date))
            elif name == "RFC822.SIZE":
                out.append((name, m.size))
            elif name == "ENVELOPE":
                out.append((name, r.Raw(summary.envelope)))
            elif name == "BODYSTRUCTURE":
                out.append((name, r.Raw(summary.bodystructure)))
            elif name == "BODY" and item.section is None:
                out.append((name, r.Raw(summary.body)))
            elif name == "RFC822":
                out.append((name, data))
            elif name == "RFC822.HEADER":
                out.append((name, data[: _header_size(data, summary.header_size)]))
            elif name == "RFC822.TEXT":
                out.append((name, data[_header_size(data, summary.header_size) :]))
            else:
                section = item.section
                assert section is not None
                value: bytes | None
                size: int | None = len(data)
                if not section.part and section.text is None:
                    value = data  # the whole message: no copy
                elif not section.part and section.text in ("HEADER", "TEXT"):
                    hs = _header_size(data, summary.header_size)
                    value = data[:hs] if section.text == "HEADER" else data[hs:]
                else:
                    if root is None:
                        root = mime.parse(data)
                    value, size = _section(data, root, name, section)
                if name == "BINARY.SIZE":
                    out.append((response_name, size or 0))
                    continue
                if value is None:
                    value = b""
                if item.partial is not None:
                    value = mime.partial(value, item.partial[0], item.partial[1])
                if name == "BINARY":
                    out.append((response_name, r.Binary(value)))
                else:
                    out.append((response_name, value))
    return out


def _section(
    data: bytes, root: mime.Part, name: str, section: p.Section
) -> tuple[bytes | None, int | None]:
    try:
        if name == "BINARY":
            return mime.binary(data, root, section.part), None
        if name == "BINARY.SIZE":
            return None, mime.binary_size(data, root, section.part)
    except mime.UnknownEncoding:
        raise _UnknownCte from None
    return mime.extract(data, root, _mime_section(section)), None


def _header_size(data: bytes, cached: int) -> int:
    if 0 < cached <= len(data):
        return cached
    end = data.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else len(data)
