"""SEARCH / UID SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731), SEARCHRES (RFC
5182), CONDSTORE's MODSEQ key (RFC 7162 §3.1.5), WITHIN (RFC 5032); and SORT /
UID SORT (RFC 5256 §3, SORT=DISPLAY RFC 5957).

Rules:
- Flags, sizes, dates, UIDs and MODSEQ come from the view and the message rows;
  FROM, TO, CC and SUBJECT from the summary made at delivery (decoded text), so
  they never read a blob. BCC, HEADER, BODY and TEXT read the message: header
  fields are decoded (RFC 2047) and text parts are decoded from their transfer
  encoding and charset before matching.
- Matching is case-insensitive substring matching (RFC 9051 §6.4.4); dates compare
  days, disregarding time and zone; SENT* use the Date: header.
- The answer is ``* SEARCH`` for plain SEARCH, ``* ESEARCH (TAG ...)`` when RETURN
  was given (RFC 4731 §3.1; an empty RETURN () means ALL). SAVE keeps the result
  for ``$`` (RFC 5182 §2.4): only MIN and/or MAX of it when those are asked with
  SAVE, and without an ESEARCH response when SAVE is the only option.
- A search that names MODSEQ answers with the highest MODSEQ of the matches
  (RFC 7162 §3.1.5).
- No EXPUNGE is sent during SEARCH (RFC 9051 §7.5.1).
"""

from __future__ import annotations

import contextlib
import functools
import re
from datetime import UTC, date, datetime
from typing import Any

from postier import mime
from postier.imap import parse as p
from postier.imap import responses as r
from postier.imap.commands.context import Context, Result, bad, ok
from postier.imap.session import BadSequence, MailboxView
from postier.mime.encoding import UnknownEncoding, decode_charset, decode_transfer, header_text
from postier.store.models import Message


class _Msg:
    """One candidate message, loading what a key needs on demand."""

    __slots__ = ("_headers", "_root", "_text", "data", "m", "seq")

    def __init__(self, seq: int, m: Message) -> None:
        self.seq = seq
        self.m = m
        self.data: bytes | None = None
        self._root: mime.Part | None = None
        self._headers: dict[str, list[str]] | None = None
        self._text: str | None = None

    async def blob(self, ctx: Context) -> bytes:
        if self.data is None:
            self.data = await ctx.store.read_blob(self.m.blob_id)
        return self.data

    async def root(self, ctx: Context) -> mime.Part:
        if self._root is None:
            self._root = mime.parse(await self.blob(ctx))
        return self._root

    async def header(self, ctx: Context, name: str) -> list[str]:
        if self._headers is None:
            self._headers = {}
            for fname, value in (await self.root(ctx)).fields:
                self._headers.setdefault(fname.lower(), []).append(header_text(value))
        return self._headers.get(name.lower(), [])

    async def body_text(self, ctx: Context) -> str:
        """The decoded text of every text/* leaf part, lower-cased."""
        if self._text is None:
            data = await self.blob(ctx)
            chunks = []
            for part in (await self.root(ctx)).walk():
                if part.is_multipart or part.message is not None:
                    continue
                if part.maintype.lower() != "text" and part.content_type_given:
                    continue
                raw = data[part.body_start : part.body_end]
                with contextlib.suppress(UnknownEncoding):
                    raw = decode_transfer(raw, part.encoding)
                chunks.append(decode_charset(raw, part.param("charset")))
            self._text = "\n".join(chunks).lower()
        return self._text


def _day(d: datetime) -> date:
    return d.date()


