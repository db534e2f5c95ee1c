"""An in-memory stand-in for `postier.store.api.Store`, holding only what an IMAP
session core needs for the tests in `test_core.py`: users, mailboxes, messages,
flags with MODSEQs, expunges and the change feed. Everything else is absent (an
AttributeError names the method), so a test that strays beyond it fails loudly.

Semantics follow the SQLite store's documented ones where the tests can see them:
UIDs and MODSEQs ascend per mailbox, each changed message gets its own MODSEQ,
\\Recent is never stored, expunged UIDs are remembered for VANISHED."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from postier.store.errors import NotFound
from postier.store.feed import ChangeHub, ChangeSubscription
from postier.store.models import (
    BlobId,
    Change,
    ChangeKind,
    Mailbox,
    MailboxId,
    MaildropItem,
    Message,
    MetaRow,
    ModSeq,
    NewMessage,
    Uid,
    User,
    UserId,
)


@dataclass
class _Box:
    mailbox: Mailbox
    messages: dict[Uid, Message] = field(default_factory=dict)
    expunged: dict[Uid, ModSeq] = field(default_factory=dict)


class MemoryStore:
    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._boxes: dict[MailboxId, _Box] = {}
        self._blobs: dict[BlobId, bytes] = {}
        self._ids = itertools.count(1)
        self._hub = ChangeHub()

    # --- set-up ---------------------------------------------------------------------------
    async def add_user(self, address: str, password_hash: str, quota_bytes: int = 0) -> User:
        user = User(
            UserId(next(self._ids)),
            address,
            address.split("@")[1],
            password_hash,
            quota_bytes,
            datetime.now(UTC),
        )
        self._users[address] = user
        await self.create_mailbox(user.id, "INBOX")
        return user

    async def close(self) -> None:
        self._hub.close_all()

    # --- what IMAP reads ------------------------------------------------------------------
    async def get_user(self, address: str) -> User | None:
        return self._users.get(address.lower())

    async def create_mailbox(
        self, user_id: UserId, name: str, special_use: str | None = None
    ) -> Mailbox:
        mid = MailboxId(next(self._ids))
        m = Mailbox(mid, user_id, name, special_use, True, 1000 + mid, 1, 1)
        self._boxes[mid] = _Box(m)
        return m

    def _current(self, box: _Box) -> Mailbox:
        msgs = box.messages.values()
        return replace(
            box.mailbox,
            messages=len(msgs),
            unseen=sum("\\Seen" not in m.flags for m in msgs),
            size=sum(m.size for m in msgs),
        )

    async def list_mailboxes(self, user_id: UserId) -> list[Mailbox]:
        boxes = (self._current(b) for b in self._boxes.values())
        return sorted((m for m in boxes if m.user_id == user_id), key=lambda m: m.name)

    async def get_mailbox(self, user_id: UserId, name: str) -> Mailbox | None:
        if name.upper() == "INBOX":
            name = "INBOX"
        for m in await self.list_mailboxes(user_id):
            if m.name == name:
                return m
        return None

    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None:
        box = self._boxes.get(mailbox_id)
        return self._current(box) if box is not None else None

    async def list_subscriptions(self, user_id: UserId) -> list[str]:
        return [m.name for m in await self.list_mailboxes(user_id) if m.subscribed]

    async def quota_usage(self, user_id: UserId) -> tuple[int, int]:
        used = sum(m.size for m in await self.list_mailboxes(user_id))
        return used, 0

    def _box(self, mailbox_id: MailboxId) -> _Box:
        box = self._boxes.get(mailbox_id)
        if box is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return box

    async def list_messages(
        self,
        mailbox_id: MailboxId,
        uid_min: int = 1,
        uid_max: int | None = None,
        *,
        summaries: bool = True,
        structures: bool = True,
    ) -> list[Message]:
        box = self._box(mailbox_id)
        top = uid_max if uid_max is not None else 2**32
        return [m for u, m in sorted(box.messages.items()) if uid_min <= u <= top]

    async def list_meta(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[MetaRow]:
        out: list[MetaRow] = []
        for m in await self.list_messages(mailbox_id, uid_min, uid_max):
            us = (m.internal_date - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            s = m.summary
            out.append((m.uid, m.size, us, s.envelope, s.bodystructure, s.body))
        return out

    async def list_bodies(
        self, mailbox_id: MailboxId, uid_min: int, uid_max: int
    ) -> list[tuple[Uid, bytes]]:
        rows = await self.list_messages(mailbox_id, uid_min, uid_max, summaries=False)
        return [(m.uid, self._blobs[m.blob_id]) for m in rows if m.blob_id in self._blobs]

    async def maildrop(self, mailbox_id: MailboxId) -> list[MaildropItem]:
        box = self._box(mailbox_id)
        return [
            MaildropItem(u, m.blob_id, m.summary.crlf_size, "\\Seen" in m.flags)
            for u, m in sorted(box.messages.items())
        ]

    async def list_flags(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[tuple[Uid, ModSeq, frozenset[str]]]:
        rows = await self.list_messages(mailbox_id, uid_min, uid_max, summaries=False)
        return [(m.uid, m.modseq, m.flags) for m in rows]

    async def search_headers(
        self, mailbox_id: MailboxId, needle: str, fields: Sequence[str]
    ) -> list[Uid]:
        """The contract's answer, by a scan of the summaries."""
        folded = needle.casefold()
        out = []
        for uid, m in sorted(self._box(mailbox_id).messages.items()):
            s = m.summary
            text = {"from": s.from_, "to": s.to, "cc": s.cc, "bcc": s.bcc, "subject": s.subject}
            if any(folded in text[f].casefold() for f in fields):
                out.append(uid)
        return out

    async def get_message(self, mailbox_id: MailboxId, uid: Uid) -> Message | None:
        return self._box(mailbox_id).messages.get(uid)

    async def get_messages(
        self, mailbox_id: MailboxId, uids: Sequence[Uid], *, structures: bool = True
    ) -> list[Message]:
        got = self._box(mailbox_id).messages
        return [got[u] for u in sorted(set(uids)) if u in got]

    async def read_blob(self, blob_id: BlobId) -> bytes:
        if blob_id not in self._blobs:
            raise NotFound(f"no blob {blob_id}")
        return self._blobs[blob_id]

    async def read_blobs(self, blob_ids: Sequence[BlobId]) -> dict[BlobId, bytes]:
        return {b: self._blobs[b] for b in blob_ids if b in self._blobs}

    async def blob_path(self, blob_id: BlobId) -> Path | None:
        return None

    async def changed_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Message]:
        return [m for m in await self.list_messages(mailbox_id) if m.modseq > modseq]

    async def vanished_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Uid]:
        return sorted(u for u, ms in self._box(mailbox_id).expunged.items() if ms > modseq)

    def subscribe(self, user_id: UserId) -> ChangeSubscription:
        return self._hub.subscribe(user_id)

    # --- what IMAP writes -----------------------------------------------------------------
    def _modseq(self, box: _Box) -> ModSeq:
        m = box.mailbox
        box.mailbox = replace(m, highestmodseq=m.highestmodseq + 1)
        return ModSeq(box.mailbox.highestmodseq)

    def _publish(self, box: _Box, kind: ChangeKind, uid: Uid, modseq: ModSeq) -> None:
        m = box.mailbox
        self._hub.publish([Change(m.user_id, m.id, kind, uid, modseq)])

    async def append(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Message:
        data = message.data  # the store never parses: the summary comes with it
        raw = message.head + (data.read_bytes()[message.skip :] if isinstance(data, Path) else data)
        box = self._box(mailbox_id)
        uid = Uid(box.mailbox.uidnext)
        box.mailbox = replace(box.mailbox, uidnext=uid + 1)
        blob = BlobId(f"b{next(self._ids)}")
        self._blobs[blob] = raw
        msg = Message(
            mailbox_id,
            uid,
            self._modseq(box),
            frozenset(f for f in flags if f.lower() != "\\recent"),
            internal_date or datetime.now(UTC),
            len(raw),
            blob,
            message.summary,
        )
        box.messages[uid] = msg
        self._publish(box, ChangeKind.EXISTS, uid, msg.modseq)
        return msg

    async def store_flags(
        self,
        mailbox_id: MailboxId,
        uids: Sequence[Uid],
        flags: frozenset[str],
        mode: str,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> tuple[list[Message], list[Uid]]:
        box = self._box(mailbox_id)
        changed: list[Message] = []
        refused: list[Uid] = []
        for uid in sorted(set(uids)):
            m = box.messages.get(uid)
            if m is None:
                continue
            if unchanged_since is not None and m.modseq > unchanged_since:
                refused.append(uid)
                continue
            new = {"add": m.flags | flags, "remove": m.flags - flags}.get(mode, flags)
            if new == m.flags:
                continue
            m = replace(m, flags=frozenset(new), modseq=self._modseq(box))
            box.messages[uid] = m
            changed.append(m)
            self._publish(box, ChangeKind.FLAGS, uid, m.modseq)
        return changed, refused

    async def expunge(
        self, mailbox_id: MailboxId, uids: Sequence[Uid] | None = None, *, flagged_only: bool = True
    ) -> list[Uid]:
        box = self._box(mailbox_id)
        gone = [
            u
            for u, m in sorted(box.messages.items())
            if (uids is None or u in uids) and (not flagged_only or "\\Deleted" in m.flags)
        ]
        for u in gone:
            del box.messages[u]
            box.expunged[u] = self._modseq(box)
            self._publish(box, ChangeKind.EXPUNGE, u, box.expunged[u])
        return gone
