"""Moving a user's mail in and out: Maildir trees and mbox files ↔ the store.

What it owns: `import_source` (Maildir tree, one mbox file, or a directory of
mbox files → a user's mailboxes) and `export_maildir` (a user's mailboxes → a
Maildir++ tree), with their counts and progress callbacks. File formats live in
`maildir.py` and `mbox.py`; this module only talks to the `Store`.

Rules:
- Folders map to mailboxes of the same name (INBOX to INBOX, ``Work/2024`` to
  ``Work/2024``), under ``--folder F`` when given (INBOX then goes to ``F``
  itself). Missing mailboxes are created with their parents; each mailbox that
  receives messages and did not exist before is subscribed (RFC 9051 §6.3.7),
  as a client that shows subscribed folders only would otherwise hide it.
- No duplicates: a message whose exact bytes (after the CRLF conversion) are
  already in the target mailbox is skipped, so importing the same source twice,
  or a source that overlaps what the user has, adds each message once. The
  identity is the SHA-256 of the bytes; existing messages are hashed lazily, only
  those whose size equals an incoming message's (one read of each at most).
  A message the user deleted since is imported again (there is no memory of it).
- Each message is stored with `Store.append`: durable when counted as imported.
  A failure of one message (unreadable file, over the size limit, quota) is
  counted and reported, and the import goes on; nothing half-stored is left.
- Export writes the store's bytes unchanged, so export → import is byte-identical
  and keeps flags (including keywords), folders and internal dates. The target
  directory must be empty or missing: an export never mixes with other files.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from postier.mime.summary import summarize
from postier.ops import maildir, mbox
from postier.store.api import Store
from postier.store.errors import Conflict, StoreError
from postier.store.models import BlobId, Mailbox, MailboxId, NewMessage, User

#: progress(done, total) after each message
Progress = Callable[[int, int], None]


class MigrateError(Exception):
    """The source or target cannot be used at all; the message says why."""


@dataclass
class Summary:
    imported: int = 0
    duplicates: int = 0
    failed: int = 0
    exported: int = 0
    folders: dict[str, int] = field(default_factory=dict)  # mailbox → messages handled
    errors: list[str] = field(default_factory=list)  # one line per failed message
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "exported": self.exported,
            "folders": dict(self.folders),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class SourceMessage:
    """One message to import; the bytes are read only when it is its turn."""

    folder: str
    origin: str  # for error lines: a path, or "file.mbox#12"
    flags: frozenset[str]
    internal_date: datetime | None
    size: int  # known size (for the limit and the duplicate check); -1 if unknown
    path: Path | None = None  # a Maildir file
    data: bytes | None = None  # an mbox message, already read


def target_name(folder: str, under: str | None) -> str:
    if not under:
        return folder
    under = under.strip("/")
    return under if folder == "INBOX" else f"{under}/{folder}"


# --- sources -----------------------------------------------------------------------


def maildir_source(root: Path, *, max_depth: int = 16) -> list[SourceMessage]:
    """Every message of a Maildir tree (stat only; bytes are read later)."""
    out: list[SourceMessage] = []
    for folder in maildir.find_folders(root, max_depth=max_depth):
        for m in maildir.list_messages(folder):
            out.append(
                SourceMessage(m.folder, str(m.path), m.flags, m.internal_date, m.size, path=m.path)
            )
    return out


def mbox_source(path: Path, folder: str, *, max_message_size: int) -> Iterator[SourceMessage | str]:
    """The messages of one mbox file; a str is the error line of a skipped one."""
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    with open(path, "rb") as f:
        try:
            for item in mbox.read_mbox(f, max_message_size=max_message_size):
                if isinstance(item, mbox.Oversized):
                    yield (
                        f"{path}#{item.index}: {item.size} bytes or more, over the "
                        f"limit of {max_message_size}"
                    )
                    continue
                yield SourceMessage(
                    folder,
                    f"{path}#{item.index}",
                    item.flags,
                    item.internal_date or mtime,
                    len(item.data),
                    data=item.data,
                )
        except mbox.MboxError as e:
            raise MigrateError(f"{path}: {e}") from None


def mbox_dir_folders(root: Path) -> list[tuple[Path, str]]:
    """A directory of mbox files (mutt's ~/Mail, Thunderbird's profile): each file
    that starts with "From " is a folder named by its relative path; Thunderbird's
    ``X.sbd`` directories hold the children of ``X``."""
    found: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not mbox.is_mbox(path):
            continue
        parts = [p[:-4] if p.endswith(".sbd") else p for p in path.relative_to(root).parts]
        if parts[-1].endswith(".mbox"):
            parts[-1] = parts[-1][:-5]
        name = "/".join(parts)
        found.append((path, "INBOX" if name.upper() == "INBOX" else name))
    return found


def detect(source: Path) -> str:
    """ "maildir", "mbox" (one file) or "mbox-dir"; MigrateError if none."""
    if source.is_file():
        if mbox.is_mbox(source):
            return "mbox"
        raise MigrateError(f"{source}: not an mbox file (no 'From ' line at the top)")
    if not source.is_dir():
        raise MigrateError(f"{source}: no such file or directory")
    try:
        maildir.find_folders(source)
        return "maildir"
    except maildir.MaildirError:
        pass
    if mbox_dir_folders(source):
        return "mbox-dir"
    raise MigrateError(f"{source}: neither a Maildir tree nor mbox files")


# --- the store side ----------------------------------------------------------------


class _Seen:
    """Content hashes of one mailbox's messages, computed lazily by size."""

    def __init__(self, store: Store, mailbox_id: MailboxId) -> None:
        self.store = store
        self.mailbox_id = mailbox_id
        self._by_size: dict[int, list[BlobId]] | None = None  # size → blob ids not hashed
        self.hashes: set[str] = set()

    async def contains(self, data: bytes) -> tuple[bool, str]:
        digest = hashlib.sha256(data).hexdigest()
        if self._by_size is None:
            self._by_size = {}
            for m in await self.store.list_messages(self.mailbox_id):
                self._by_size.setdefault(m.size, []).append(m.blob_id)
        for blob_id in self._by_size.pop(len(data), []):
            blob = await self.store.read_blob(blob_id)
            self.hashes.add(hashlib.sha256(blob).hexdigest())
        return digest in self.hashes, digest