async def _match(ctx: Context, view: MailboxView, key: p.SearchKey, msg: _Msg) -> bool:
    m = msg.m
    if isinstance(key, p.SearchAll):
        return True
    if isinstance(key, p.SearchAnd):
        for k in key.keys:
            if not await _match(ctx, view, k, msg):
                return False
        return True
    if isinstance(key, p.SearchOr):
        return await _match(ctx, view, key.left, msg) or await _match(ctx, view, key.right, msg)
    if isinstance(key, p.SearchNot):
        return not await _match(ctx, view, key.key, msg)
    if isinstance(key, p.SearchFlag):
        if key.flag == "\\Recent":
            return (m.uid in view.recent) == key.present
        has = key.flag in m.flags or (
            key.flag.startswith("\\") and key.flag.lower() in {f.lower() for f in m.flags}
        )
        return has == key.present
    if isinstance(key, p.SearchSet):
        if key.set.saved:
            return m.uid in ctx.session.saved
        if key.uid:
            return key.set.contains(m.uid, view.uids[-1] if view.uids else 0)
        return key.set.contains(msg.seq, view.exists)
    if isinstance(key, p.SearchSize):
        return m.size > key.size if key.op == "larger" else m.size < key.size
    if isinstance(key, p.SearchModSeq):
        return m.modseq >= key.modseq
    if isinstance(key, p.SearchAge):
        age = (datetime.now(UTC) - m.internal_date).total_seconds()
        return age >= key.seconds if key.op == "older" else age <= key.seconds
    if isinstance(key, p.SearchDate):
        if key.field == "internal":
            day = _day(m.internal_date)
        else:
            if m.summary.date is None:
                return False
            day = _day(m.summary.date)
        if key.op == "before":
            return day < key.value
        if key.op == "on":
            return day == key.value
        return day >= key.value
    if isinstance(key, p.SearchHeader):
        needle = key.value.lower()
        cached = {
            "from": m.summary.from_,
            "to": m.summary.to,
            "cc": m.summary.cc,
            "subject": m.summary.subject,
        }.get(key.header.lower())
        if cached is not None and key.value:
            return needle in cached.lower()
        values = await msg.header(ctx, key.header)
        if not key.value:
            return bool(values)  # RFC 9051 §6.4.4: HEADER name "" means "has the field"
        return any(needle in v.lower() for v in values)
    if isinstance(key, p.SearchText):
        needle = key.value.lower()
        if key.where == "text":
            header = (await msg.blob(ctx))[: m.summary.header_size or None]
            if needle in header_text(header.replace(b"\r\n", b" ")).lower():
                return True
        return needle in await msg.body_text(ctx)
    raise AssertionError(f"unknown search key {key!r}")  # pragma: no cover


def _needs_summary(key: p.SearchKey) -> bool:
    """Whether any part of `key` reads the message's header or text: flag, size,
    UID and internal-date searches (SEARCH UNSEEN, the common one) need only the
    messages table."""
    if isinstance(key, p.SearchAnd):
        return any(_needs_summary(k) for k in key.keys)
    if isinstance(key, p.SearchOr):
        return _needs_summary(key.left) or _needs_summary(key.right)
    if isinstance(key, p.SearchNot):
        return _needs_summary(key.key)
    if isinstance(key, p.SearchDate):
        return key.field != "internal"
    return isinstance(key, p.SearchHeader | p.SearchText)


def _uses_modseq(key: p.SearchKey) -> bool:
    if isinstance(key, p.SearchModSeq):
        return True
    if isinstance(key, p.SearchAnd):
        return any(_uses_modseq(k) for k in key.keys)
    if isinstance(key, p.SearchOr):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, p.SearchNot):
        return _uses_modseq(key.key)
    return False


async def run_search(ctx: Context, key: p.SearchKey, *, summaries: bool = False) -> list[_Msg]:
    """The messages matching `key`, ascending; with their summaries when the key or
    the caller (SORT, THREAD: subjects and dates) needs them."""
    view = ctx.session.view
    assert view is not None
    if view.exists == 0:
        return []
    rows = await ctx.store.list_messages(
        view.mailbox_id, view.uids[0], view.uids[-1], summaries=summaries or _needs_summary(key)
    )
    by_uid: dict[int, Message] = {m.uid: m for m in rows}
    out = []
    for seq, uid in enumerate(view.uids, 1):
        m = by_uid.get(uid)
        if m is None:
            continue  # expunged elsewhere, not announced: it matches nothing
        msg = _Msg(seq, m)
        if await _match(ctx, view, key, msg):
            out.append(msg)
        msg.data = None  # keep memory flat on TEXT searches over large mailboxes
        await ctx.maybe_drain()
    return out


async def search(ctx: Context, cmd: p.Search) -> Result:
    s = ctx.session
    view = s.view
    assert view is not None
    if _uses_modseq(cmd.key):
        s.enabled.add("CONDSTORE")
    try:
        found = await run_search(ctx, cmd.key)
    except BadSequence as e:
        return bad(str(e))
    ids = [m.m.uid if cmd.uid else m.seq for m in found]
    modseq = max((m.m.modseq for m in found), default=None) if _uses_modseq(cmd.key) else None
    if cmd.returns is None:
        ctx.send(r.search(ids, modseq))
        return ok("SEARCH completed")
    opts = set(cmd.returns) or {"ALL"}
    if "SAVE" in opts:
        saved = found
        if opts & {"MIN", "MAX"}:
            saved = list(
                (found[:1] if "MIN" in opts else []) + (found[-1:] if "MAX" in opts else [])
            )  # RFC 5182 §2.4
        s.saved = sorted({x.m.uid for x in saved})
        if opts == {"SAVE"}:
            return ok("SEARCH completed, result saved")
    ctx.send(
        r.esearch(
            cmd.tag,
            uid=cmd.uid,
            min=min(ids) if "MIN" in opts and ids else None,
            max=max(ids) if "MAX" in opts and ids else None,
            all=ids if "ALL" in opts else None,
            count=len(ids) if "COUNT" in opts else None,
            modseq=modseq,
        )
    )
    return ok("SEARCH completed")


