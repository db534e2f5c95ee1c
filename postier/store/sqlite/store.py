"""`SqliteStore`: the embedded `store.api.Store` backend (one SQLite file + blob files).

Layout under `data_dir`: ``postier.db`` (WAL mode, ``synchronous=FULL``, foreign
keys on) and ``blobs/xx/<id>`` (see `postier.store.blobs`).

Rules:
- Order for every accepted message: blob fsynced under its final name → index
  committed (group commit in the writer thread, `db.py`) → the method returns.
  If the index write fails, the new blob file is removed again; a crash between
  the two leaves an orphan file that `open()` sweeps.
- A blob row (and file) lives as long as a message or queue entry references it:
  the transaction that drops the last reference deletes the row, and the file is
  unlinked after that transaction committed. Never before: a crash in between only
  leaves an orphan file, never a row without its file.
- Every change to a mailbox takes new MODSEQs from ``mailboxes.highestmodseq``
  (one per message changed, ascending by UID); UIDs come from ``uidnext`` and are
  never reused (expunged UIDs are kept in ``expunged`` for QRESYNC).
- UIDVALIDITY comes from one store-wide counter, ``max(now in seconds, last + 1)``:
  a mailbox deleted and created again (or renamed away and re-created) always gets
  a new UIDVALIDITY.
- Mailbox names: "/" separates levels; no empty level, no control characters, no
  ``*`` or ``%`` (IMAP LIST wildcards); a first level spelled "inbox" in any case
  is INBOX. Deleting a mailbox that has children is refused (`Conflict`, as
  Dovecot does) rather than leaving a \\Noselect placeholder (RFC 9051 §6.3.5
  allows either). New mailboxes are not subscribed unless created by `add_user`.
- Subscriptions are names (``subscriptions``): one outlives DELETE of its mailbox
  (RFC 9051 §6.3.7) and comes back with a mailbox of that name; RENAME moves
  the subscriptions of the mailbox and its children with it.
- Change feed: each write records its `Change`s in the ``changes`` table (same
  transaction) and, after commit, hands them to the in-process hub. A poller,
  running only while this process has subscribers, looks every `poll_interval`
  seconds whether the database changed (``PRAGMA data_version``, no I/O) and
  then reads other processes' changes from the table: this is how the workers of
  one server (and admin commands) wake each other's IDLE sessions. A new
  subscriber may be told again of changes made up to a second before it
  subscribed (never fewer).
- Everything blocking runs in the writer thread, the reader pool or
  `asyncio.to_thread`; nothing blocks the event loop.
- `get_domain` and `resolve` (a look-up per RCPT) answer from memory while no
  process of the data dir changed domains, users or aliases (`directory.py`).
"""

# ruff: noqa: S608  -- SQL is assembled only from the column-list constants below;
# every value is a bound parameter.
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from postier.durable import file_lock
from postier.mail.address import Address, AddressError
from postier.mail.address import Domain as DomainName
from postier.mail.queueid import QueueId, new_queue_id
from postier.mail.summary import MessageSummary
from postier.store.api import FlagMode, SearchField, Subscription
from postier.store.blobs import BlobFiles, is_blob_id, is_inline, new_inline_id
from postier.store.errors import Conflict, Invalid, NotFound, QuotaExceeded, StoreError
from postier.store.feed import ChangeHub
from postier.store.models import (
    SPECIAL_USE,
    SYSTEM_FLAGS,
    Alias,
    BayesCounts,
    BlobId,
    Change,
    ChangeKind,
    Delivered,
    DeliveryResult,
    DeliveryTarget,
    Domain,
    GreylistDecision,
    GreylistOutcome,
    Mailbox,
    MailboxId,
    MaildropItem,
    Message,
    MetaRow,
    ModSeq,
    NewMessage,
    NewQueueEntry,
    QueueEntry,
    QueueRecipient,
    RcptState,
    Resolution,
    SortRow,
    TraceEvent,
    Uid,
    User,
    UserId,
    WebSession,
)
from postier.store.sqlite import directory, headers, schema
from postier.store.sqlite.db import Database, Tx
from postier.store.sqlite.keyfiles import keep_key, read_keys

log = logging.getLogger(__name__)

DB_NAME = "postier.db"
BLOB_DIR = "blobs"

#: RFC 6154 §2 and RFC 8457 §3: the special-use attributes a mailbox may carry
SPECIAL_USE_ATTRIBUTES = frozenset(
    {
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
        "\\Important",
    }
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Blob:
    """A blob written (or to be inlined) before its index transaction."""

    id: BlobId
    size: int  # octets of the message: the head included, the skipped octets not
    summary: MessageSummary
    inline: bytes | None  # the bytes, kept in the index (small messages)
    head: tuple[bytes, int] | None  # (head, skip) of a spool file taken as it is


_US = timedelta(microseconds=1)
_SYSTEM_FLAG_CASE = {f.lower(): f for f in SYSTEM_FLAGS}
_MAX_UIDVALIDITY = 0xFFFFFFFF  # RFC 9051 §9: nz-number is 32 bits
#: how long after a commit that added messages their header index entries are
#: written (`_index_soon`), and how many rows one indexing transaction takes: large
#: batches are what make the index cheap; small enough that the write lock is held
#: for tens of milliseconds at most
INDEX_DELAY = 0.5
INDEX_BATCH = 2000

Row = tuple[Any, ...]
T = TypeVar("T")


# --- conversions -----------------------------------------------------------
def _to_us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # naive datetimes are taken as UTC
    return (dt - _EPOCH) // _US


def _zone_of(dt: datetime | None) -> int | None:
    offset = dt.utcoffset() if dt is not None else None
    return None if offset is None else int(offset.total_seconds())


def _from_us(us: int) -> datetime:
    # timedelta(0, 0, us) is timedelta(microseconds=us) without the keyword (0.76 -> 0.52 µs)
    return _EPOCH + timedelta(0, 0, us)


def _now_us() -> int:
    return time.time_ns() // 1000


def _domain_key(name: str) -> str:
    try:
        return DomainName.parse(name).ascii
    except AddressError as e:
        raise Invalid(str(e)) from None


def _address_key(text: str) -> str:
    try:
        return Address.parse(text).key
    except AddressError as e:
        raise Invalid(str(e)) from None


def _source_key(text: str) -> str:
    """An alias source: "local@domain" or "@domain" (catch-all)."""
    if text.startswith("@"):
        return "@" + _domain_key(text[1:])
    return _address_key(text)


def _domain_of(key: str) -> str:
    return key.rpartition("@")[2]


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in their canonical case (they are case-insensitive, RFC 9051
    §2.3.2); \\Recent is never stored; a flag with white space or controls is
    `Invalid` (flags are atoms)."""
    out: set[str] = set()
    for flag in flags:
        if not flag or any(c <= " " or c == "\x7f" for c in flag):
            raise Invalid(f"bad flag {flag!r}")
        canonical = _SYSTEM_FLAG_CASE.get(flag.lower(), flag)
        if canonical.lower() == "\\recent":
            continue  # RFC 9051 §2.3.2: \Recent is not stored (and gone in IMAP4rev2)
        out.add(canonical)
    return frozenset(out)


def _flags_text(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


#: distinct flags texts whose set `_flags_of` keeps
FLAG_SETS_KEPT = 4096


@functools.lru_cache(maxsize=FLAG_SETS_KEPT)
def _flags_of(text: str) -> frozenset[str]:
    """One set for each flags text, shared by every message read with it (sets are
    immutable): most messages share a few, and a listing of a folder of 50,000
    made a set for each — a third of the objects the cyclic GC tracked for it, each
    scanned by every full collection while the listing lived."""
    return frozenset(text.split())


def _with_flag_sets(
    rows: Iterable[tuple[Uid, ModSeq, str]],
) -> list[tuple[Uid, ModSeq, frozenset[str]]]:
    """Rows with their flags text parsed, once per distinct text (most messages
    share a few flag sets)."""
    sets: dict[str, frozenset[str]] = {}
    out = []
    for uid, modseq, text in rows:
        flags = sets.get(text)
        if flags is None:
            sets[text] = flags = _flags_of(text)
        out.append((uid, modseq, flags))
    return out


def _stored(old: frozenset[str], flags: frozenset[str], mode: FlagMode) -> frozenset[str]:
    """The flags a STORE of `flags` in `mode` leaves of `old` (both backends)."""
    if mode == "add":
        return old | flags
    if mode == "remove":
        return old - flags
    return flags


#: a message's flags after a STORE: the set, and its text as a JSON string
_NewFlags = tuple[frozenset[str], str]
_NOT_YET: Any = object()


def _new_flags(text: str, flags: frozenset[str], mode: FlagMode) -> _NewFlags | None:
    """What STORE in `mode` makes of the flags stored as `text`; None when they
    stay as they are."""
    old = _flags_of(text)
    new = _stored(old, flags, mode)
    if new == old:
        return None
    # ensure_ascii=False: UTF-8 as is, rather than \\u escapes for SQLite's JSON to undo
    return new, json.dumps(_flags_text(new), ensure_ascii=False)


#: the new flags and MODSEQs of a mailbox's messages from a JSON array of
#: [uid, flags text]; the row at index k gets MODSEQ ?1 + k. MATERIALIZED: else the
#: planner scans the mailbox and json_each once for each of its rows. (json_extract
#: rather than ->>, which needs SQLite 3.38; as fast.)
_SET_FLAGS = (
    "WITH j(k, uid, flags) AS MATERIALIZED (SELECT key, json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]') FROM json_each(?2)) "
    "UPDATE messages SET flags = j.flags, modseq = ?1 + j.k FROM j "
    "WHERE messages.mailbox_id = ?3 AND messages.uid = j.uid"
)


def _json_ids(values: Iterable[int]) -> str:
    return json.dumps([int(v) for v in values])


_MSG_COLS = (
    "m.mailbox_id, m.uid, m.modseq, m.flags, m.internal_date, m.size, m.blob_id, "
    "b.envelope, b.bodystructure, b.body, b.subject, b.from_addr, b.to_addr, b.cc, "
    "b.date, b.message_id, b.preview, b.header_size, b.crlf_size, b.date_zone, b.bcc"
)
_MSG_FROM = "messages m JOIN blobs b ON b.id = m.blob_id"
#: the summary without the pre-serialised structures (IMAP SEARCH)
_TEXT_COLS = (
    "m.mailbox_id, m.uid, m.modseq, m.flags, m.internal_date, m.size, m.blob_id, "
    "b.subject, b.from_addr, b.to_addr, b.cc, b.date, b.message_id, b.header_size, "
    "b.crlf_size, b.date_zone, b.bcc"
)


def _summary_of(row: Row) -> MessageSummary:
    return MessageSummary(
        envelope=bytes(row[0]),
        bodystructure=bytes(row[1]),
        body=bytes(row[2]),
        subject=row[3],
        from_=row[4],
        to=row[5],
        cc=row[6],
        date=None if row[7] is None else _from_us(row[7]).astimezone(_zone(row[12])),
        message_id=row[8],
        preview=row[9],
        header_size=row[10],
        crlf_size=row[11],
        bcc=row[13],
    )


def _zone(seconds: int | None) -> timezone:
    """The Date: header's own zone (UTC when unknown)."""
    return UTC if not seconds else timezone(timedelta(seconds=seconds))


def _insert_message(
    tx: Tx,
    mailbox_id: int,
    uid: int,
    modseq: int,
    flags: str,
    date_us: int,
    size: int,
    blob_id: str,
) -> None:
    tx.execute(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (mailbox_id, uid, modseq, flags, date_us, size, blob_id),
    )


_NO_SUMMARY = MessageSummary()


def _flag_changes(
    user_id: UserId, mailbox_id: MailboxId, uids: list[int], base: int
) -> list[Change]:
    """The FLAGS changes of one `store_flags`: each UID with its own MODSEQ."""
    return [
        Change(user_id, mailbox_id, ChangeKind.FLAGS, Uid(uid), ModSeq(base + i))
        for i, uid in enumerate(uids)
    ]


def _light_message_of(row: Row) -> Message:
    return Message(
        mailbox_id=MailboxId(row[0]),
        uid=Uid(row[1]),
        modseq=ModSeq(row[2]),
        flags=_flags_of(row[3]),
        internal_date=_from_us(row[4]),
        size=row[5],
        blob_id=BlobId(row[6]),
        summary=_NO_SUMMARY,
    )


def _message_of(row: Row) -> Message:
    return Message(
        mailbox_id=MailboxId(row[0]),
        uid=Uid(row[1]),
        modseq=ModSeq(row[2]),
        flags=_flags_of(row[3]),
        internal_date=_from_us(row[4]),
        size=row[5],
        blob_id=BlobId(row[6]),
        summary=_summary_of(row[7:]),
    )


def _text_message_of(row: Row) -> Message:
    return Message(
        mailbox_id=MailboxId(row[0]),
        uid=Uid(row[1]),
        modseq=ModSeq(row[2]),
        flags=_flags_of(row[3]),
        internal_date=_from_us(row[4]),
        size=row[5],
        blob_id=BlobId(row[6]),
        summary=MessageSummary(
            subject=row[7],
            from_=row[8],
            to=row[9],
            cc=row[10],
            date=None if row[11] is None else _from_us(row[11]).astimezone(_zone(row[15])),
            message_id=row[12],
            header_size=row[13],
            crlf_size=row[14],
            bcc=row[16],
        ),
    )


_MBX_COLS = (
    "x.id, x.user_id, x.name, x.special_use, "
    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = x.user_id AND s.name = x.name), "
    "x.uidvalidity, x.uidnext, x.highestmodseq"
)
#: kept by triggers in every transaction that changes a message row (schema 12)
_MBX_COUNTS = "x.n_messages, x.n_unseen, x.n_octets"


