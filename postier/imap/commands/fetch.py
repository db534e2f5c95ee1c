"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2) with BINARY (RFC 3516), MODSEQ,
CHANGEDSINCE (RFC 7162 §3.1.4) and VANISHED (RFC 7162 §3.2.6).

Rules:
- ENVELOPE, BODYSTRUCTURE and BODY come pre-serialised from the message summary
  computed at delivery; FLAGS, UID and MODSEQ from the session's view. Message
  rows are read from the store in UID-range batches; a blob is read only for body
  sections, and parsed only for sections below the top level.
- A FETCH of whole messages (BODY[], BODY.PEEK[], RFC822) with at most UID,
  FLAGS and MODSEQ beside reads each batch's bytes with `Store.list_bodies`: one
  round trip, no `Message` per row.
- A FETCH of metadata items alone (`_META_ITEMS`: what a client's header list
  asks) reads plain rows (`Store.list_meta`) in large batches and formats each
  response with one %-format of the stored bytes: no `Message` per row, one
  queued piece per batch.
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

import asyncio
import enum
import operator
from collections.abc import Callable, Sequence

from postier import mime
from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, bad, no, ok
from postier.imap.matcher import in_search_thread
from postier.imap.session import BadSequence, MailboxView
from postier.mime.sections import SectionText
from postier.offload import INLINE_MAX
from postier.store.errors import NotFound
from postier.store.models import BlobId, Message, MetaRow, ModSeq, Uid

#: messages whose rows are loaded from the store at once
BATCH = 50  # messages per store round trip (their bytes are held at once)
_VIEW_ONLY = frozenset({"UID", "FLAGS", "MODSEQ"})
_BLOB_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE"})
#: items that cut the message at its header's end (the summary's header_size)
_HEADER_CUT = frozenset({"RFC822.HEADER", "RFC822.TEXT"})
#: items answered by the view and `Store.list_meta` alone (BODY without a section)
_META_ITEMS = frozenset(
    {"UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE", "BODY"}
)
#: messages per `list_meta` round trip (rows of about a kilobyte each)
META_BATCH = 1000
#: items one FETCH may ask for (clients ask a dozen at most); more is NO [LIMIT]:
#: each is answered for every message, and 6,000 FLAGS items over 2,000 messages
#: held the loop 2.2 s, 3,000 BODY.PEEK[1]<0.1> over 50 messages 0.3 s
MAX_ITEMS = 256
#: the tagged OK (a `Result` is immutable: one for every FETCH)
_COMPLETED = ok("FETCH completed")


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
    if len(cmd.items) > MAX_ITEMS:
        return no("Too many fetch items", r.LIMIT)
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
    if names <= _VIEW_ONLY:  # FLAGS, UID, MODSEQ: the view has them, nothing to read
        await _fetch_view(ctx, view, picked, items, with_recent=not s.rev2)
        return _COMPLETED
    need_blob = not names.isdisjoint(_BLOB_ITEMS) or any(i.section is not None for i in items)
    rows_kind = _rows_kind(items)
    seen_set: set[int] = set()
    if not view.readonly and any(i.sets_seen for i in items):
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
    if all(i.name in _META_ITEMS and i.section is None and i.partial is None for i in items):
        if await _fetch_meta(ctx, view, picked, items, with_recent=not s.rev2):
            return no("Some messages were expunged meanwhile", r.EXPUNGEISSUED)
        return _COMPLETED
    if not seen_set and all(i.name in _VIEW_ONLY or _whole_message(i) for i in items):
        if await _fetch_bodies(ctx, view, picked, items, with_recent=not s.rev2):
            return no("Some messages were expunged meanwhile", r.EXPUNGEISSUED)
        return _COMPLETED
    response_names = [i.response_name() for i in items]  # once, not per message
    missing = False
    for start in range(0, len(picked), BATCH):
        chunk = picked[start : start + BATCH]
        rows = await _load(ctx, view, [u for _, u in chunk], rows_kind)
        # the chunk's message bytes in one store round trip, not one per message
        blobs = await ctx.store.read_blobs([m.blob_id for m in rows.values()]) if need_blob else {}
        for seq, uid in chunk:
            m: Message | None = rows.get(uid)
            if m is None:
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
            await ctx.maybe_drain(len(items))
    if missing:
        return no("Some messages were expunged meanwhile", r.EXPUNGEISSUED)
    return _COMPLETED