def _sort_value(key: str, msg: _Msg) -> Any:
    s = msg.m.summary
    if key == "ARRIVAL":
        return msg.m.internal_date
    if key == "DATE":  # RFC 5256 §3: the Date: header, else the internal date
        return (s.date or msg.m.internal_date).astimezone(UTC)
    if key == "SIZE":
        return msg.m.size
    if key == "SUBJECT":
        return base_subject(s.subject)
    if key in ("FROM", "DISPLAYFROM"):
        return _address_key(s.from_, display=key == "DISPLAYFROM")
    if key in ("TO", "DISPLAYTO"):
        return _address_key(s.to, display=key == "DISPLAYTO")
    return _address_key(s.cc, display=False)  # CC


def _address_key(text: str, *, display: bool) -> str:
    """RFC 5256 §3: the first address's mailbox (or display name, RFC 5957)."""
    addrs = mime.parse_address_list(text)
    if not addrs:
        return ""
    a = addrs[0]
    if display and a.name:
        return mime.decode_words(a.name).lower()
    return (a.mailbox or "").lower()


# RFC 5256 §5 (subject extraction, after step 1 made every WSP run one space):
#   subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
#   subj-blob   = "[" *BLOBCHAR "]" *WSP
#   subj-leader = (*subj-blob subj-refwd) / WSP
_BLOB = r"\[[^\[\]]*\] *"
_SUBJ_BLOB = re.compile(_BLOB)
_SUBJ_REFWD = re.compile(rf"(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:", re.IGNORECASE)
_WSP_RUN = re.compile(r"[ \t\r\n]+")


def extract_base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1: the base subject of a decoded subject (case kept), and whether
    the subject is a reply or forward: whether extraction removed a subj-refwd, a
    "(fwd)" trailer or a "[fwd:" ... "]" wrapper (RFC 5256 §2.1, used by §3.2 step 5).
    A mailing-list "[blob]" alone does not make a reply."""
    s = _WSP_RUN.sub(" ", subject)  # (1) encoded-words were decoded at delivery
    reply = False
    while True:
        while True:  # (2) subj-trailer = "(fwd)" / WSP, repeated
            if s.endswith(" "):
                s = s[:-1]
            elif s[-5:].lower() == "(fwd)":
                s = s[:-5]
                reply = True
            else:
                break
        while True:  # (5) repeat (3) and (4)
            if s.startswith(" "):  # (3) subj-leader = WSP
                s = s[1:]
                continue
            m = _SUBJ_REFWD.match(s)  # (3) subj-leader = *subj-blob subj-refwd
            if m:
                s = s[m.end() :]
                reply = True
                continue
            m = _SUBJ_BLOB.match(s)  # (4) only if a non-empty subj-base remains
            if m and s[m.end() :].strip(" "):
                s = s[m.end() :]
                continue
            break
        if s[:5].lower() == "[fwd:" and s.endswith("]"):  # (6) then again from (2)
            s = s[5:-1]
            reply = True
            continue
        return s, reply


def base_subject(subject: str) -> str:
    """The RFC 5256 §2.1 base subject as a comparison key (case-insensitive)."""
    return extract_base_subject(subject)[0].lower()


async def sort(ctx: Context, cmd: p.Sort) -> Result:
    try:
        found = await run_search(ctx, cmd.key, summaries=True)
    except BadSequence as e:
        return bad(str(e))
    # RFC 5256 §3: ties are broken by sequence number; stable sorts from the last key
    found.sort(key=lambda x: x.seq)
    for crit in reversed(cmd.criteria):
        found.sort(key=functools.partial(_sort_value, crit.key), reverse=crit.reverse)
    ids = [m.m.uid if cmd.uid else m.seq for m in found]
    modseq = max((m.m.modseq for m in found), default=None) if _uses_modseq(cmd.key) else None
    ctx.send(r.sort(ids, modseq))
    return ok("SORT completed")