def _mailbox_of(row: Row) -> Mailbox:
    return Mailbox(
        id=MailboxId(row[0]),
        user_id=UserId(row[1]),
        name=row[2],
        special_use=row[3],
        subscribed=bool(row[4]),
        uidvalidity=row[5],
        uidnext=row[6],
        highestmodseq=row[7],
        messages=row[8] if len(row) > 8 else 0,
        unseen=row[9] if len(row) > 9 else 0,
        size=row[10] if len(row) > 10 else 0,
    )


_USER_COLS = "id, address, domain, password_hash, quota_bytes, created, disabled, admin"


def _user_of(row: Row) -> User:
    return User(
        id=UserId(row[0]),
        address=row[1],
        domain=row[2],
        password_hash=row[3],
        quota_bytes=row[4],
        created=_from_us(row[5]),
        disabled=bool(row[6]),
        admin=bool(row[7]),
    )


_QUEUE_COLS = (
    "id, sender, blob_id, size, created, next_attempt, attempts, held, envid, ret, "
    "smtputf8, body_8bit, auth_user, is_bounce, last_error, return_path_size, dkim_signature"
)


def _queue_entries(conn: sqlite3.Connection, rows: list[Row]) -> list[QueueEntry]:
    out = []
    for r in rows:
        rcpts = tuple(
            QueueRecipient(address=a, state=RcptState(s), last_reply=lr, notify=n, orcpt=o)
            for a, s, lr, n, o in conn.execute(
                "SELECT address, state, last_reply, notify, orcpt FROM queue_recipients "
                "WHERE qid = ? ORDER BY position",
                (r[0],),
            )
        )
        out.append(
            QueueEntry(
                id=QueueId(r[0]),
                sender=r[1],
                recipients=rcpts,
                blob_id=BlobId(r[2]),
                size=r[3],
                created=_from_us(r[4]),
                next_attempt=_from_us(r[5]),
                attempts=r[6],
                held=bool(r[7]),
                envid=r[8],
                ret=r[9],
                smtputf8=bool(r[10]),
                body_8bit=bool(r[11]),
                auth_user=r[12],
                is_bounce=bool(r[13]),
                last_error=r[14],
                return_path_size=r[15],
                dkim_signature=None if r[16] is None else bytes(r[16]),
            )
        )
    return out


def _changes_after(conn: sqlite3.Connection, seq: int) -> list[Row]:
    return conn.execute(
        "SELECT seq, origin, user_id, mailbox_id, kind, uid, modseq FROM changes "
        "WHERE seq > ? ORDER BY seq LIMIT 10000",
        (seq,),
    ).fetchall()


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _is_under(name: str, parent: str) -> bool:
    return name.startswith(parent + "/")