class Importer:
    """Imports `SourceMessage`s for one user; reusable across sources."""

    def __init__(
        self,
        store: Store,
        user: User,
        *,
        max_message_size: int = 50 * 1024 * 1024,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.user = user
        self.max_message_size = max_message_size
        self.progress = progress
        self.summary = Summary()
        self._mailboxes: dict[str, Mailbox] = {}
        self._seen: dict[MailboxId, _Seen] = {}

    async def mailbox(self, name: str) -> Mailbox:
        mb = self._mailboxes.get(name)
        if mb is not None:
            return mb
        mb = await self.store.get_mailbox(self.user.id, name)
        if mb is None:
            try:
                mb = await self.store.create_mailbox(self.user.id, name)
                # a folder the user cannot see in a client that lists subscribed
                # folders only (most do by default) looks like lost mail
                await self.store.set_subscribed(self.user.id, name, True)
            except Conflict:  # created meanwhile (a client, another import)
                mb = await self.store.get_mailbox(self.user.id, name)
                if mb is None:
                    raise
        self._mailboxes[name] = mb
        return mb

    async def add(self, msg: SourceMessage, under: str | None = None) -> None:
        s = self.summary
        name = target_name(msg.folder, under)
        if msg.size > self.max_message_size:
            s.failed += 1
            s.errors.append(
                f"{msg.origin}: {msg.size} bytes, over the limit of {self.max_message_size}"
            )
            return
        try:
            if msg.data is not None:
                data = msg.data
            else:
                assert msg.path is not None
                data = await asyncio.to_thread(maildir.read_message, msg.path)
        except OSError as e:
            s.failed += 1
            s.errors.append(f"{msg.origin}: {e.strerror or e}")
            return
        if len(data) > self.max_message_size:  # grown by the CRLF conversion
            s.failed += 1
            s.errors.append(
                f"{msg.origin}: {len(data)} bytes, over the limit of {self.max_message_size}"
            )
            return
        try:
            mb = await self.mailbox(name)
        except StoreError as e:
            s.failed += 1
            s.errors.append(f"{msg.origin}: mailbox {name!r}: {e}")
            return
        seen = self._seen.setdefault(mb.id, _Seen(self.store, mb.id))
        s.folders.setdefault(name, 0)
        present, digest = await seen.contains(data)
        if present:
            s.duplicates += 1
            return
        try:
            summary = await asyncio.to_thread(summarize, data)
            await self.store.append(mb.id, NewMessage(data, summary), msg.flags, msg.internal_date)
        except StoreError as e:  # quota, a flag the store refuses
            s.failed += 1
            s.errors.append(f"{msg.origin}: {e}")
            return
        seen.hashes.add(digest)
        s.imported += 1
        s.folders[name] += 1

    async def run(
        self,
        messages: list[SourceMessage],
        under: str | None = None,
        *,
        done: int = 0,
        total: int | None = None,
    ) -> None:
        total = len(messages) if total is None else total
        for i, msg in enumerate(messages, 1):
            await self.add(msg, under)
            if self.progress is not None:
                self.progress(done + i, total)


async def import_source(
    store: Store,
    user: User,
    source: Path,
    *,
    folder: str | None = None,
    max_message_size: int = 50 * 1024 * 1024,
    progress: Progress | None = None,
) -> Summary:
    """Import a Maildir tree, an mbox file or a directory of mbox files."""
    kind = detect(source)
    imp = Importer(store, user, max_message_size=max_message_size, progress=progress)
    if kind == "maildir":
        messages = await asyncio.to_thread(maildir_source, source)
        await imp.run(messages, folder)
        return imp.summary
    files = [(source, "INBOX")] if kind == "mbox" else mbox_dir_folders(source)
    done = 0
    for path, name in files:
        batch: list[SourceMessage] = []
        for item in mbox_source(path, name, max_message_size=max_message_size):
            if isinstance(item, str):
                imp.summary.failed += 1
                imp.summary.errors.append(item)
            else:
                batch.append(item)
        # an mbox has no count before it is read: progress counts per file
        await imp.run(batch, folder, done=done, total=done + len(batch))
        done += len(batch)
    return imp.summary


def _unusable(target: Path) -> bool:
    return target.exists() and (not target.is_dir() or any(target.iterdir()))


async def export_maildir(
    store: Store, user: User, target: Path, *, hostname: str, progress: Progress | None = None
) -> Summary:
    """Write every mailbox of `user` as a Maildir++ tree at `target`."""
    if await asyncio.to_thread(_unusable, target):
        raise MigrateError(f"{target}: exists and is not an empty directory")
    summary = Summary()
    writer = maildir.MaildirWriter(target, hostname)
    boxes = await store.list_mailboxes(user.id)
    total = sum(b.messages for b in boxes)
    done = 0
    for box in boxes:
        folder = await asyncio.to_thread(writer.folder, box.name)
        summary.folders[box.name] = 0
        for m in await store.list_messages(box.id):
            data = await store.read_blob(m.blob_id)
            await asyncio.to_thread(writer.write, folder, data, m.flags, m.internal_date)
            summary.exported += 1
            summary.folders[box.name] += 1
            done += 1
            if progress is not None:
                progress(done, max(total, done))
        await asyncio.to_thread(writer.finish_folder, folder)
    await asyncio.to_thread(writer.write_subscriptions, [b.name for b in boxes if b.subscribed])
    for kw in sorted(writer.unrepresentable):
        summary.warnings.append(
            f"keyword {kw!r} not kept: a Maildir folder names at most "
            f"{maildir.MAX_KEYWORD_LETTERS} keywords"
        )
    return summary