# --- view items alone ---------------------------------------------------------------------
async def _fetch_view(
    ctx: Context,
    view: MailboxView,
    picked: Sequence[tuple[int, int]],
    items: Sequence[p.FetchAtt],
    *,
    with_recent: bool,
) -> None:
    """Answer a FETCH of UID, FLAGS and MODSEQ alone (`_VIEW_ONLY`): each response is
    one %-format (the bytes `responses.fetch` makes of `_view_items`)."""
    names = tuple([i.name for i in items])
    line = _VIEW_FORMATS.get(names) or _view_format(names)
    recent = view.recent if with_recent else ()
    for seq, uid in picked:
        modseqs, flag_sets = view.by_seq()  # again after every await
        values: list[object] = [seq]
        for name in names:
            if name == "UID":
                values.append(uid)
            elif name == "FLAGS":
                f = flag_sets[seq - 1]
                if uid in recent:
                    f = f | {"\\Recent"}
                values.append(r.flag_list(f))
            else:
                values.append(modseqs[seq - 1])
        ctx.send(line % tuple(values))
        await ctx.maybe_drain(len(names))


#: `_fetch_view`'s formats by item names, for up to three items (39 formats at most)
_VIEW_FORMATS: dict[tuple[str, ...], bytes] = {}


def _view_format(names: tuple[str, ...]) -> bytes:
    fmt = [b"* %d FETCH ("]
    for n, name in enumerate(names):
        sep = b" " if n else b""
        if name == "UID":
            fmt.append(sep + b"UID %d")
        elif name == "FLAGS":
            fmt.append(sep + b"FLAGS %s")
        else:
            fmt.append(sep + b"MODSEQ (%d)")  # RFC 7162
    fmt.append(b")\r\n")
    line = b"".join(fmt)
    if len(names) <= 3:
        _VIEW_FORMATS[names] = line
    return line


# --- metadata items alone -----------------------------------------------------------------
# Each message's response is ``fmt % pick(values)`` where values is the store's row
# followed by what the view and the renderers add; `_meta_plan` works out the format
# and the positions once per command.
_ROW_AT = {"RFC822.SIZE": 1, "ENVELOPE": 3, "BODYSTRUCTURE": 4, "BODY": 5}
_SEQ, _FLAGS, _MODSEQ, _DATE = 6, 7, 8, 9  # after the row's six columns
_UID = 0
_STRUCTURES = frozenset({"ENVELOPE", "BODYSTRUCTURE", "BODY"})


def _meta_plan(
    items: Sequence[p.FetchAtt],
) -> tuple[bytes, Callable[[tuple[object, ...]], tuple[object, ...]]]:
    fmt = [b"* %d FETCH ("]
    at = [_SEQ]
    for n, item in enumerate(items):
        name = item.name
        sep = b" " if n else b""
        if name == "UID":
            fmt.append(sep + b"UID %d")
            at.append(_UID)
        elif name == "FLAGS":
            fmt.append(sep + b"FLAGS %s")
            at.append(_FLAGS)
        elif name == "MODSEQ":
            fmt.append(sep + b"MODSEQ (%d)")  # RFC 7162
            at.append(_MODSEQ)
        elif name == "INTERNALDATE":
            fmt.append(sep + b"INTERNALDATE %s")
            at.append(_DATE)
        elif name == "RFC822.SIZE":
            fmt.append(sep + b"RFC822.SIZE %d")
            at.append(_ROW_AT[name])
        else:
            fmt.append(sep + name.encode("ascii") + b" %s")
            at.append(_ROW_AT[name])
    fmt.append(b")\r\n")
    return b"".join(fmt), operator.itemgetter(*at)