class SqliteStore:
    """The embedded store. Construct, `await open()`, use, `await close()`.

    Limits and knobs (all constructor parameters):
    - `default_quota`: bytes for users added with ``quota_bytes=0`` (0 = unlimited).
    - `max_alias_depth`: alias expansion levels before a chain is cut.
    - `max_mailbox_name`: longest mailbox name, in UTF-8 octets.
    - `claim_timeout`: seconds a `queue_due` claim holds if never released.
    - `poll_interval`: seconds between reads of other processes' changes.
    - `change_retention`: seconds the cross-process change log is kept.
    - `orphan_grace`: temp files and unreferenced blobs younger than this survive
      the startup sweep (another process may be about to commit them).
    - `max_batch`: write jobs per group commit; `readers`: reader threads;
      `busy_timeout`: seconds to wait for another process's write lock.
    - `max_pending_changes`: changes buffered per subscription before it is cut off.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        default_quota: int = 0,
        max_alias_depth: int = 10,
        max_mailbox_name: int = 1024,
        claim_timeout: float = 1800.0,
        poll_interval: float = 0.1,
        change_retention: float = 3600.0,
        orphan_grace: float = 60.0,
        max_batch: int = 256,
        readers: int = 2,
        busy_timeout: float = 30.0,
        max_pending_changes: int = 10_000,
        inline_max: int = 64 * 1024,
    ) -> None:
        self.data_dir = Path(data_dir)
        #: messages up to this size live in the database, not in files (blobs.py)
        self.inline_max = inline_max
        self.default_quota = default_quota
        self.max_alias_depth = max_alias_depth
        self.max_mailbox_name = max_mailbox_name
        self.claim_timeout = claim_timeout
        self.poll_interval = poll_interval
        self.change_retention = change_retention
        self.orphan_grace = orphan_grace
        self._max_batch = max_batch
        self._readers = readers
        self._busy_timeout = busy_timeout
        self.blobs = BlobFiles(self.data_dir / BLOB_DIR)
        self._hub = ChangeHub(max_pending_changes)
        self._db: Database | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        #: domain look-ups and resolutions in memory (directory.py); None before open
        self._directory: directory.Cache | None = None
        #: identifies this instance's rows in the change log
        self._origin = secrets.token_hex(8)
        self._writes_since_trim = 0
        #: the header index's next batch: its timer, or its running task
        self._indexer: asyncio.TimerHandle | None = None
        self._index_task: asyncio.Task[None] | None = None
        #: (temp files, orphan blobs) removed by the last startup sweep
        self.last_sweep: tuple[int, int] = (0, 0)

    # --- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        if self._db is not None:
            raise StoreError("store is already open")
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._make_dirs)
        db = Database(
            self.data_dir / DB_NAME,
            max_batch=self._max_batch,
            readers=self._readers,
            busy_timeout=self._busy_timeout,
        )
        await asyncio.to_thread(self._start_db, db)
        self._db = db
        try:
            await db.write(lambda tx: schema.migrate(tx.conn))
            await db.write(self._trim_changes)
            # the schema is current (no migration sorts from here on); before the
            # TEMP triggers below, which a change of temp_store would drop
            db.memory_temp()
            cache = directory.Cache(self.data_dir / (DB_NAME + ".directory"))
            db.on_directory_change = cache.bump
            await db.write(lambda tx: directory.install(tx.conn, db.note_directory_change))
            self._directory = cache
            await self._sweep()
            # what a stopped process left, before any search needs it
            await self.index_headers()
        except BaseException:
            self._db = None
            await db.stop()
            raise

    def _start_db(self, db: Database) -> None:
        """Creating the file and switching it to WAL happen once, under a lock
        file, when several processes open a new data dir together (the schema's
        creation and migration are serialised by their write transaction)."""
        with file_lock(self.data_dir / (DB_NAME + ".lock")):
            db.start()

    def _make_dirs(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs.create_dirs()

    async def _sweep(self) -> None:
        # the referenced set is read before the files are listed: see BlobFiles.sweep
        refs = await self._read(lambda c: {r[0] for r in c.execute("SELECT id FROM blobs")})
        self.last_sweep = await asyncio.to_thread(
            self.blobs.sweep, lambda b: b in refs, self.orphan_grace
        )
        if any(self.last_sweep):
            log.info("store sweep removed %d temp file(s), %d orphan blob(s)", *self.last_sweep)

    async def close(self) -> None:
        db = self._db
        if db is None:
            return
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if self._indexer is not None:
            self._indexer.cancel()
            self._indexer = None
        indexing, self._index_task = self._index_task, None
        if indexing is not None:  # its batch commits or never starts: both are whole
            indexing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await indexing
        self._hub.close_all()
        self._db = None
        await db.stop()
        if self._directory is not None:
            self._directory.close()
            self._directory = None

    def _require_db(self) -> Database:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._require_db().read(fn)

    async def _lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A point look-up (a few rows by key): on the loop, else in the pool."""
        db = self._require_db()
        try:
            return db.read_now(fn)
        except sqlite3.OperationalError:
            return await db.read(fn)

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        return await self._require_db().write(fn)

    @property
    def commits(self) -> int:
        """Transactions committed by this instance (group commit makes it < writes)."""
        return self._db.commits if self._db is not None else 0

    # --- change recording (writer thread) ----------------------------------
    def _record(self, tx: Tx, changes: list[Change]) -> None:
        if not changes:
            return
        at = _now_us()
        tx.conn.executemany(
            "INSERT INTO changes (origin, at, user_id, mailbox_id, kind, uid, modseq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (self._origin, at, c.user_id, c.mailbox_id, c.kind.value, c.uid, c.modseq)
                for c in changes
            ],
        )
        loop = self._loop
        if loop is not None:
            added = any(c.kind is ChangeKind.EXISTS for c in changes)

            def publish() -> None:
                loop.call_soon_threadsafe(self._publish, changes, added)

            tx.after_commit.append(publish)
        self._count_write(tx)

    def _record_flags(
        self, tx: Tx, user_id: UserId, mailbox_id: MailboxId, uids: list[int], base: int
    ) -> None:
        """As `_record` for FLAGS changes to `uids` with the MODSEQs `base`, `base`
        + 1, ...: one INSERT for them all, and their `Change`s built only on the
        loop, and only when someone subscribes to the user's changes (a POP3
        session marking its maildrop \\Seen has nobody)."""
        tx.execute(
            "INSERT INTO changes (origin, at, user_id, mailbox_id, kind, uid, modseq) "
            "SELECT ?, ?, ?, ?, ?, value, ? + key FROM json_each(?) ORDER BY key",
            (
                self._origin,
                _now_us(),
                user_id,
                mailbox_id,
                ChangeKind.FLAGS.value,
                base,
                _json_ids(uids),
            ),
        )
        loop = self._loop
        if loop is not None:

            def publish() -> None:
                # the changes are made here, in the writer thread (a STORE on 20,000
                # messages took the loop 45 ms making them), for a user subscribed now
                changes = (
                    _flag_changes(user_id, mailbox_id, uids, base)
                    if self._hub.subscribed(user_id)
                    else None
                )
                loop.call_soon_threadsafe(
                    self._publish_flags, user_id, mailbox_id, uids, base, changes
                )

            tx.after_commit.append(publish)
        self._count_write(tx)

    def _publish_flags(
        self,
        user_id: UserId,
        mailbox_id: MailboxId,
        uids: list[int],
        base: int,
        changes: list[Change] | None,
    ) -> None:
        if self._hub.subscribed(user_id):
            if changes is None:  # subscribed since the writer thread looked
                changes = _flag_changes(user_id, mailbox_id, uids, base)
            self._hub.publish_user(user_id, changes)

    def _count_write(self, tx: Tx) -> None:
        """One more write recorded changes: every 1,000 the old ones are trimmed."""
        self._writes_since_trim += 1
        if self._writes_since_trim >= 1000:
            self._trim_changes(tx)

    def _publish(self, changes: list[Change], added: bool) -> None:
        """On the loop, after the commit: tell subscribers; new messages wait
        for their header index entries (`_index_soon`)."""
        self._hub.publish(changes)
        if added:
            self._index_soon()

    # --- the header index (schema 14) ---------------------------------------
    def _index_soon(self, delay: float = INDEX_DELAY) -> None:
        """Index the pending rows in `delay` seconds, unless a batch is already
        due or running (which then takes these rows too, or calls again)."""
        if self._indexer is not None or self._index_task is not None or self._loop is None:
            return
        self._indexer = self._loop.call_later(delay, self._start_indexing)

    def _start_indexing(self) -> None:
        self._indexer = None
        if self._db is not None:
            self._index_task = asyncio.ensure_future(self._index_pending())

    async def _index_pending(self) -> None:
        again: float | None = None
        try:
            if await self._write(self._index_batch):
                again = 0  # more rows wait: the next batch at once
        except Exception:  # the rows stay pending, and searches still find them
            log.exception("header index: a batch failed; trying again later")
            again = INDEX_DELAY * 10
        finally:
            self._index_task = None
        if again is not None and self._db is not None:
            self._index_soon(again)

    async def index_headers(self) -> None:
        """Index every pending row now, in batches (else they come `INDEX_DELAY`
        after the commit that added them): for tests and tools."""
        while await self._write(self._index_batch):
            pass

    @staticmethod
    def _index_batch(tx: Tx) -> bool:
        """Writer thread: index up to `INDEX_BATCH` pending rows, folded here in
        Python (the trigger's SQL function had to take the GIL five times per
        row). True when rows are left."""
        rows = tx.execute(
            "SELECT p.id, m.id, b.subject, b.from_addr, b.to_addr, b.cc, b.bcc "
            "FROM header_pending p LEFT JOIN messages m ON m.id = p.id "
            "LEFT JOIN blobs b ON b.id = m.blob_id ORDER BY p.id LIMIT ?",
            (INDEX_BATCH,),
        ).fetchall()
        if not rows:
            return False
        fold = schema.fold_text
        tx.conn.executemany(
            "INSERT OR REPLACE INTO header_index (rowid, subject, from_addr, to_addr, cc, bcc) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (r[0], *(None if v is None else fold(v) for v in r[2:]))
                for r in rows
                if r[1] is not None  # (a message gone takes its pending id with it)
            ],
        )
        tx.execute("DELETE FROM header_pending WHERE id <= ?", (rows[-1][0],))
        return len(rows) == INDEX_BATCH

    def _trim_changes(self, tx: Tx) -> None:
        self._writes_since_trim = 0
        cutoff = _now_us() - int(self.change_retention * 1_000_000)
        tx.execute("DELETE FROM changes WHERE at < ?", (cutoff,))

    def _free_blobs(self, tx: Tx, blob_ids: Iterable[str]) -> None:
        """Drop blob rows nothing references any more; unlink the files after commit.
        A few statements whatever the count (see `_remove`)."""
        ids = sorted(set(blob_ids))
        if not ids:
            return
        unused = [
            r[0]
            for r in tx.execute(
                "SELECT value FROM json_each(?) "
                "WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = value) "
                "AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = value)",
                (json.dumps(ids),),
            )
        ]
        if not unused:
            return
        inline = [b for b in unused if is_inline(b)]
        if inline:  # their bytes first: blob_data refers to blobs
            tx.execute(
                "DELETE FROM blob_data WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(inline),),
            )
        tx.execute(
            "DELETE FROM blobs WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(unused),)
        )
        gone = [b for b in unused if not is_inline(b)]  # inline ones have no file
        if gone:
            files = self.blobs

            def unlink() -> None:
                for blob_id in gone:
                    files.delete(blob_id)

            tx.after_commit.append(unlink)

    # --- domains -----------------------------------------------------------
    async def add_domain(self, name: str) -> Domain:
        key = _domain_key(name)
        created = _now_us()

        def job(tx: Tx) -> Domain:
            try:
                tx.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (key, created))
            except sqlite3.IntegrityError:
                raise Conflict(f"domain {key} exists already") from None
            return Domain(name=key, created=_from_us(created))

        result: Domain = await self._write(job)
        return result

    async def get_domain(self, name: str) -> Domain | None:
        cache = self._directory
        if cache is not None:
            hit = cache.get(("domain", name))
            if hit is not directory.MISS:
                found: Domain | None = hit
                return found
            version = cache.version()
        try:
            key = _domain_key(name)
        except Invalid:
            return None
        row = await self._lookup(
            lambda c: c.execute(
                "SELECT name, created, dkim_selector FROM domains WHERE name = ?", (key,)
            ).fetchone()
        )
        result = None if row is None else Domain(row[0], _from_us(row[1]), row[2])
        if cache is not None:
            cache.put(("domain", name), result, version)
        return result

    async def list_domains(self) -> list[Domain]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name, created, dkim_selector FROM domains ORDER BY name"
            ).fetchall()
        )
        return [Domain(r[0], _from_us(r[1]), r[2]) for r in rows]

    async def delete_domain(self, name: str) -> None:
        key = _domain_key(name)

        def job(tx: Tx) -> None:
            if tx.execute("SELECT 1 FROM domains WHERE name = ?", (key,)).fetchone() is None:
                raise NotFound(f"no domain {key}")
            users = tx.execute("SELECT COUNT(*) FROM users WHERE domain = ?", (key,)).fetchone()
            aliases = tx.execute("SELECT COUNT(*) FROM aliases WHERE domain = ?", (key,)).fetchone()
            if users[0] or aliases[0]:
                raise Conflict(
                    f"domain {key} still has {users[0]} user(s) and {aliases[0]} alias(es)"
                )
            tx.execute("DELETE FROM domains WHERE name = ?", (key,))

        await self._write(job)

    async def set_dkim_selector(self, name: str, selector: str) -> None:
        key = _domain_key(name)

        def job(tx: Tx) -> None:
            cur = tx.execute("UPDATE domains SET dkim_selector = ? WHERE name = ?", (selector, key))
            if cur.rowcount == 0:
                raise NotFound(f"no domain {key}")

        await self._write(job)

    async def dkim_keys(self, domain: str) -> dict[str, bytes]:
        try:
            return await asyncio.to_thread(read_keys, self.data_dir, _domain_key(domain))
        except ValueError as e:
            raise Invalid(str(e)) from None

    async def add_dkim_key(self, domain: str, selector: str, private_pem: bytes) -> bytes:
        try:
            return await asyncio.to_thread(
                keep_key, self.data_dir, _domain_key(domain), selector, private_pem
            )
        except ValueError as e:
            raise Invalid(str(e)) from None

    # --- users -------------------------------------------------------------
    async def add_user(self, address: str, password_hash: str, quota_bytes: int = 0) -> User:
        """Creates the user and their INBOX, Sent, Drafts, Junk, Trash, Archive
        (special-use per RFC 6154, all subscribed). ``quota_bytes=0`` means the
        store's `default_quota`. `NotFound` if the domain is not ours, `Conflict`
        if the address is a user or an alias already."""
        key = _address_key(address)
        domain = _domain_of(key)
        quota = quota_bytes or self.default_quota
        if quota < 0:
            raise Invalid("quota must not be negative")
        created = _now_us()

        def job(tx: Tx) -> User:
            if tx.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
                raise NotFound(f"no domain {domain}")
            if tx.execute("SELECT 1 FROM aliases WHERE source = ?", (key,)).fetchone():
                raise Conflict(f"{key} is an alias")
            try:
                cur = tx.execute(
                    "INSERT INTO users (address, domain, password_hash, quota_bytes, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, domain, password_hash, quota, created),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"user {key} exists already") from None
            user_id = UserId(cur.lastrowid or 0)
            for name, special in SPECIAL_USE.items():
                self._insert_mailbox(tx, user_id, name, special, subscribed=True)
            return User(
                id=user_id,
                address=key,
                domain=domain,
                password_hash=password_hash,
                quota_bytes=quota,
                created=_from_us(created),
            )

        result: User = await self._write(job)
        return result

    async def get_user(self, address: str) -> User | None:
        try:
            key = _address_key(address)
        except Invalid:
            return None
        row = await self._lookup(
            lambda c: c.execute(
                f"SELECT {_USER_COLS} FROM users WHERE address = ?", (key,)
            ).fetchone()
        )
        return None if row is None else _user_of(row)

    async def get_user_by_id(self, user_id: UserId) -> User | None:
        row = await self._lookup(
            lambda c: c.execute(
                f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,)
            ).fetchone()
        )
        return None if row is None else _user_of(row)

    async def list_users(self, domain: str | None = None) -> list[User]:
        if domain is None:
            rows = await self._read(
                lambda c: c.execute(f"SELECT {_USER_COLS} FROM users ORDER BY address").fetchall()
            )
        else:
            key = _domain_key(domain)
            rows = await self._read(
                lambda c: c.execute(
                    f"SELECT {_USER_COLS} FROM users WHERE domain = ? ORDER BY address", (key,)
                ).fetchall()
            )
        return [_user_of(r) for r in rows]

    async def _update_user(self, address: str, column: str, value: object) -> None:
        key = _address_key(address)

        def job(tx: Tx) -> None:
            cur = tx.execute(f"UPDATE users SET {column} = ? WHERE address = ?", (value, key))
            if cur.rowcount == 0:
                raise NotFound(f"no user {key}")

        await self._write(job)

    async def set_password(self, address: str, password_hash: str) -> None:
        key = _address_key(address)

        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE users SET password_hash = ? WHERE address = ?", (password_hash, key)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no user {key}")
            # a new password (a reset, often after a leak) ends every webmail session
            tx.execute(
                "DELETE FROM web_sessions WHERE user_id = (SELECT id FROM users WHERE address = ?)",
                (key,),
            )

        await self._write(job)

    async def set_quota(self, address: str, quota_bytes: int) -> None:
        if quota_bytes < 0:
            raise Invalid("quota must not be negative")
        await self._update_user(address, "quota_bytes", quota_bytes)

    async def set_admin(self, address: str, admin: bool) -> None:
        await self._update_user(address, "admin", int(admin))

    async def set_disabled(self, address: str, disabled: bool) -> None:
        key = _address_key(address)

        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE users SET disabled = ? WHERE address = ?", (int(disabled), key)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no user {key}")
            if disabled:  # its webmail sessions end with it
                tx.execute(
                    "DELETE FROM web_sessions WHERE user_id = "
                    "(SELECT id FROM users WHERE address = ?)",
                    (key,),
                )

        await self._write(job)

    async def delete_user(self, address: str) -> None:
        key = _address_key(address)

        def job(tx: Tx) -> None:
            row = tx.execute("SELECT id FROM users WHERE address = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(f"no user {key}")
            blob_ids = [
                r[0]
                for r in tx.execute(
                    "SELECT DISTINCT m.blob_id FROM messages m JOIN mailboxes x "
                    "ON x.id = m.mailbox_id WHERE x.user_id = ?",
                    (row[0],),
                )
            ]
            tx.execute("DELETE FROM users WHERE id = ?", (row[0],))  # cascades to mailboxes
            self._free_blobs(tx, blob_ids)

        await self._write(job)

    # --- aliases -----------------------------------------------------------
    async def add_alias(self, source: str, targets: Sequence[str]) -> Alias:
        """`source` is "local@domain" or "@domain" (catch-all) of a local domain
        (`NotFound` otherwise); `Conflict` if it is a user or an alias already."""
        src = _source_key(source)
        if isinstance(targets, str):
            raise Invalid("targets must be a list of addresses")
        keys = tuple(dict.fromkeys(_address_key(t) for t in targets))
        if not keys:
            raise Invalid("an alias needs at least one target")
        domain = _domain_of(src)

        def job(tx: Tx) -> Alias:
            if tx.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
                raise NotFound(f"no domain {domain}")
            if tx.execute("SELECT 1 FROM users WHERE address = ?", (src,)).fetchone():
                raise Conflict(f"{src} is a user")
            try:
                tx.execute(
                    "INSERT INTO aliases (source, domain, targets) VALUES (?, ?, ?)",
                    (src, domain, json.dumps(list(keys))),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"alias {src} exists already") from None
            return Alias(src, keys)

        result: Alias = await self._write(job)
        return result

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain is None:
            rows = await self._read(
                lambda c: c.execute(
                    "SELECT source, targets FROM aliases ORDER BY source"
                ).fetchall()
            )
        else:
            key = _domain_key(domain)
            rows = await self._read(
                lambda c: c.execute(
                    "SELECT source, targets FROM aliases WHERE domain = ? ORDER BY source", (key,)
                ).fetchall()
            )
        return [Alias(r[0], tuple(json.loads(r[1]))) for r in rows]

    async def delete_alias(self, source: str) -> None:
        src = _source_key(source)

        def job(tx: Tx) -> None:
            if tx.execute("DELETE FROM aliases WHERE source = ?", (src,)).rowcount == 0:
                raise NotFound(f"no alias {src}")

        await self._write(job)

    def _resolve_sync(self, conn: sqlite3.Connection, key: str) -> Resolution:
        """Exact user → alias (recursively) → the domain's catch-all. A chain deeper
        than `max_alias_depth` or looping back is cut there; targets outside our
        domains are remote forwards."""
        users: dict[int, User] = {}
        remote: dict[str, None] = {}
        visited: set[str] = set()
        local_domains: dict[str, bool] = {}

        def is_local(domain: str) -> bool:
            if domain not in local_domains:
                local_domains[domain] = (
                    conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone()
                    is not None
                )
            return local_domains[domain]

        def alias_targets(source: str) -> list[str] | None:
            row = conn.execute("SELECT targets FROM aliases WHERE source = ?", (source,)).fetchone()
            return None if row is None else list(json.loads(row[0]))

        def expand(addr: str, depth: int) -> None:
            if addr in visited:
                return  # a loop, or a target reached twice
            visited.add(addr)
            domain = _domain_of(addr)
            if not is_local(domain):
                if depth > 0:
                    remote[addr] = None
                return
            row = conn.execute(
                f"SELECT {_USER_COLS} FROM users WHERE address = ?", (addr,)
            ).fetchone()
            if row is not None:
                users[row[0]] = _user_of(row)
                return
            if depth >= self.max_alias_depth:
                log.warning("alias chain for %s cut at depth %d", key, depth)
                return
            targets = alias_targets(addr)
            if targets is None:
                catch_all = "@" + domain
                if catch_all in visited:
                    return
                visited.add(catch_all)
                targets = alias_targets(catch_all)
            for target in targets or ():
                expand(target, depth + 1)

        expand(key, 0)
        return Resolution(users=tuple(users.values()), remote=tuple(remote))

    async def resolve(self, address: str) -> Resolution:
        cache = self._directory
        if cache is not None:
            hit = cache.get(("resolve", address))
            if hit is not directory.MISS:
                found: Resolution = hit
                return found
            version = cache.version()
        try:
            key = _address_key(address)
        except Invalid:
            return Resolution()
        result: Resolution = await self._lookup(lambda c: self._resolve_sync(c, key))
        if cache is not None:
            cache.put(("resolve", address), result, version)
        return result

    async def addresses_of(self, user_id: UserId) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            row = conn.execute("SELECT address FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                return []
            out = [row[0]]
            for (source,) in conn.execute(
                "SELECT source FROM aliases WHERE source NOT LIKE '@%' ORDER BY source"
            ).fetchall():
                res = self._resolve_sync(conn, source)
                if not res.remote and [u.id for u in res.users] == [user_id]:
                    out.append(source)
            return out

        result: list[str] = await self._lookup(read)
        return result

    # --- mailboxes ---------------------------------------------------------
    def _mailbox_name(self, name: str) -> str:
        if not name:
            raise Invalid("empty mailbox name")
        if any(c < " " or c == "\x7f" or c in "*%" for c in name):
            raise Invalid(f"mailbox name {name!r} has a control or wildcard character")
        levels = name.split("/")
        if any(level == "" for level in levels):
            raise Invalid(f"mailbox name {name!r} has an empty hierarchy level")
        if levels[0].upper() == "INBOX":
            levels[0] = "INBOX"  # RFC 9051 §5.1: INBOX is case-insensitive
        out = "/".join(levels)
        if len(out.encode()) > self.max_mailbox_name:
            raise Invalid(f"mailbox name longer than {self.max_mailbox_name} octets")
        return out

    def _new_uidvalidity(self, tx: Tx) -> int:
        row = tx.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
        last = row[0] if row else 0
        value = max(int(time.time()), last + 1)
        if value > _MAX_UIDVALIDITY:
            value = 1  # todo: year 2106; wrapping breaks uniqueness for one cycle
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('uidvalidity', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (value,),
        )
        return value

    def _insert_mailbox(
        self,
        tx: Tx,
        user_id: UserId,
        name: str,
        special_use: str | None,
        *,
        subscribed: bool,
        uidnext: int = 1,
    ) -> MailboxId:
        cur = tx.execute(
            "INSERT INTO mailboxes (user_id, name, special_use, subscribed, uidvalidity, "
            "uidnext, highestmodseq) VALUES (?, ?, ?, 0, ?, ?, 1)",
            (user_id, name, special_use, self._new_uidvalidity(tx), uidnext),
        )
        if subscribed:
            tx.execute(
                "INSERT OR IGNORE INTO subscriptions (user_id, name) VALUES (?, ?)",
                (user_id, name),
            )
        return MailboxId(cur.lastrowid or 0)

    def _create_parents(self, tx: Tx, user_id: UserId, name: str, changes: list[Change]) -> None:
        levels = name.split("/")
        for i in range(1, len(levels)):
            parent = "/".join(levels[:i])
            if (
                tx.execute(
                    "SELECT 1 FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, parent)
                ).fetchone()
                is None
            ):
                mid = self._insert_mailbox(tx, user_id, parent, None, subscribed=False)
                changes.append(Change(user_id, mid, ChangeKind.MAILBOX))

    @staticmethod
    def _user_exists(tx: Tx, user_id: UserId) -> None:
        if tx.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
            raise NotFound(f"no user with id {user_id}")

    async def list_mailboxes(self, user_id: UserId) -> list[Mailbox]:
        # a few rows by key, counts included (schema 12): a point look-up
        rows = await self._lookup(
            lambda c: c.execute(
                f"SELECT {_MBX_COLS}, {_MBX_COUNTS} FROM mailboxes x "
                "WHERE x.user_id = ? ORDER BY x.name",
                (user_id,),
            ).fetchall()
        )
        return [_mailbox_of(r) for r in rows]

    async def get_mailbox(self, user_id: UserId, name: str) -> Mailbox | None:
        try:
            key = self._mailbox_name(name)
        except Invalid:
            return None
        row = await self._lookup(
            lambda c: c.execute(
                f"SELECT {_MBX_COLS}, {_MBX_COUNTS} FROM mailboxes x "
                "WHERE x.user_id = ? AND x.name = ?",
                (user_id, key),
            ).fetchone()
        )
        return None if row is None else _mailbox_of(row)

    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None:
        row = await self._lookup(
            lambda c: c.execute(
                f"SELECT {_MBX_COLS}, {_MBX_COUNTS} FROM mailboxes x WHERE x.id = ?",
                (mailbox_id,),
            ).fetchone()
        )
        return None if row is None else _mailbox_of(row)

    async def create_mailbox(
        self, user_id: UserId, name: str, special_use: str | None = None
    ) -> Mailbox:
        """Creates missing parents too (RFC 9051 §6.3.4). `Conflict` if it exists,
        `Invalid` for a bad name or special-use attribute (RFC 6154 §2)."""
        key = self._mailbox_name(name)
        if special_use is not None and special_use not in SPECIAL_USE_ATTRIBUTES:
            raise Invalid(f"unknown special-use attribute {special_use!r}")

        def job(tx: Tx) -> MailboxId:
            self._user_exists(tx, user_id)
            if tx.execute(
                "SELECT 1 FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, key)
            ).fetchone():
                raise Conflict(f"mailbox {key} exists already")
            changes: list[Change] = []
            self._create_parents(tx, user_id, key, changes)
            mid = self._insert_mailbox(tx, user_id, key, special_use, subscribed=False)
            changes.append(Change(user_id, mid, ChangeKind.MAILBOX))
            self._record(tx, changes)
            return mid

        mid: MailboxId = await self._write(job)
        mailbox = await self.get_mailbox_by_id(mid)
        assert mailbox is not None
        return mailbox

    async def delete_mailbox(self, user_id: UserId, name: str) -> None:
        """Deletes the mailbox and its messages (blobs freed). INBOX cannot be
        deleted (`Invalid`); a mailbox with children is refused (`Conflict`)."""
        key = self._mailbox_name(name)
        if key == "INBOX":
            raise Invalid("INBOX cannot be deleted")  # RFC 9051 §6.3.5

        def job(tx: Tx) -> None:
            row = tx.execute(
                "SELECT id FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, key)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {key}")
            if tx.execute(
                "SELECT 1 FROM mailboxes WHERE user_id = ? AND substr(name, 1, ?) = ?",
                (user_id, len(key) + 1, key + "/"),
            ).fetchone():
                raise Conflict(f"mailbox {key} has children")
            blob_ids = [
                r[0]
                for r in tx.execute(
                    "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = ?", (row[0],)
                )
            ]
            tx.execute("DELETE FROM mailboxes WHERE id = ?", (row[0],))
            self._free_blobs(tx, blob_ids)
            self._record(tx, [Change(user_id, MailboxId(row[0]), ChangeKind.MAILBOX)])

        await self._write(job)

    async def rename_mailbox(self, user_id: UserId, old: str, new: str) -> None:
        """Renames the mailbox and its children, creating missing parents of `new`;
        UIDVALIDITY is kept. Renaming INBOX creates `new` (a fresh UIDVALIDITY),
        moves every INBOX message there and leaves INBOX empty; INBOX's children
        stay where they are (RFC 9051 §6.3.6). `NotFound`, `Conflict` when `new`
        exists, `Invalid` when `new` is inside `old`."""
        src = self._mailbox_name(old)
        dst = self._mailbox_name(new)
        if src != "INBOX" and _is_under(dst, src):
            raise Invalid(f"cannot rename {src} into itself")

        def job(tx: Tx) -> None:
            row = tx.execute(
                "SELECT id FROM mailboxes WHERE user_id = ? AND name = ?",
                (user_id, src),
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {src}")
            if tx.execute(
                "SELECT 1 FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, dst)
            ).fetchone():
                raise Conflict(f"mailbox {dst} exists already")
            changes: list[Change] = []
            self._create_parents(tx, user_id, dst, changes)
            if src == "INBOX":
                self._rename_inbox(tx, user_id, MailboxId(row[0]), dst, changes)
            else:
                children = tx.execute(
                    "SELECT id, name FROM mailboxes WHERE user_id = ? AND substr(name, 1, ?) = ?",
                    (user_id, len(src) + 1, src + "/"),
                ).fetchall()
                tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (dst, row[0]))
                changes.append(Change(user_id, MailboxId(row[0]), ChangeKind.MAILBOX))
                for cid, cname in children:
                    try:
                        tx.execute(
                            "UPDATE mailboxes SET name = ? WHERE id = ?",
                            (dst + cname[len(src) :], cid),
                        )
                    except sqlite3.IntegrityError:
                        raise Conflict(f"mailbox {dst + cname[len(src) :]} exists") from None
                    changes.append(Change(user_id, MailboxId(cid), ChangeKind.MAILBOX))
                self._move_subscriptions(tx, user_id, src, dst)
            self._record(tx, changes)

        await self._write(job)

    def _rename_inbox(
        self, tx: Tx, user_id: UserId, inbox: MailboxId, dst: str, changes: list[Change]
    ) -> None:
        uidnext = tx.execute("SELECT uidnext FROM mailboxes WHERE id = ?", (inbox,)).fetchone()[0]
        new_id = self._insert_mailbox(tx, user_id, dst, None, subscribed=True, uidnext=uidnext)
        changes.append(Change(user_id, new_id, ChangeKind.MAILBOX))
        uids = [
            r[0]
            for r in tx.execute(
                "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (inbox,)
            )
        ]
        if not uids:
            return
        # the new mailbox keeps the UIDs (its uidnext starts where INBOX's is)
        base = self._take_modseqs(tx, new_id, len(uids))
        base_old = self._take_modseqs(tx, inbox, len(uids))
        for i, uid in enumerate(uids):
            tx.execute(
                "UPDATE messages SET mailbox_id = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                (new_id, base + i, inbox, uid),
            )
            tx.execute(
                "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                (inbox, uid, base_old + i),
            )
            changes.append(
                Change(user_id, inbox, ChangeKind.EXPUNGE, Uid(uid), ModSeq(base_old + i))
            )

    @staticmethod
    def _move_subscriptions(tx: Tx, user_id: UserId, src: str, dst: str) -> None:
        """A renamed mailbox (and its children) keeps its subscriptions."""
        names = [
            r[0]
            for r in tx.execute(
                "SELECT name FROM subscriptions WHERE user_id = ? "
                "AND (name = ? OR substr(name, 1, ?) = ?)",
                (user_id, src, len(src) + 1, src + "/"),
            )
        ]
        for name in names:
            tx.execute("DELETE FROM subscriptions WHERE user_id = ? AND name = ?", (user_id, name))
            tx.execute(
                "INSERT OR IGNORE INTO subscriptions (user_id, name) VALUES (?, ?)",
                (user_id, dst + name[len(src) :]),
            )

    async def set_subscribed(self, user_id: UserId, name: str, subscribed: bool) -> None:
        """Subscribing needs the mailbox (RFC 9051 §6.3.7 lets a server check);
        unsubscribing a name whose mailbox is gone works. `NotFound` when there
        is neither a mailbox nor a subscription of that name."""
        key = self._mailbox_name(name)

        def job(tx: Tx) -> None:
            row = tx.execute(
                "SELECT id FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, key)
            ).fetchone()
            if subscribed:
                if row is None:
                    raise NotFound(f"no mailbox {key}")
                tx.execute(
                    "INSERT OR IGNORE INTO subscriptions (user_id, name) VALUES (?, ?)",
                    (user_id, key),
                )
            else:
                cur = tx.execute(
                    "DELETE FROM subscriptions WHERE user_id = ? AND name = ?", (user_id, key)
                )
                if cur.rowcount == 0 and row is None:
                    raise NotFound(f"no mailbox {key}")
            if row is not None:
                # IMAP NOTIFY SubscriptionChange (RFC 5465 §5.5) learns of it from the feed
                self._record(tx, [Change(user_id, MailboxId(row[0]), ChangeKind.MAILBOX)])

        await self._write(job)

    async def list_subscriptions(self, user_id: UserId) -> list[str]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name FROM subscriptions WHERE user_id = ? ORDER BY name", (user_id,)
            ).fetchall()
        )
        return [r[0] for r in rows]

    # --- message helpers (writer thread) -----------------------------------
    @staticmethod
    def _take_uids(tx: Tx, mailbox_id: MailboxId, count: int) -> tuple[int, int]:
        """Reserve `count` UIDs and MODSEQs: (first uid, first modseq).

        RFC 9051 §2.3.1.1: UIDs strictly ascend and are never reused (uidnext only
        grows). RFC 7162 §3.1: each change takes a MODSEQ above HIGHESTMODSEQ."""
        row = tx.execute(
            "UPDATE mailboxes SET uidnext = uidnext + ?, highestmodseq = highestmodseq + ? "
            "WHERE id = ? RETURNING uidnext - ?, highestmodseq - ? + 1",
            (count, count, mailbox_id, count, count),
        ).fetchone()
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return int(row[0]), int(row[1])

    @staticmethod
    def _take_modseqs(tx: Tx, mailbox_id: MailboxId, count: int) -> int:
        row = tx.execute(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + ? WHERE id = ? "
            "RETURNING highestmodseq - ? + 1",
            (count, mailbox_id, count),
        ).fetchone()
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return int(row[0])

    @staticmethod
    def _insert_blob(
        tx: Tx,
        blob_id: BlobId,
        size: int,
        s: MessageSummary,
        inline: bytes | None = None,
        head: tuple[bytes, int] | None = None,
    ) -> None:
        tx.execute(
            "INSERT INTO blobs (id, size, envelope, bodystructure, body, subject, from_addr, "
            "to_addr, cc, date, message_id, preview, header_size, crlf_size, date_zone, bcc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                blob_id,
                size,
                s.envelope,
                s.bodystructure,
                s.body,
                s.subject,
                s.from_,
                s.to,
                s.cc,
                None if s.date is None else _to_us(s.date),
                s.message_id,
                s.preview,
                s.header_size,
                s.crlf_size,
                _zone_of(s.date),
                s.bcc,
            ),
        )
        if inline is not None:
            tx.execute("INSERT INTO blob_data (id, data) VALUES (?, ?)", (blob_id, inline))
        if head is not None:
            tx.execute(
                "INSERT INTO blob_heads (id, head, skip) VALUES (?, ?, ?)",
                (blob_id, head[0], head[1]),
            )

    @staticmethod
    def _mailbox_owner(tx: Tx, mailbox_id: MailboxId) -> UserId:
        row = tx.execute("SELECT user_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return UserId(row[0])

    @staticmethod
    def _check_quota(tx: Tx, user_id: UserId, adding: int) -> None:
        limit = tx.execute("SELECT quota_bytes FROM users WHERE id = ?", (user_id,)).fetchone()
        if limit is None or limit[0] <= 0:
            return
        used = tx.execute(
            "SELECT COALESCE(SUM(n_octets), 0) FROM mailboxes WHERE user_id = ?",
            (user_id,),
        ).fetchone()[0]
        if used + adding > limit[0]:
            raise QuotaExceeded(f"quota exceeded: {used} + {adding} > {limit[0]} octets")

    def _put_blob(self, message: NewMessage) -> _Blob:
        """Blocking: write the blob durably (worker thread). The summary is the
        caller's: the store never parses.

        Messages up to `inline_max` octets given as bytes are not written here:
        the id is an inline one and the bytes go into the index transaction
        (`_insert_blob`), durable with its commit. A spool file is renamed into
        place as it is (`BlobFiles.put`); its head is kept in the index."""
        data = message.data
        if isinstance(data, bytes) and len(data) <= self.inline_max:
            return _Blob(new_inline_id(), len(data), message.summary, data, None)
        blob_id, size = self.blobs.put(data)
        if isinstance(data, bytes) or not (message.head or message.skip):
            return _Blob(blob_id, size, message.summary, None, None)
        skip = min(message.skip, size)
        size = len(message.head) + size - skip
        return _Blob(blob_id, size, message.summary, None, (message.head, skip))

    async def _prepare_blob(self, message: NewMessage) -> _Blob:
        """A small message goes into the index transaction as it is; files and
        large messages are written in a thread."""
        if isinstance(message.data, bytes) and len(message.data) <= self.inline_max:
            return self._put_blob(message)
        return await asyncio.to_thread(self._put_blob, message)

    async def _write_new_blob(self, job: Callable[[Tx], T], blob_id: BlobId) -> T:
        """Run the job that names a blob just written; if it fails, nothing will
        ever reference that blob, so it goes at once (not at the next sweep)."""
        try:
            return await self._write(job)
        except BaseException:
            await self._discard_blob(blob_id)
            raise

    async def _discard_blob(self, blob_id: BlobId) -> None:
        """The index write failed: the new blob is referenced by nothing."""
        if is_inline(blob_id):
            return  # rolled back with the transaction
        try:
            await asyncio.to_thread(self.blobs.delete, blob_id)
        except OSError:
            log.exception("could not remove unused blob %s (the next sweep will)", blob_id)

    # --- messages ----------------------------------------------------------
    async def deliver(
        self,
        message: NewMessage,
        targets: Sequence[DeliveryTarget],
        *,
        queue: NewQueueEntry | None = None,
        internal_date: datetime | None = None,
        qid: QueueId | None = None,
        trace: Sequence[tuple[str, str]] = (),
    ) -> DeliveryResult:
        """Store one incoming message for local users and/or the outbound queue.

        Atomic and durable: the blob is written once and fsynced, then one
        transaction inserts a message row per target (a missing or bad target
        mailbox falls back to INBOX; an unknown user is `NotFound` and nothing is
        stored) and the queue entry (id = `qid`, generated when None). Returns
        after the commit. `Invalid` when there is nothing to do."""
        if not targets and queue is None:
            raise Invalid("deliver needs local targets or a queue entry")
        if queue is not None and not queue.recipients:
            raise Invalid("a queue entry needs recipients")
        self._require_db()
        qid = qid or new_queue_id()
        date_us = _to_us(internal_date) if internal_date else _now_us()
        prepared = []
        for t in targets:
            try:
                name = self._mailbox_name(t.mailbox)
            except Invalid:
                name = "INBOX"
            prepared.append((t.user_id, name, _flags_text(normalize_flags(t.flags))))
        blob = await self._prepare_blob(message)
        blob_id, size = blob.id, blob.size

        def job(tx: Tx) -> DeliveryResult:
            self._insert_blob(tx, blob_id, size, blob.summary, blob.inline, blob.head)
            delivered: list[Delivered] = []
            changes: list[Change] = []
            for user_id, name, flags in prepared:
                row = tx.execute(
                    "SELECT id FROM mailboxes WHERE user_id = ? AND name IN (?, 'INBOX') "
                    "ORDER BY name = 'INBOX' LIMIT 1",
                    (user_id, name),
                ).fetchone()
                if row is None:
                    raise NotFound(f"no user with id {user_id} (or no INBOX)")
                mid = MailboxId(row[0])
                uid, modseq = self._take_uids(tx, mid, 1)
                _insert_message(tx, mid, uid, modseq, flags, date_us, size, blob_id)
                delivered.append(Delivered(user_id, mid, Uid(uid)))
                changes.append(Change(user_id, mid, ChangeKind.EXISTS, Uid(uid), ModSeq(modseq)))
            if queue is not None:
                self._insert_queue(tx, qid, queue, blob_id, size)
            at = _now_us()
            if trace:
                tx.conn.executemany(
                    "INSERT INTO trace (qid, at, event, detail) VALUES (?, ?, ?, ?)",
                    [(qid, at, event, detail) for event, detail in trace],
                )
            self._record(tx, changes)
            return DeliveryResult(
                qid=qid,
                delivered=tuple(delivered),
                queued=qid if queue is not None else None,
                blob_id=blob_id,
            )

        return await self._write_new_blob(job, blob_id)

    async def append(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Message:
        """IMAP APPEND / webmail save: durable when it returns. `NotFound` for an
        unknown mailbox, `QuotaExceeded` when the owner's quota would be exceeded
        (RFC 9208 §4.4: nothing is stored)."""
        self._require_db()
        flag_set = normalize_flags(flags)
        date_us = _to_us(internal_date) if internal_date else _now_us()
        blob = await self._prepare_blob(message)
        blob_id, size, summary = blob.id, blob.size, blob.summary

        def job(tx: Tx) -> Message:
            user_id = self._mailbox_owner(tx, mailbox_id)
            self._check_quota(tx, user_id, size)
            self._insert_blob(tx, blob_id, size, summary, blob.inline, blob.head)
            uid, modseq = self._take_uids(tx, mailbox_id, 1)
            _insert_message(
                tx, mailbox_id, uid, modseq, _flags_text(flag_set), date_us, size, blob_id
            )
            self._record(
                tx, [Change(user_id, mailbox_id, ChangeKind.EXISTS, Uid(uid), ModSeq(modseq))]
            )
            return Message(
                mailbox_id=mailbox_id,
                uid=Uid(uid),
                modseq=ModSeq(modseq),
                flags=flag_set,
                internal_date=_from_us(date_us),
                size=size,
                blob_id=blob_id,
                summary=summary,
            )

        return await self._write_new_blob(job, blob_id)

    async def list_messages(
        self,
        mailbox_id: MailboxId,
        uid_min: int = 1,
        uid_max: int | None = None,
        *,
        summaries: bool = True,
        structures: bool = True,
    ) -> list[Message]:
        hi = uid_max if uid_max is not None else 1 << 62
        if not summaries:
            # the messages table alone: what IMAP SELECT and STATUS need, fast
            return await self._read(
                lambda c: [
                    _light_message_of(r)
                    for r in c.execute(
                        "SELECT mailbox_id, uid, modseq, flags, internal_date, size, blob_id "
                        "FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid",
                        (mailbox_id, uid_min, hi),
                    )
                ]
            )
        cols, make = (_MSG_COLS, _message_of) if structures else (_TEXT_COLS, _text_message_of)
        # made in the reader thread, as the rows are read: a range may be a mailbox
        return await self._read(
            lambda c: [
                make(r)
                for r in c.execute(
                    f"SELECT {cols} FROM {_MSG_FROM} WHERE m.mailbox_id = ? "
                    "AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
                    (mailbox_id, uid_min, hi),
                )
            ]
        )

    async def list_meta(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[MetaRow]:
        hi = uid_max if uid_max is not None else 1 << 62
        rows: list[MetaRow] = await self._read(
            lambda c: c.execute(
                "SELECT m.uid, m.size, m.internal_date, b.envelope, b.bodystructure, b.body "
                f"FROM {_MSG_FROM} WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? "
                "ORDER BY m.uid",
                (mailbox_id, uid_min, hi),
            ).fetchall()
        )
        return rows

    async def list_sort_keys(self, mailbox_id: MailboxId) -> list[SortRow]:
        rows: list[SortRow] = await self._read(
            lambda c: c.execute(
                "SELECT m.uid, COALESCE(b.date, m.internal_date), m.size, b.from_addr, b.subject "
                f"FROM {_MSG_FROM} WHERE m.mailbox_id = ? ORDER BY m.uid",
                (mailbox_id,),
            ).fetchall()
        )
        return rows

    async def list_bodies(
        self, mailbox_id: MailboxId, uid_min: int, uid_max: int
    ) -> list[tuple[Uid, bytes]]:
        # one query: the index's bytes come with the rows, files are read after
        rows: list[tuple[Uid, BlobId, bytes | None]] = await self._read(
            lambda c: c.execute(
                "SELECT m.uid, m.blob_id, d.data FROM messages m "
                "LEFT JOIN blob_data d ON d.id = m.blob_id "
                "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
                (mailbox_id, uid_min, uid_max),
            ).fetchall()
        )
        files = [b for _, b, data in rows if data is None and not is_inline(b)]
        read = await self.read_blobs(files) if files else {}
        out: list[tuple[Uid, bytes]] = []
        for uid, blob_id, data in rows:
            if data is None:
                data = read.get(blob_id)
                if data is None:
                    continue
            out.append((uid, data))
        return out

    async def maildrop(self, mailbox_id: MailboxId) -> list[MaildropItem]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT m.uid, m.blob_id, b.crlf_size, m.flags FROM messages m "
                "JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ? ORDER BY m.uid",
                (mailbox_id,),
            ).fetchall()
        )
        return [MaildropItem(u, b, n, "\\Seen" in f.split()) for u, b, n, f in rows]

    async def list_flags(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[tuple[Uid, ModSeq, frozenset[str]]]:
        hi = uid_max if uid_max is not None else 1 << 62
        rows: list[tuple[Uid, ModSeq, str]] = await self._read(
            lambda c: c.execute(
                "SELECT uid, modseq, flags FROM messages "
                "WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid",
                (mailbox_id, uid_min, hi),
            ).fetchall()
        )
        return _with_flag_sets(rows)

    async def search_headers(
        self, mailbox_id: MailboxId, needle: str, fields: Sequence[SearchField]
    ) -> list[Uid]:
        uids = await self._read(lambda c: headers.search(c, mailbox_id, needle, fields))
        return [Uid(u) for u in uids]

    async def get_message(self, mailbox_id: MailboxId, uid: Uid) -> Message | None:
        row = await self._lookup(
            lambda c: c.execute(
                f"SELECT {_MSG_COLS} FROM {_MSG_FROM} WHERE m.mailbox_id = ? AND m.uid = ?",
                (mailbox_id, uid),
            ).fetchone()
        )
        return None if row is None else _message_of(row)

    async def get_messages(
        self, mailbox_id: MailboxId, uids: Sequence[Uid], *, structures: bool = True
    ) -> list[Message]:
        if not uids:
            return []
        cols, make = (_MSG_COLS, _message_of) if structures else (_TEXT_COLS, _text_message_of)
        marks = ",".join("?" * len(uids))
        return await self._read(
            lambda c: [
                make(r)
                for r in c.execute(
                    f"SELECT {cols} FROM {_MSG_FROM} WHERE m.mailbox_id = ? "
                    f"AND m.uid IN ({marks}) ORDER BY m.uid",
                    (mailbox_id, *uids),
                )
            ]
        )

    async def read_blob(self, blob_id: BlobId) -> bytes:
        """The message bytes; `NotFound` for an unknown (or malformed) id."""
        self._require_db()
        if not is_blob_id(blob_id):
            raise NotFound(f"no blob {blob_id!r}")
        if is_inline(blob_id):
            row = await self._lookup(
                lambda c: c.execute(
                    "SELECT data FROM blob_data WHERE id = ?", (blob_id,)
                ).fetchone()
            )
            if row is None:
                raise NotFound(f"no blob {blob_id}")
            return bytes(row[0])
        heads = await self._heads([blob_id])
        head, skip = heads.get(blob_id, (b"", 0))
        try:
            return head + await asyncio.to_thread(self.blobs.read, blob_id, skip)
        except FileNotFoundError:
            raise NotFound(f"no blob {blob_id}") from None

    async def _heads(self, blob_ids: Sequence[BlobId]) -> dict[BlobId, tuple[bytes, int]]:
        """The heads of file blobs that have one (`NewMessage.head`)."""
        if len(blob_ids) == 1:
            one = blob_ids[0]
            row = await self._lookup(
                lambda c: c.execute(
                    "SELECT head, skip FROM blob_heads WHERE id = ?", (one,)
                ).fetchone()
            )
            return {} if row is None else {one: (bytes(row[0]), int(row[1]))}
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, head, skip FROM blob_heads "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(blob_ids)),),
            ).fetchall()
        )
        return {BlobId(r[0]): (bytes(r[1]), int(r[2])) for r in rows}

    async def read_blobs(self, blob_ids: Sequence[BlobId]) -> dict[BlobId, bytes]:
        inline = [b for b in set(blob_ids) if is_inline(b)]
        files = [b for b in set(blob_ids) if is_blob_id(b) and not is_inline(b)]
        out: dict[BlobId, bytes] = {}
        if inline:
            rows = await self._read(
                lambda c: c.execute(
                    "SELECT id, data FROM blob_data WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(inline),),
                ).fetchall()
            )
            out.update((BlobId(r[0]), bytes(r[1])) for r in rows)
        if files:
            heads = await self._heads([BlobId(b) for b in files])

            def read_files() -> dict[BlobId, bytes]:
                got: dict[BlobId, bytes] = {}
                for b in files:
                    head, skip = heads.get(BlobId(b), (b"", 0))
                    with contextlib.suppress(FileNotFoundError):
                        got[BlobId(b)] = head + self.blobs.read(b, skip)
                return got

            out.update(await asyncio.to_thread(read_files))
        return out

    async def blob_path(self, blob_id: BlobId) -> Path | None:
        if not is_blob_id(blob_id) or is_inline(blob_id) or await self._heads([blob_id]):
            return None  # in the index, or the file is not the whole message
        path = self.blobs.path(blob_id)
        exists = await asyncio.to_thread(path.is_file)
        return path if exists else None

    async def store_flags(
        self,
        mailbox_id: MailboxId,
        uids: Sequence[Uid],
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> tuple[list[Message], list[Uid]]:
        """Change flags (RFC 9051 §6.4.6). Each message whose flags change gets its
        own new MODSEQ (ascending by UID); one whose flags would not change keeps
        its MODSEQ and is not returned. With `unchanged_since`, a message whose
        MODSEQ is greater is left alone and its UID returned as refused (RFC 7162
        §3.1.3). Unknown UIDs are ignored; an unknown mailbox is `NotFound`."""
        if mode not in ("add", "remove", "replace"):
            raise Invalid(f"bad flag mode {mode!r}")
        flag_set = normalize_flags(flags)

        def job(tx: Tx) -> tuple[list[Message], list[Uid]]:
            user_id = self._mailbox_owner(tx, mailbox_id)
            rows = tx.execute(
                "SELECT uid, modseq, flags, internal_date, size, blob_id FROM messages "
                "WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (mailbox_id, _json_ids(uids)),
            ).fetchall()
            refused: list[Uid] = []
            # per distinct flags text (most rows share a few): what they become
            outcome: dict[str, _NewFlags | None] = {}
            updates: list[tuple[Row, _NewFlags]] = []
            for row in rows:
                if unchanged_since is not None and row[1] > unchanged_since:
                    refused.append(Uid(row[0]))
                    continue
                text = row[2]
                new = outcome.get(text, _NOT_YET)
                if new is _NOT_YET:
                    new = outcome[text] = _new_flags(text, flag_set, mode)
                if new is not None:
                    updates.append((row, new))
            if not updates:
                return [], refused
            base = self._take_modseqs(tx, mailbox_id, len(updates))
            # one statement for all rows: with the triggers on messages, a statement
            # per row (executemany) cost 15.5 µs a row (3-4 without them), this 5.4
            tx.execute(
                _SET_FLAGS,
                (
                    base,
                    "[" + ",".join([f"[{row[0]},{new[1]}]" for row, new in updates]) + "]",
                    mailbox_id,
                ),
            )
            self._record_flags(tx, user_id, mailbox_id, [row[0] for row, _ in updates], base)
            # the rows as they are now, without a second read (and no summary)
            return [
                Message(
                    mailbox_id=mailbox_id,
                    uid=Uid(row[0]),
                    modseq=ModSeq(base + i),
                    flags=new[0],
                    internal_date=_from_us(row[3]),
                    size=row[4],
                    blob_id=BlobId(row[5]),
                    summary=_NO_SUMMARY,
                )
                for i, (row, new) in enumerate(updates)
            ], refused

        result: tuple[list[Message], list[Uid]] = await self._write(job)
        return result

    def _remove(
        self, tx: Tx, user_id: UserId, mailbox_id: MailboxId, uids: list[int], changes: list[Change]
    ) -> list[str]:
        """Delete message rows (`uids` ascending, each there), remember them in
        `expunged`; returns their blob ids.

        One statement for all rows, not one per row: inside the job's SAVEPOINT,
        with the sub-journal in memory (`Database.memory_temp`), each statement
        cost more than the one before — an EXPUNGE of 10,001 messages took the
        writer 5.4 s here and 10.2 s in `_free_blobs` (quadratic), every other
        write of the process (deliveries' 250s included) waiting behind it."""
        base = self._take_modseqs(tx, mailbox_id, len(uids))
        ids = _json_ids(uids)
        blob_ids = [
            r[0]
            for r in tx.execute(
                "DELETE FROM messages WHERE mailbox_id = ? "
                "AND uid IN (SELECT value FROM json_each(?)) RETURNING blob_id",
                (mailbox_id, ids),
            )
        ]
        # RFC 7162 §3.2.10: remembered for QRESYNC's VANISHED (EARLIER)
        tx.execute(
            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) "
            "SELECT ?, value, ? + key FROM json_each(?)",
            (mailbox_id, base, ids),
        )
        changes.extend(
            Change(user_id, mailbox_id, ChangeKind.EXPUNGE, Uid(uid), ModSeq(base + i))
            for i, uid in enumerate(uids)
        )
        return blob_ids

    async def expunge(
        self,
        mailbox_id: MailboxId,
        uids: Sequence[Uid] | None = None,
        *,
        flagged_only: bool = True,
    ) -> list[Uid]:
        """Remove messages flagged \\Deleted (only those in `uids` when given,
        RFC 4315 UID EXPUNGE); returns the UIDs removed, ascending. With
        `flagged_only=False` the `uids` go whatever their flags (POP3 UPDATE)."""
        if not flagged_only and uids is None:
            raise ValueError("flagged_only=False needs explicit uids")

        def job(tx: Tx) -> list[Uid]:
            user_id = self._mailbox_owner(tx, mailbox_id)
            sql = "SELECT uid FROM messages WHERE mailbox_id = ? "
            if flagged_only:
                sql += "AND instr(' ' || flags || ' ', ' \\Deleted ') > 0"
            params: tuple[object, ...] = (mailbox_id,)
            if uids is not None:
                sql += " AND uid IN (SELECT value FROM json_each(?))"
                params += (_json_ids(uids),)
            found = [r[0] for r in tx.execute(sql + " ORDER BY uid", params)]
            if not found:
                return []
            changes: list[Change] = []
            blob_ids = self._remove(tx, user_id, mailbox_id, found, changes)
            self._free_blobs(tx, blob_ids)
            self._record(tx, changes)
            return [Uid(u) for u in found]

        result: list[Uid] = await self._write(job)
        return result

    def _copy_job(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId, *, move: bool
    ) -> Callable[[Tx], list[tuple[Uid, Uid]]]:
        def job(tx: Tx) -> list[tuple[Uid, Uid]]:
            src_user = self._mailbox_owner(tx, src)
            dst_user = self._mailbox_owner(tx, dst)
            rows = tx.execute(
                "SELECT uid, flags, internal_date, size, blob_id FROM messages "
                "WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (src, _json_ids(uids)),
            ).fetchall()
            if not rows:
                return []
            if not move or src_user != dst_user:
                self._check_quota(tx, dst_user, sum(r[3] for r in rows))
            first_uid, first_modseq = self._take_uids(tx, dst, len(rows))
            pairs: list[tuple[Uid, Uid]] = []
            changes: list[Change] = []
            for i, (uid, flags, date, size, blob_id) in enumerate(rows):
                _insert_message(
                    tx, dst, first_uid + i, first_modseq + i, flags, date, size, blob_id
                )
                pairs.append((Uid(uid), Uid(first_uid + i)))
                changes.append(
                    Change(
                        dst_user,
                        dst,
                        ChangeKind.EXISTS,
                        Uid(first_uid + i),
                        ModSeq(first_modseq + i),
                    )
                )
            if move:
                self._remove(tx, src_user, src, [r[0] for r in rows], changes)
            self._record(tx, changes)
            return pairs

        return job

    async def copy(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId
    ) -> list[tuple[Uid, Uid]]:
        """Copy keeping flags and internal date (RFC 9051 §6.4.7), sharing the blob;
        returns (source uid, new uid) ascending. `QuotaExceeded` when the copies
        would not fit; `NotFound` for an unknown mailbox."""
        result: list[tuple[Uid, Uid]] = await self._write(
            self._copy_job(src, uids, dst, move=False)
        )
        return result

    async def move(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId
    ) -> list[tuple[Uid, Uid]]:
        """Atomic copy + expunge from `src` in one transaction (RFC 6851 §3.3)."""
        result: list[tuple[Uid, Uid]] = await self._write(self._copy_job(src, uids, dst, move=True))
        return result

    async def changed_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Message]:
        # the messages are made in the reader thread: after a STORE 1:* on 8,000
        # messages, making them on the loop held it 30-50 ms (IMAP's sync)
        return await self._read(
            lambda c: [
                _message_of(r)
                for r in c.execute(
                    f"SELECT {_MSG_COLS} FROM {_MSG_FROM} WHERE m.mailbox_id = ? "
                    "AND m.modseq > ? ORDER BY m.uid",
                    (mailbox_id, modseq),
                )
            ]
        )

    async def vanished_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Uid]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, modseq),
            ).fetchall()
        )
        return [Uid(r[0]) for r in rows]

    async def quota_usage(self, user_id: UserId) -> tuple[int, int]:
        def read(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute("SELECT quota_bytes FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                raise NotFound(f"no user with id {user_id}")
            used = conn.execute(
                "SELECT COALESCE(SUM(n_octets), 0) FROM mailboxes WHERE user_id = ?",
                (user_id,),
            ).fetchone()[0]
            return int(used), int(row[0])

        result: tuple[int, int] = await self._lookup(read)
        return result

    # --- URLAUTH (RFC 4467) -------------------------------------------------
    async def access_key(self, mailbox_id: MailboxId, new: bytes | None = None) -> bytes | None:
        def get(c: sqlite3.Connection) -> bytes | None:
            row = c.execute(
                "SELECT key FROM access_keys WHERE mailbox_id = ?", (mailbox_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        if new is None:
            return await self._lookup(get)

        def job(tx: Tx) -> bytes:
            try:
                tx.execute(
                    "INSERT OR IGNORE INTO access_keys (mailbox_id, key) VALUES (?, ?)",
                    (mailbox_id, new),
                )
            except sqlite3.IntegrityError:  # the mailbox does not exist (foreign key)
                raise NotFound(f"no mailbox with id {mailbox_id}") from None
            key = get(tx.conn)
            assert key is not None
            return key

        return await self._write(job)

    async def reset_access_keys(self, user_id: UserId, mailbox_id: MailboxId | None = None) -> None:
        sql = (
            "DELETE FROM access_keys WHERE mailbox_id IN "
            "(SELECT id FROM mailboxes WHERE user_id = ? AND (? IS NULL OR id = ?))"
        )

        def job(tx: Tx) -> None:
            tx.execute(sql, (user_id, mailbox_id, mailbox_id))

        await self._write(job)

    # --- change feed -------------------------------------------------------
    def subscribe(self, user_id: UserId) -> Subscription:
        self._require_db()
        sub = self._hub.subscribe(user_id)
        if self._poller is None or self._poller.done():
            since = _now_us() - 1_000_000
            self._poller = asyncio.get_running_loop().create_task(
                self._poll(since), name="postier-store-feed-poll"
            )
        return sub

    async def _poll(self, since_us: int) -> None:
        """Publish other processes' changes while this process has subscribers.

        A tick costs one ``PRAGMA data_version`` on the event loop's own read
        connection: the number moves whenever another connection (another
        worker's, or this process's writer) commits, so the change log is read
        only after a commit, and an idle server reads nothing."""
        last: int = await self._read(
            lambda c: c.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE at < ?", (since_us,)
            ).fetchone()[0]
        )
        seen: int | None = None
        while self._hub.has_subscribers:
            await asyncio.sleep(self.poll_interval)
            try:
                version: int | None = self._require_db().read_now(_data_version)
            except (sqlite3.Error, StoreError):
                version = None  # busy (or closing): read the log to be sure
            if version is not None and version == seen:
                continue
            try:
                rows = await self._read(functools.partial(_changes_after, seq=last))
            except (sqlite3.Error, RuntimeError, StoreError):
                log.exception("change feed poll failed")
                continue
            seen = version
            foreign = []
            for seq, origin, user_id, mailbox_id, kind, uid, modseq in rows:
                last = seq
                if origin != self._origin:
                    foreign.append(
                        Change(
                            UserId(user_id),
                            MailboxId(mailbox_id),
                            ChangeKind(kind),
                            None if uid is None else Uid(uid),
                            None if modseq is None else ModSeq(modseq),
                        )
                    )
            self._hub.publish(foreign)

    # --- outbound queue ----------------------------------------------------
    @staticmethod
    def _insert_queue(
        tx: Tx, qid: QueueId, entry: NewQueueEntry, blob_id: BlobId, size: int
    ) -> None:
        now = _now_us()
        try:
            tx.execute(
                "INSERT INTO queue (id, sender, blob_id, size, created, next_attempt, envid, "
                "ret, smtputf8, body_8bit, auth_user, is_bounce, return_path_size, "
                "dkim_signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    qid,
                    entry.sender,
                    blob_id,
                    size,
                    now,
                    now,
                    entry.envid,
                    entry.ret,
                    int(entry.smtputf8),
                    int(entry.body_8bit),
                    entry.auth_user,
                    int(entry.is_bounce),
                    entry.return_path_size,
                    entry.dkim_signature,
                ),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"queue id {qid} exists already") from None
        SqliteStore._insert_recipients(tx, qid, entry.recipients)

    @staticmethod
    def _insert_recipients(tx: Tx, qid: QueueId, rcpts: Sequence[QueueRecipient]) -> None:
        tx.execute("DELETE FROM queue_recipients WHERE qid = ?", (qid,))
        tx.conn.executemany(
            "INSERT INTO queue_recipients (qid, position, address, state, last_reply, notify, "
            "orcpt) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (qid, i, r.address, RcptState(r.state).value, r.last_reply, r.notify, r.orcpt)
                for i, r in enumerate(rcpts)
            ],
        )

    async def queue_list(self) -> list[QueueEntry]:
        result: list[QueueEntry] = await self._read(
            lambda c: _queue_entries(
                c, c.execute(f"SELECT {_QUEUE_COLS} FROM queue ORDER BY created, id").fetchall()
            )
        )
        return result

    async def queue_get(self, qid: QueueId) -> QueueEntry | None:
        entries = await self._read(
            lambda c: _queue_entries(
                c, c.execute(f"SELECT {_QUEUE_COLS} FROM queue WHERE id = ?", (qid,)).fetchall()
            )
        )
        return entries[0] if entries else None

    async def queue_due(self, now: datetime, limit: int) -> list[QueueEntry]:
        """Entries not held, due at `now` and not claimed (or whose claim expired),
        oldest first; claimed until `now + claim_timeout` in the same transaction,
        so no other runner of any process takes them until `queue_update`."""
        now_us = _to_us(now)
        until = now_us + int(self.claim_timeout * 1_000_000)

        def job(tx: Tx) -> list[QueueEntry]:
            rows = tx.execute(
                f"SELECT {_QUEUE_COLS} FROM queue WHERE held = 0 AND next_attempt <= ? "
                "AND (claimed_until IS NULL OR claimed_until <= ?) "
                "ORDER BY created, id LIMIT ?",
                (now_us, now_us, max(limit, 0)),
            ).fetchall()
            tx.conn.executemany(
                "UPDATE queue SET claimed_until = ? WHERE id = ?", [(until, r[0]) for r in rows]
            )
            return _queue_entries(tx.conn, rows)

        result: list[QueueEntry] = await self._write(job)
        return result

    async def queue_release_claims(self) -> int:
        """The embedded store has one runner (the serving process): any claim
        left at its start belongs to a runner that died."""

        def job(tx: Tx) -> int:
            cur = tx.execute(
                "UPDATE queue SET claimed_until = NULL WHERE claimed_until IS NOT NULL"
            )
            return int(cur.rowcount)

        released: int = await self._write(job)
        return released

    async def queue_next_due(self) -> datetime | None:
        """When the next entry not held becomes due (a claimed entry: when its claim
        expires, if later)."""
        value = await self._read(
            lambda c: c.execute(
                "SELECT MIN(MAX(next_attempt, COALESCE(claimed_until, 0))) FROM queue "
                "WHERE held = 0"
            ).fetchone()[0]
        )
        return None if value is None else _from_us(value)

    async def queue_update(
        self,
        qid: QueueId,
        recipients: Sequence[QueueRecipient],
        *,
        next_attempt: datetime,
        attempts: int,
        last_error: str,
        keep_claim: bool = False,
    ) -> None:
        next_us = _to_us(next_attempt)
        release = "" if keep_claim else ", claimed_until = NULL"

        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE queue SET next_attempt = ?, attempts = ?, last_error = ?"
                f"{release} WHERE id = ?",
                (next_us, attempts, last_error, qid),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no queue entry {qid}")
            self._insert_recipients(tx, qid, recipients)

        await self._write(job)

    async def _queue_set(self, qid: QueueId, sql: str, params: tuple[object, ...]) -> None:
        def job(tx: Tx) -> None:
            if tx.execute(sql, (*params, qid)).rowcount == 0:
                raise NotFound(f"no queue entry {qid}")

        await self._write(job)

    async def queue_set_next_attempt(self, qid: QueueId, when: datetime) -> None:
        await self._queue_set(
            qid, "UPDATE queue SET next_attempt = ? WHERE id = ?", (_to_us(when),)
        )

    async def queue_hold(self, qid: QueueId, held: bool) -> None:
        await self._queue_set(qid, "UPDATE queue SET held = ? WHERE id = ?", (int(held),))

    async def queue_delete(self, qid: QueueId) -> None:
        def job(tx: Tx) -> None:
            row = tx.execute("DELETE FROM queue WHERE id = ? RETURNING blob_id", (qid,)).fetchone()
            if row is None:
                raise NotFound(f"no queue entry {qid}")
            self._free_blobs(tx, [row[0]])

        await self._write(job)

    # --- trace -------------------------------------------------------------
    async def trace_add(self, qid: QueueId, event: str, detail: str) -> None:
        at = _now_us()

        def job(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO trace (qid, at, event, detail) VALUES (?, ?, ?, ?)",
                (qid, at, event, detail),
            )

        await self._write(job)

    async def trace_get(self, qid: QueueId) -> list[TraceEvent]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT at, event, detail FROM trace WHERE qid = ? ORDER BY id", (qid,)
            ).fetchall()
        )
        return [TraceEvent(qid, _from_us(r[0]), r[1], r[2]) for r in rows]

    async def trace_count(self, event: str, since: datetime, detail_prefix: str = "") -> int:
        args = (event, _to_us(since), len(detail_prefix), detail_prefix)
        row = await self._read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM trace WHERE event = ? AND at >= ? "
                "AND substr(detail, 1, ?) = ?",
                args,
            ).fetchone()
        )
        return int(row[0])

    # --- webmail sessions and server secrets (issue 15) ----------------------
    async def web_session_add(
        self,
        key: bytes,
        user_id: UserId,
        csrf: str,
        now: datetime,
        *,
        keep: int,
        idle_before: datetime,
    ) -> None:
        at, idle = _to_us(now), _to_us(idle_before)

        def job(tx: Tx) -> None:
            if tx.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise NotFound(f"no user with id {user_id}")
            tx.execute("DELETE FROM web_sessions WHERE last_seen < ?", (idle,))
            tx.execute(
                "INSERT INTO web_sessions (key, user_id, csrf, created, last_seen) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, user_id, csrf, at, at),
            )
            tx.execute(
                "DELETE FROM web_sessions WHERE user_id = ? AND key NOT IN (SELECT key "
                "FROM web_sessions WHERE user_id = ? ORDER BY last_seen DESC LIMIT ?)",
                (user_id, user_id, keep),
            )

        await self._write(job)

    async def web_session_get(self, key: bytes) -> WebSession | None:
        row = await self._lookup(
            lambda c: c.execute(
                "SELECT s.user_id, u.address, u.admin, s.csrf, s.created, s.last_seen "
                "FROM web_sessions s JOIN users u ON u.id = s.user_id "
                "WHERE s.key = ? AND u.disabled = 0",
                (key,),
            ).fetchone()
        )
        if row is None:
            return None
        return WebSession(
            UserId(row[0]), row[1], bool(row[2]), row[3], _from_us(row[4]), _from_us(row[5])
        )

    async def web_session_touch(self, key: bytes, now: datetime) -> None:
        at = _to_us(now)

        def job(tx: Tx) -> None:
            tx.execute(
                "UPDATE web_sessions SET last_seen = max(last_seen, ?) WHERE key = ?", (at, key)
            )

        await self._write(job)

    async def web_session_delete(self, key: bytes) -> None:
        def job(tx: Tx) -> None:
            tx.execute("DELETE FROM web_sessions WHERE key = ?", (key,))

        await self._write(job)

    async def server_secret(self, name: str) -> bytes:
        def read(c: sqlite3.Connection) -> Any:
            return c.execute("SELECT value FROM server_secrets WHERE name = ?", (name,)).fetchone()

        row = await self._lookup(read)
        if row is not None:
            return bytes(row[0])
        new = secrets.token_bytes(32)

        def job(tx: Tx) -> bytes:
            tx.execute(
                "INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)", (name, new)
            )
            return bytes(read(tx.conn)[0])

        return await self._write(job)

    # --- greylisting (issue 7) ---------------------------------------------
    async def greylist_check(
        self,
        network: str,
        sender: str,
        recipient: str,
        *,
        now: datetime,
        delay: float,
        window: float,
        whitelist_period: float,
        spf_domain: str = "",
    ) -> GreylistDecision:
        now_us = _to_us(now)
        delay_us = int(delay * 1_000_000)
        window_us = int(window * 1_000_000)
        until = now_us + int(whitelist_period * 1_000_000)

        def job(tx: Tx) -> GreylistDecision:
            # expiry on the way: old triplets and lapsed whitelist entries
            tx.execute("DELETE FROM greylist WHERE first_seen < ?", (now_us - window_us,))
            tx.execute("DELETE FROM greylist_pass WHERE expires < ?", (now_us,))
            for kind, value, outcome in (
                ("net", network, GreylistOutcome.WHITELISTED_NETWORK),
                ("domain", spf_domain, GreylistOutcome.WHITELISTED_DOMAIN),
            ):
                if not value:
                    continue
                cur = tx.execute(
                    "UPDATE greylist_pass SET expires = ? WHERE kind = ? AND value = ?",
                    (until, kind, value),
                )
                if cur.rowcount:
                    return GreylistDecision(outcome)
            key = (network, sender, recipient)
            row = tx.execute(
                "SELECT first_seen FROM greylist WHERE network = ? AND sender = ? "
                "AND recipient = ?",
                key,
            ).fetchone()
            if row is None:
                tx.execute(
                    "INSERT INTO greylist (network, sender, recipient, first_seen, last_seen, "
                    "attempts) VALUES (?, ?, ?, ?, ?, 1)",
                    (*key, now_us, now_us),
                )
                return GreylistDecision(GreylistOutcome.NEW, delay)
            age = now_us - int(row[0])
            if age < delay_us:
                tx.execute(
                    "UPDATE greylist SET last_seen = ?, attempts = attempts + 1 "
                    "WHERE network = ? AND sender = ? AND recipient = ?",
                    (now_us, *key),
                )
                return GreylistDecision(GreylistOutcome.TOO_EARLY, (delay_us - age) / 1e6)
            tx.execute(
                "DELETE FROM greylist WHERE network = ? AND sender = ? AND recipient = ?", key
            )
            for kind, value in (("net", network), ("domain", spf_domain)):
                if value:
                    tx.execute(
                        "INSERT INTO greylist_pass (kind, value, expires) VALUES (?, ?, ?) "
                        "ON CONFLICT (kind, value) DO UPDATE SET expires = excluded.expires",
                        (kind, value, until),
                    )
            return GreylistDecision(GreylistOutcome.RETRY_PASSED)

        return await self._write(job)

    # --- Bayes token counts (issue 7) --------------------------------------
    async def bayes_learn(
        self, model: UserId, digest: str, tokens: Sequence[str], is_spam: bool
    ) -> bool:
        unique = sorted(set(tokens))

        def job(tx: Tx) -> bool:
            row = tx.execute(
                "SELECT is_spam FROM bayes_seen WHERE model = ? AND digest = ?", (model, digest)
            ).fetchone()
            if row is not None and bool(row[0]) == is_spam:
                return False
            tx.execute(
                "INSERT OR IGNORE INTO bayes_totals (model, spam, ham) VALUES (?, 0, 0)",
                (model,),
            )
            add_col, sub_col = ("spam", "ham") if is_spam else ("ham", "spam")
            if row is not None:  # learned as the other class before: move it over
                tx.execute(
                    f"UPDATE bayes_totals SET {sub_col} = MAX({sub_col} - 1, 0) WHERE model = ?",
                    (model,),
                )
                tx.conn.executemany(
                    f"UPDATE bayes_tokens SET {sub_col} = MAX({sub_col} - 1, 0) "
                    "WHERE model = ? AND token = ?",
                    [(model, t) for t in unique],
                )
            tx.execute(
                f"UPDATE bayes_totals SET {add_col} = {add_col} + 1 WHERE model = ?", (model,)
            )
            spam, ham = (1, 0) if is_spam else (0, 1)
            tx.conn.executemany(
                "INSERT INTO bayes_tokens (model, token, spam, ham) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, token) DO UPDATE SET spam = spam + excluded.spam, "
                "ham = ham + excluded.ham",
                [(model, t, spam, ham) for t in unique],
            )
            tx.execute(
                "INSERT INTO bayes_seen (model, digest, is_spam) VALUES (?, ?, ?) "
                "ON CONFLICT (model, digest) DO UPDATE SET is_spam = excluded.is_spam",
                (model, digest, int(is_spam)),
            )
            return True

        return await self._write(job)

    async def bayes_counts(self, model: UserId, tokens: Sequence[str]) -> BayesCounts:
        unique = sorted(set(tokens))

        def read(conn: sqlite3.Connection) -> BayesCounts:
            row = conn.execute(
                "SELECT spam, ham FROM bayes_totals WHERE model = ?", (model,)
            ).fetchone()
            counts: dict[str, tuple[int, int]] = {}
            for i in range(0, len(unique), 500):  # stay under SQLite's variable limit
                chunk = unique[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for token, spam, ham in conn.execute(
                    f"SELECT token, spam, ham FROM bayes_tokens WHERE model = ? "
                    f"AND token IN ({marks})",
                    (model, *chunk),
                ):
                    counts[token] = (int(spam), int(ham))
            if row is None:
                return BayesCounts(0, 0, counts)
            return BayesCounts(int(row[0]), int(row[1]), counts)

        return await self._read(read)