async def _fetch_meta(
    ctx: Context,
    view: MailboxView,
    picked: Sequence[tuple[int, int]],
    items: Sequence[p.FetchAtt],
    *,
    with_recent: bool,
) -> bool:
    """Answer a FETCH of `_META_ITEMS` alone; True when some messages were gone.

    The next batch's rows are read while this one is formatted: the query runs in
    the store's reader thread (SQLite lets go of the GIL while it walks its
    B-trees), so on two cores the two overlap. At most two batches are held."""
    names = {i.name for i in items}
    fmt, pick = _meta_plan(items)
    want_flags, want_modseq = "FLAGS" in names, "MODSEQ" in names
    want_date = "INTERNALDATE" in names
    want_structures = not names.isdisjoint(_STRUCTURES)
    recent = view.recent if with_recent else ()
    lists: dict[frozenset[str], bytes] = {}  # flag set -> flag list, for this command
    missing = False
    chunks = [picked[i : i + META_BATCH] for i in range(0, len(picked), META_BATCH)]
    step = max(1, META_BATCH // len(items))  # messages formatted between two awaits
    ahead: asyncio.Task[list[MetaRow]] | None = None
    try:
        for k, chunk in enumerate(chunks):
            if ahead is None:
                rows = await _load_meta(ctx, view, chunk)
            else:
                rows, ahead = await ahead, None
            if k + 1 < len(chunks):
                ahead = asyncio.create_task(_load_meta(ctx, view, chunks[k + 1]))
            if want_structures and any(row[4] == b"NIL" for row in rows):
                rows = [
                    got
                    for row in rows
                    if (got := await _summarized(ctx, view, row) if row[4] == b"NIL" else row)
                ]
            modseqs, flag_sets = view.by_seq()  # no await below, until the batch is queued
            out: list[bytes] = []
            j, n = 0, len(rows)
            for seq, uid in chunk:
                # both ascend by UID: walk the rows alongside (a row gone, or one
                # not in the view, is passed by)
                while j < n and rows[j][0] < uid:
                    j += 1
                if j == n or rows[j][0] != uid:
                    missing = True
                    continue
                row = rows[j]
                flags = b""
                if want_flags:
                    f = flag_sets[seq - 1]
                    if uid in recent:
                        f = f | {"\\Recent"}
                    flags = lists.get(f) or lists.setdefault(f, r.flag_list(f))
                extra = (
                    seq,
                    flags,
                    modseqs[seq - 1] if want_modseq else 0,
                    r.date_time_us(row[2]) if want_date else b"",
                )
                out.append(fmt % pick(row + extra))
                if len(out) >= step:  # many items: the loop gets turns within a batch
                    ctx.send(b"".join(out))
                    out = []
                    await ctx.maybe_drain(step * len(items))
                    modseqs, flag_sets = view.by_seq()  # again after an await
            if out:
                ctx.send(b"".join(out))
                await ctx.maybe_drain(len(out) * len(items))
    finally:
        if ahead is not None:  # the client left, or the store failed: read no further
            ahead.cancel()
            if ahead.done() and not ahead.cancelled():
                ahead.exception()  # its failure is nobody's now: not logged as unretrieved
    return missing


async def _load_meta(
    ctx: Context, view: MailboxView, chunk: Sequence[tuple[int, int]]
) -> list[MetaRow]:
    """The rows of these (seq, UID) pairs (ascending): one range query when they
    are dense, else one per run of consecutive sequence numbers (the UIDs between
    two neighbours in the view are theirs alone)."""
    lo, hi = chunk[0][1], chunk[-1][1]
    if hi - lo + 1 <= 4 * len(chunk):
        return await ctx.store.list_meta(view.mailbox_id, lo, hi)
    rows: list[MetaRow] = []
    first = prev = chunk[0]
    for pair in (*chunk[1:], None):
        if pair is not None and pair[0] == prev[0] + 1:
            prev = pair
            continue
        rows += await ctx.store.list_meta(view.mailbox_id, first[1], prev[1])
        if pair is not None:
            first = prev = pair
    return rows


async def _summarized(ctx: Context, view: MailboxView, row: MetaRow) -> MetaRow | None:
    """A row whose summary intake could not compute: worked out from the bytes now
    (None when the message is gone)."""
    m = await ctx.store.get_message(view.mailbox_id, row[0])
    if m is None:
        return None
    try:
        data = await ctx.store.read_blob(m.blob_id)
    except NotFound:
        return None
    if not data:
        return row
    s = (
        mime.summarize(data)
        if len(data) <= INLINE_MAX
        else await in_search_thread(mime.summarize, data)
    )
    return (row[0], row[1], row[2], s.envelope, s.bodystructure, s.body)


# --- whole messages --------------------------------------------------------------------
def _whole_message(item: p.FetchAtt) -> bool:
    """BODY[] (or BODY.PEEK[]) and RFC822: the message's bytes as they are."""
    if item.name == "RFC822":
        return True
    s = item.section
    return (
        item.name == "BODY"
        and s is not None
        and not s.part
        and s.text is None
        and item.partial is None
    )


async def _fetch_bodies(
    ctx: Context,
    view: MailboxView,
    picked: Sequence[tuple[int, int]],
    items: Sequence[p.FetchAtt],
    *,
    with_recent: bool,
) -> bool:
    """Answer a FETCH of whole messages (and view items); True when some messages
    were gone. Each message's bytes are a piece of their own (`fetch_parts`)."""
    names = [i.response_name() for i in items]
    missing = False
    for start in range(0, len(picked), BATCH):
        chunk = picked[start : start + BATCH]
        lo, hi = chunk[0][1], chunk[-1][1]
        if hi - lo + 1 <= 4 * len(chunk):
            got = await ctx.store.list_bodies(view.mailbox_id, lo, hi)
        else:  # sparse: one message at a time
            got = []
            for _, u in chunk:
                got += await ctx.store.list_bodies(view.mailbox_id, u, u)
        bodies: dict[int, bytes] = dict(got)
        for seq, uid in chunk:
            data = bodies.get(uid)
            if data is None:
                missing = True
                continue
            out: list[tuple[str, r.FetchValue]] = []
            for item, name in zip(items, names, strict=True):
                if item.name in _VIEW_ONLY:
                    out += _view_items(view, (item,), uid, with_recent)
                else:
                    out.append((name, data))
            ctx.send_parts(r.fetch_parts(seq, out))
            await ctx.maybe_drain(len(items))
    return missing


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
        # summary missing (intake failed): compute now, off the loop unless small
        if len(data) <= INLINE_MAX:
            summary = mime.summarize(data)
        else:
            summary = await in_search_thread(mime.summarize, data)
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
                    value, size, root = await _part_section(data, root, name, section)
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


async def _part_section(
    data: bytes, root: mime.Part | None, name: str, section: p.Section
) -> tuple[bytes | None, int | None, mime.Part]:
    """`_section` of a part below the top level (or of header fields), with the
    message parsed first if `root` is None; the root is handed back for the
    message's next item. Off the loop (a search thread) for more than
    `INLINE_MAX` octets: the parse is linear in the message, but 100,000 header
    fields or 50,000 parts took 430 ms, and BINARY of a 9 MB base64 part 30 ms."""
    if len(data) <= INLINE_MAX:
        return _parse_section(data, root, name, section)
    return await in_search_thread(_parse_section, data, root, name, section)


def _parse_section(
    data: bytes, root: mime.Part | None, name: str, section: p.Section
) -> tuple[bytes | None, int | None, mime.Part]:
    if root is None:
        root = mime.parse(data)
    value, size = _section(data, root, name, section)
    return value, size, root


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
