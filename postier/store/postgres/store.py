"""`PostgresStore`: the `store.api.Store` backend for several nodes over one PostgreSQL.

Everything lives in the database: the index, the message bytes (``blob_chunks``,
`schema.py`), the queue, greylisting and Bayes state. A node keeps nothing of
its own but caches, so N identical nodes can serve the same mail.

Rules (those of `postier.store.sqlite.store`, which this mirrors, plus):
- Order for every accepted message: the bytes and the index rows commit in the
  same group-committed transaction (`db.py`), then the method returns. A message
  larger than `inline_max` has its chunks committed first in a transaction of
  their own (a large insert would hold up the group commit); its index
  transaction then names them. If that fails the chunks are deleted at once; a
  crash in between leaves chunks no blob row names, which `open()` sweeps after
  `orphan_grace` seconds.
- A blob row and its chunks live as long as a message or queue entry references
  them: the transaction that drops the last reference deletes them.
- UIDs and MODSEQs are taken with ``UPDATE mailboxes ... RETURNING``: the row
  lock serialises every writer of a mailbox, on every node, so UIDs strictly
  increase and MODSEQs stay consistent whichever node writes.
- UIDVALIDITY comes from one counter row, ``max(now in seconds, last + 1)``,
  updated atomically (no two nodes hand out the same value).
- Change feed: each write's `Change`s go out as NOTIFY payloads on this
  database's channel in the writing transaction, so PostgreSQL delivers them on
  commit, in commit order, to every node's listener connection; the writing node
  publishes its own after commit (before the caller returns) and skips its own
  notifications. A node whose listener connection drops cuts its subscriptions
  off (`FeedOverflow`): sessions re-read their mailbox instead of missing changes.
- Queue claims are leases: ``claimed_until``, ``claimed_by`` (this node's
  name) and the database session of this node's listener connection
  (``claimed_pid``, ``claimed_start``). ``SELECT ... FOR UPDATE SKIP LOCKED``
  lets runners of several nodes claim at once without waiting for or taking
  each other's entries. A lease ends when it is released (the runner's last
  update of its round), when it runs out (`claim_timeout`), or when its session
  is gone from ``pg_stat_activity``: a killed node's connections close with it,
  so other nodes take its entries at once. A node whose listener merely
  reconnected moves its leases to the new session (between the two, another
  node may take them: at worst one delivery twice). `queue_release_claims`
  releases only this node's own (a restarted node).
- Text sorts as SQLite does (``COLLATE "C"``, by code point), whatever the
  database's collation.
- `get_domain` and `resolve` answer from per-process caches (SMTP asks them for
  every recipient). Every write job that changes users, domains or aliases
  marks its `Tx` (`_accounts_changed`): its NOTIFY carries ``"a"`` and every
  other process drops its caches when it arrives; this one drops them after
  commit. An answer read before a drop is never cached after it (a generation
  counter), and nothing is cached while the feed connection is down.
"""

# ruff: noqa: S608  -- SQL is assembled only from the column-list constants below;
# every value is a bound parameter.
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import asyncpg

from postier.mail.queueid import QueueId, new_queue_id
from postier.mail.summary import MessageSummary
from postier.store.api import FlagMode, SearchField, Subscription
from postier.store.blobs import is_blob_id, new_blob_id
from postier.store.errors import Conflict, Invalid, NotFound, QuotaExceeded, StoreError
from postier.store.feed import ChangeHub
from postier.store.models import (
    SPECIAL_USE,
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
from postier.store.postgres import schema
from postier.store.postgres.db import Database, Many, Tx, rowcount
from postier.store.sqlite.keyfiles import valid_selector
from postier.store.sqlite.store import (
    _MAX_UIDVALIDITY,
    SPECIAL_USE_ATTRIBUTES,
    _address_key,
    _domain_key,
    _domain_of,
    _flag_changes,
    _flags_of,
    _flags_text,
    _from_us,
    _is_under,
    _now_us,
    _source_key,
    _stored,
    _to_us,
    _with_flag_sets,
    _zone,
    _zone_of,
    normalize_flags,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Row: TypeAlias = asyncpg.Record

#: NOTIFY payloads must stay under 8000 octets; a change is at most ~70 as JSON
_CHANGES_PER_NOTIFY = 80

#: past this many rows, a list's objects are made in a thread (`_made`)
_MAKE_INLINE = 64


async def _made(make: Callable[[Row], T], rows: list[Row]) -> list[T]:
    """`make` of each row, past `_MAKE_INLINE` rows in a thread: asyncpg hands
    the rows over at once, and making 50,000 Messages of a mailbox held the
    event loop 480 ms in one step (the thread takes the GIL in 5 ms turns)."""
    if len(rows) <= _MAKE_INLINE:
        return [make(r) for r in rows]
    return await asyncio.to_thread(lambda: [make(r) for r in rows])


def _flag_updates(
    rows: list[Row], flags: frozenset[str], mode: FlagMode, unchanged_since: ModSeq | None
) -> tuple[list[int], list[str], list[Uid]]:
    """Of `store_flags`'s locked (uid, modseq, flags) rows: the UIDs whose flags
    change, their new flags text, and the UIDs refused by UNCHANGEDSINCE."""
    refused: list[Uid] = []
    uids: list[int] = []
    texts: list[str] = []
    for uid, modseq, text in rows:
        if unchanged_since is not None and modseq > unchanged_since:
            refused.append(Uid(uid))
            continue
        old = _flags_of(text)
        new = _stored(old, flags, mode)
        if new != old:
            uids.append(uid)
            texts.append(_flags_text(new))
    return uids, texts, refused


@dataclass(frozen=True)
class _Blob:
    """A message's bytes, ready for the index transaction."""

    id: BlobId
    size: int
    summary: MessageSummary
    data: bytes | None  # None: the chunks were committed beforehand (large message)


_MSG_COLS = (
    "m.mailbox_id, m.uid, m.modseq, m.flags, m.internal_date, m.size, m.blob_id, "
    "b.envelope, b.bodystructure, b.body, b.subject, b.from_addr, b.to_addr, b.cc, "
    "b.date, b.message_id, b.preview, b.header_size, b.crlf_size, b.date_zone, b.bcc"
)
_MSG_FROM = "messages m JOIN blobs b ON b.id = m.blob_id"
_TEXT_COLS = (
    "m.mailbox_id, m.uid, m.modseq, m.flags, m.internal_date, m.size, m.blob_id, "
    "b.subject, b.from_addr, b.to_addr, b.cc, b.date, b.message_id, b.header_size, "
    "b.crlf_size, b.date_zone, b.bcc"
)
#: the listener connection's session is what this node's leases and locks live
#: as long as: TCP keepalives let PostgreSQL notice within a minute a node whose
#: machine vanished without closing it (a killed process closes it at once)
KEEPALIVE_SETTINGS = {
    "tcp_keepalives_idle": "20",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "4",
}
#: the database session that took a queue entry's lease is still there
_CLAIMER_ALIVE = (
    "EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = q.claimed_pid "
    "AND a.backend_start = q.claimed_start)"
)
#: a queue entry no live runner holds: never claimed, lease run out, or its node's
#: session gone (the node died: its database connection closed with it)
_UNCLAIMED = (
    "(claimed_until IS NULL OR claimed_until <= $1 "
    f"OR (claimed_pid IS NOT NULL AND NOT {_CLAIMER_ALIVE}))"
)
#: `Store.search_headers`'s fields → the casefolded columns (schema V4)
_FOLDED = {
    "subject": "subject_fold",
    "from": "from_fold",
    "to": "to_fold",
    "cc": "cc_fold",
    "bcc": "bcc_fold",
}
#: a run of three letters or digits: what gives pg_trgm a trigram to look up
_TRIGRAM = re.compile(r"[A-Za-z0-9]{3}")


def _like_pattern(folded: bytes) -> str | None:
    """The LIKE pattern of the header index for a casefolded needle, or None when
    the index cannot narrow the search (no trigram in it: a scan is cheaper).

    The index holds ``encode(field, 'escape')``: each byte on its own becomes
    itself, ``\\`` (a backslash) or ``\\ooo`` (NUL and bytes of 128 and up), so
    a needle inside a field is, escaped, inside the escaped field: the pattern
    never misses a row (it may take some the exact test then drops)."""
    escaped = "".join(
        "\\\\" if b == 0x5C else f"\\{b:03o}" if b == 0 or b >= 0x80 else chr(b) for b in folded
    )
    if not _TRIGRAM.search(escaped):
        return None
    like = escaped.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{like}%"


#: one message row of a delivery: the mailbox (INBOX when the one named is
#: missing), its next UID and MODSEQ taken, the row inserted; the CTEs of one
#: statement, its parameters numbered from {0} (user id, mailbox name, flags,
#: internal date, size, blob id)
_DELIVER_ONE = (
    "x AS (SELECT id FROM mailboxes WHERE user_id = ${0} "
    "AND name IN (${1}, 'INBOX') ORDER BY name = 'INBOX' LIMIT 1), "
    "up AS (UPDATE mailboxes m SET uidnext = m.uidnext + 1, "
    "highestmodseq = m.highestmodseq + 1 FROM x WHERE m.id = x.id "
    "RETURNING m.id, m.uidnext - 1 AS uid, m.highestmodseq AS modseq), "
    "ins AS (INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, "
    "blob_id) SELECT id, uid, modseq, ${2}, ${3}, ${4}, ${5} FROM up) "
    "SELECT id, uid, modseq FROM up"
)


#: a blob row, its chunks and trace lines: CTEs of one statement, parameters $1 to
#: $26 (`PostgresStore._blob_ctes`)
_BLOB_CTES = (
    "WITH b AS (INSERT INTO blobs (id, size, envelope, bodystructure, body, subject, "
    "from_addr, to_addr, cc, date, message_id, preview, header_size, crlf_size, "
    "date_zone, bcc, subject_fold, from_fold, to_fold, cc_fold, bcc_fold) VALUES ($1, "
    "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $21, $22, $23, $24, "
    "$25, $26)), "
    "c AS (INSERT INTO blob_chunks (blob_id, seq, written, data) "
    "SELECT $1, n - 1, $16, d FROM unnest($17::bytea[]) WITH ORDINALITY AS v(d, n)), "
    "t AS (INSERT INTO trace (qid, at, event, detail) "
    "SELECT $18, $16, e, d FROM unnest($19::text[], $20::text[]) WITH ORDINALITY "
    "AS v(e, d, n) ORDER BY n) "
)
#: a delivery to one mailbox in one statement: the blob and the message row
_DELIVER_SQL = _BLOB_CTES + ", " + _DELIVER_ONE.format(*range(27, 33))


@dataclass(frozen=True)
class _OneDelivery:
    """A delivery to one mailbox, as `PostgresStore._deliver_many` takes it."""

    qid: str
    blob_id: BlobId
    user_id: UserId
    args: list[Any]  # `_DELIVER_SQL`'s


def _dollar(text: str) -> str:
    """A dollar-quoted SQL literal of text we made (a channel name, a payload)."""
    if "$n$" in text:
        raise ValueError("text for a dollar-quoted literal holds its delimiter")
    return f"$n${text}$n$"


#: a marker among a write's `Tx.changes`: users, domains or aliases changed, so
#: every node drops what it cached of them (`PostgresStore._accounts_changed`)
_ACCOUNTS = object()
#: entries in each of the account caches, at most (all dropped when full)
_CACHE_MAX = 4096

_LIGHT_COLS = "mailbox_id, uid, modseq, flags, internal_date, size, blob_id"
_NO_SUMMARY = MessageSummary()


def _bytes(text: str) -> bytes:
    """Summary text as stored: exact, though PostgreSQL text holds neither NUL
    nor lone surrogates (a message's decoded subject or preview may have both)."""
    return text.encode("utf-8", "surrogatepass")


def _str(data: bytes) -> str:
    return bytes(data).decode("utf-8", "surrogatepass")


def _safe(text: str) -> str:
    """Text fit for a PostgreSQL text column: NUL and lone surrogates become
    U+FFFD. For diagnostics (trace, remote replies) and Bayes tokens, where the
    exact code points do not matter."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _base(row: Row) -> dict[str, Any]:
    return {
        "mailbox_id": MailboxId(row[0]),
        "uid": Uid(row[1]),
        "modseq": ModSeq(row[2]),
        "flags": _flags_of(row[3]),
        "internal_date": _from_us(row[4]),
        "size": row[5],
        "blob_id": BlobId(row[6]),
    }


def _light_message_of(row: Row) -> Message:
    return Message(**_base(row), summary=_NO_SUMMARY)


def _message_of(row: Row) -> Message:
    return Message(
        **_base(row),
        summary=MessageSummary(
            envelope=bytes(row[7]),
            bodystructure=bytes(row[8]),
            body=bytes(row[9]),
            subject=_str(row[10]),
            from_=_str(row[11]),
            to=_str(row[12]),
            cc=_str(row[13]),
            date=None if row[14] is None else _from_us(row[14]).astimezone(_zone(row[19])),
            message_id=_str(row[15]),
            preview=_str(row[16]),
            header_size=row[17],
            crlf_size=row[18],
            bcc=_str(row[20]),
        ),
    )


def _text_message_of(row: Row) -> Message:
    return Message(
        **_base(row),
        summary=MessageSummary(
            subject=_str(row[7]),
            from_=_str(row[8]),
            to=_str(row[9]),
            cc=_str(row[10]),
            date=None if row[11] is None else _from_us(row[11]).astimezone(_zone(row[15])),
            message_id=_str(row[12]),
            header_size=row[13],
            crlf_size=row[14],
            bcc=_str(row[16]),
        ),
    )


_MBX_COLS = (
    "x.id, x.user_id, x.name, x.special_use, "
    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = x.user_id AND s.name = x.name), "
    "x.uidvalidity, x.uidnext, x.highestmodseq"
)
#: kept by triggers in every statement that changes message rows (schema 6)
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
        messages=row[8],
        unseen=row[9],
        size=int(row[10]),
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


async def _queue_entries(conn: asyncpg.Connection | Tx, rows: Sequence[Row]) -> list[QueueEntry]:
    if not rows:
        return []
    by_qid: dict[str, list[QueueRecipient]] = {r[0]: [] for r in rows}
    for q, a, s, lr, n, o in await conn.fetch(
        "SELECT qid, address, state, last_reply, notify, orcpt FROM queue_recipients "
        "WHERE qid = ANY($1::text[]) ORDER BY qid, position",
        list(by_qid),
    ):
        by_qid[q].append(
            QueueRecipient(address=a, state=RcptState(s), last_reply=lr, notify=n, orcpt=o)
        )
    return [
        QueueEntry(
            id=QueueId(r[0]),
            sender=r[1],
            recipients=tuple(by_qid[r[0]]),
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
        for r in rows
    ]


def default_node_name(data_dir: Path | None) -> str:
    """A name that stays the same when this node restarts and differs between
    nodes: the host name and the node's own data directory."""
    where = str(data_dir.resolve()) if data_dir is not None else ""
    digest = hashlib.sha256(where.encode()).hexdigest()[:8]
    return f"{socket.gethostname()}:{digest}"


class PostgresStore:
    """The shared store. Construct, `await open()`, use, `await close()`.

    Knobs (constructor parameters) as `SqliteStore`'s, plus:
    - `dsn`: ``postgresql://user@host:port/db`` (asyncpg's DSN syntax).
    - `node`: this node's name in queue claims (`default_node_name`).
    - `inline_max`: messages up to this size go into the group-committed
      transaction; larger ones have their chunks committed beforehand.
    - `readers`: pooled connections for reads.
    """

    def __init__(
        self,
        dsn: str,
        *,
        node: str = "",
        default_quota: int = 0,
        max_alias_depth: int = 10,
        max_mailbox_name: int = 1024,
        claim_timeout: float = 1800.0,
        orphan_grace: float = 3600.0,
        max_batch: int = 256,
        readers: int = 4,
        max_pending_changes: int = 10_000,
        inline_max: int = 256 * 1024,
    ) -> None:
        if not dsn:
            raise ValueError('store.postgres_dsn is required with store.backend = "postgres"')
        self.dsn = dsn
        self.node = node or default_node_name(None)
        self.default_quota = default_quota
        self.max_alias_depth = max_alias_depth
        self.max_mailbox_name = max_mailbox_name
        self.claim_timeout = claim_timeout
        self.orphan_grace = orphan_grace
        self.inline_max = inline_max
        self._max_batch = max_batch
        self._readers = readers
        self._hub = ChangeHub(max_pending_changes)
        self._db: Database | None = None
        self._listener: asyncpg.Connection | None = None
        #: (pid, backend start) of the listener's session: the life of this node's leases
        self._session: tuple[int, datetime] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._channel = ""
        #: identifies this instance's notifications
        self._origin = secrets.token_hex(8)
        self._notify_seq = 0
        #: blob chunk rows removed by the last startup sweep
        self.last_sweep = 0
        #: the header search's trigram index exists (schema 5, pg_trgm)
        self._header_index = False
        #: what `get_domain` and `resolve` answered (SMTP asks both for every
        #: recipient): dropped on every change of users, domains or aliases, by
        #: any node (`_accounts_changed`), and whenever the feed may have missed one
        self._domains: dict[str, Domain | None] = {}
        self._resolved: dict[str, Resolution] = {}
        #: bumped with each drop: an answer read before it is not cached after it
        self._accounts_gen = 0

    # --- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        if self._db is not None:
            raise StoreError("store is already open")
        db = Database(self.dsn, max_batch=self._max_batch, readers=self._readers)
        db.before_commit = self._notify_batch
        await db.start()
        try:
            async with db.pool.acquire() as conn:
                await schema.migrate(conn)
                self._header_index = await schema.has_header_index(conn)
                # one channel per database and schema: two installs on one server
                # never hear each other
                where = await conn.fetchval("SELECT current_database() || '.' || current_schema()")
            self._channel = "postier." + hashlib.sha256(str(where).encode()).hexdigest()[:16]
            self._db = db
            await self._start_listener()
            await self._sweep()
        except BaseException:
            self._db = None
            await self._stop_listener()
            await db.stop()
            raise

    async def _sweep(self) -> None:
        cutoff = _now_us() - int(self.orphan_grace * 1_000_000)
        status = await self._require_db().pool.execute(
            "DELETE FROM blob_chunks c WHERE c.written < $1 "
            "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = c.blob_id)",
            cutoff,
        )
        self.last_sweep = rowcount(status)
        if self.last_sweep:
            log.info("store sweep removed %d orphan blob chunk(s)", self.last_sweep)

    async def close(self) -> None:
        db = self._db
        if db is None:
            return
        await self._stop_listener()
        self._hub.close_all()
        self._db = None
        await db.stop()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def database(self) -> Database:
        """The connections (`shared.py` keeps the nodes' run-time state with them)."""
        return self._require_db()

    @property
    def session(self) -> tuple[int, datetime] | None:
        """(pid, backend start) of this node's listener session: what its queue
        leases and maildrop locks live as long as (None while reconnecting)."""
        return self._session if self._listener is not None else None

    def _require_db(self) -> Database:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def _write(self, fn: Callable[[Tx], Any]) -> Any:
        return await self._require_db().write(fn)

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._require_db().fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._require_db().fetchrow(sql, *args)

    @property
    def commits(self) -> int:
        return self._db.commits if self._db is not None else 0

    # --- change feed -------------------------------------------------------
    async def _start_listener(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings=KEEPALIVE_SETTINGS)
        try:
            await conn.add_listener(self._channel, self._on_notify)
            row = await conn.fetchrow(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
            session = (int(row[0]), row[1])
            old = self._session
            if old is not None and self._db is not None:
                # leases taken under the lost session belong to the new one (a node
                # that merely reconnected is alive)
                await self._db.pool.execute(
                    "UPDATE queue SET claimed_pid = $1, claimed_start = $2 "
                    "WHERE claimed_by = $3 AND claimed_pid = $4 AND claimed_start = $5",
                    *session,
                    self.node,
                    *old,
                )
                await self._db.pool.execute(
                    "UPDATE maildrop_locks SET holder_pid = $1, holder_start = $2 "
                    "WHERE node = $3 AND holder_pid = $4 AND holder_start = $5",
                    *session,
                    self.node,
                    *old,
                )
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_listener_lost)
        self._session = session
        self._listener = conn

    async def _stop_listener(self) -> None:
        task, self._listen_task = self._listen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_listener_lost)
            await conn.close()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            if data["o"] == self._origin:
                return
            if data.get("a"):
                self._drop_account_caches()
            # only for users subscribed here: every process of every node hears
            # every payload, and another node's STORE on 50,000 messages (625
            # payloads, one turn of the loop) cost each of them ~40 ms making
            # changes nobody here would take
            subscribed = self._hub.subscribed
            changes = [
                Change(
                    UserId(c[0]),
                    MailboxId(c[1]),
                    ChangeKind(c[2]),
                    None if c[3] is None else Uid(c[3]),
                    None if c[4] is None else ModSeq(c[4]),
                )
                for c in data["c"]
                if subscribed(c[0])
            ]
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("ignoring a malformed change notification on %s", self._channel)
            return
        self._hub.publish(changes)

    def _on_listener_lost(self, _conn: object) -> None:
        if self._db is None:
            return
        log.warning("change feed connection lost; subscriptions cut off, reconnecting")
        self._listener = None
        self._cut_off_subscribers()
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.get_running_loop().create_task(
                self._reconnect_listener(), name="postier-store-pg-listen"
            )

    def _cut_off_subscribers(self) -> None:
        """Changes may have been missed: every session must re-read its mailbox,
        and the account caches go."""
        self._drop_account_caches()
        self._hub.cut_off_all("change feed connection lost")

    # --- account caches ----------------------------------------------------
    def _drop_account_caches(self) -> None:
        self._accounts_gen += 1
        self._domains.clear()
        self._resolved.clear()

    def _accounts_changed(self, tx: Tx) -> None:
        """A write job changes users, domains or aliases: every node drops its
        caches when it commits (this one after commit, the others when the
        NOTIFY sent with the commit arrives, within milliseconds)."""
        tx.changes.append(_ACCOUNTS)
        tx.after_commit.append(self._drop_account_caches)

    def _cache(self, cache: dict[str, Any], key: str, value: object, gen: int) -> None:
        """Keep an answer read under generation `gen`, unless a drop came since
        (it may be older than the change) or the feed is down (no drop would
        come)."""
        if gen != self._accounts_gen or self._listener is None:
            return
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value

    async def _reconnect_listener(self) -> None:
        delay = 0.2
        while self._db is not None and self._listener is None:
            try:
                await self._start_listener()
            except (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                # changes committed while reconnecting went unheard
                self._cut_off_subscribers()

    async def _record(self, tx: Tx, changes: list[Change]) -> None:
        """Queue `changes` for every node (NOTIFY with the batch, sent on commit:
        `_notify_batch`) and for this process's subscribers (after commit)."""
        if not changes:
            return
        tx.changes.extend(changes)
        hub = self._hub
        tx.after_commit.append(lambda: hub.publish(changes))

    def _notify_batch(self, txs: list[Tx]) -> str:
        """The changes of a batch's successful jobs, in order, as NOTIFY payloads
        of the committing transaction, SQL sent with its COMMIT (`Database`):
        no round trip of their own. The payloads are JSON of numbers, kinds and
        hex, so a dollar-quoted literal holds them whatever the server's
        string settings."""
        changes = [c for tx in txs for c in tx.changes if c is not _ACCOUNTS]
        accounts = any(c is _ACCOUNTS for tx in txs for c in tx.changes)
        if not changes and not accounts:
            return ""
        payloads = []
        for i in range(0, max(1, len(changes)), _CHANGES_PER_NOTIFY):
            self._notify_seq += 1
            data: dict[str, object] = {
                "o": self._origin,
                # identical payloads in one transaction would be folded into one
                "n": self._notify_seq,
                "c": [
                    [c.user_id, c.mailbox_id, c.kind.value, c.uid, c.modseq]
                    for c in changes[i : i + _CHANGES_PER_NOTIFY]
                ],
            }
            if accounts and i == 0:
                data["a"] = 1  # users, domains or aliases changed: caches go
            payloads.append(json.dumps(data, separators=(",", ":")))
        return "".join(
            f"SELECT pg_notify({_dollar(self._channel)}, {_dollar(p)}); " for p in payloads
        )

    def subscribe(self, user_id: UserId) -> Subscription:
        self._require_db()
        return self._hub.subscribe(user_id)

    # --- blobs -------------------------------------------------------------
    @staticmethod
    async def _free_blobs(tx: Tx, blob_ids: Sequence[str]) -> None:
        """Drop blob rows and chunks nothing references any more."""
        ids = sorted(set(blob_ids))
        if not ids:
            return
        gone = [
            r[0]
            for r in await tx.fetch(
                "DELETE FROM blobs b WHERE b.id = ANY($1::text[]) "
                "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id) "
                "AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.blob_id = b.id) RETURNING b.id",
                ids,
            )
        ]
        if gone:
            await tx.execute("DELETE FROM blob_chunks WHERE blob_id = ANY($1::text[])", gone)

    @staticmethod
    def _read_source(message: NewMessage) -> bytes:
        """Blocking: the message's bytes (``head + file[skip:]`` for a spool file)."""
        data = message.data
        if isinstance(data, bytes):
            return data
        with open(data, "rb") as f:
            if message.skip:
                f.seek(message.skip)
            return message.head + f.read()

    async def _prepare_blob(self, message: NewMessage) -> _Blob:
        """The bytes of a small message go into the index transaction; a large
        one's chunks are committed now, in their own transaction."""
        data = message.data
        if not isinstance(data, bytes):
            data = await asyncio.to_thread(self._read_source, message)
        blob_id = new_blob_id()
        if len(data) <= self.inline_max:
            return _Blob(blob_id, len(data), message.summary, data)
        written = _now_us()
        rows = [
            (blob_id, i, written, data[off : off + schema.CHUNK])
            for i, off in enumerate(range(0, len(data), schema.CHUNK))
        ]
        async with self._require_db().pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "blob_chunks", records=rows, columns=("blob_id", "seq", "written", "data")
            )
        return _Blob(blob_id, len(data), message.summary, None)

    @staticmethod
    def _consume(message: NewMessage) -> None:
        """A spool file given to the store is consumed, stored or not."""
        if isinstance(message.data, Path):
            try:
                message.data.unlink(missing_ok=True)
            except OSError:
                log.exception("could not remove spool file %s", message.data)

    async def _write_new_blob(
        self, job: Callable[[Tx], Any], blob: _Blob, many: tuple[Many, Any] | None = None
    ) -> Any:
        """Run the job that names a blob just prepared; if it fails, chunks
        committed beforehand go at once (not at the next sweep)."""
        try:
            return await self._require_db().write(job, many)
        except BaseException:
            if blob.data is None:
                try:
                    await self._require_db().pool.execute(
                        "DELETE FROM blob_chunks WHERE blob_id = $1 "
                        "AND NOT EXISTS (SELECT 1 FROM blobs WHERE id = $1)",
                        blob.id,
                    )
                except (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError):
                    log.exception("could not remove unused blob %s (the sweep will)", blob.id)
            raise

    @staticmethod
    def _blob_ctes(
        blob: _Blob, trace: Sequence[tuple[str, str]] = (), qid: str = ""
    ) -> tuple[str, list[Any]]:
        """The blob row, its chunks (unless committed beforehand) and the trace
        lines of `qid` as the CTEs of one statement (``WITH b ..., c ..., t ...``)
        and its first 26 parameters: a statement may go on with more of its own."""
        s = blob.summary
        data = blob.data
        chunks = (
            []
            if data is None
            else [data[off : off + schema.CHUNK] for off in range(0, len(data), schema.CHUNK)]
            or [b""]
        )
        sql = _BLOB_CTES
        args = [
            blob.id,
            blob.size,
            s.envelope,
            s.bodystructure,
            s.body,
            _bytes(s.subject),
            _bytes(s.from_),
            _bytes(s.to),
            _bytes(s.cc),
            None if s.date is None else _to_us(s.date),
            _bytes(s.message_id),
            _bytes(s.preview),
            s.header_size,
            s.crlf_size,
            _zone_of(s.date),
            _now_us(),
            chunks,
            qid,
            [_safe(e) for e, _ in trace],
            [_safe(d) for _, d in trace],
            _bytes(s.bcc),
            schema.folded(s.subject),
            schema.folded(s.from_),
            schema.folded(s.to),
            schema.folded(s.cc),
            schema.folded(s.bcc),
        ]
        return sql, args

    async def _insert_blob(
        self, tx: Tx, blob: _Blob, trace: Sequence[tuple[str, str]] = (), qid: str = ""
    ) -> None:
        """`_blob_ctes` alone: one statement, one round trip."""
        sql, args = self._blob_ctes(blob, trace, qid)
        await tx.execute(sql + "SELECT 1", *args)

    # --- domains -----------------------------------------------------------
    async def add_domain(self, name: str) -> Domain:
        key = _domain_key(name)
        created = _now_us()

        async def job(tx: Tx) -> Domain:
            self._accounts_changed(tx)
            status = await tx.execute(
                "INSERT INTO domains (name, created) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                key,
                created,
            )
            if rowcount(status) == 0:
                raise Conflict(f"domain {key} exists already")
            return Domain(name=key, created=_from_us(created))

        result: Domain = await self._write(job)
        return result

    async def get_domain(self, name: str) -> Domain | None:
        try:
            key = _domain_key(name)
        except Invalid:
            return None
        if key in self._domains:
            return self._domains[key]
        gen = self._accounts_gen
        row = await self._fetchrow(
            "SELECT name, created, dkim_selector FROM domains WHERE name = $1", key
        )
        domain = None if row is None else Domain(row[0], _from_us(row[1]), row[2])
        self._cache(self._domains, key, domain, gen)
        return domain

    async def list_domains(self) -> list[Domain]:
        rows = await self._fetch(
            'SELECT name, created, dkim_selector FROM domains ORDER BY name COLLATE "C"'
        )
        return [Domain(r[0], _from_us(r[1]), r[2]) for r in rows]

    async def delete_domain(self, name: str) -> None:
        key = _domain_key(name)

        async def job(tx: Tx) -> None:
            self._accounts_changed(tx)
            if await tx.fetchrow("SELECT 1 FROM domains WHERE name = $1 FOR UPDATE", key) is None:
                raise NotFound(f"no domain {key}")
            users = await tx.fetchval("SELECT COUNT(*) FROM users WHERE domain = $1", key)
            aliases = await tx.fetchval("SELECT COUNT(*) FROM aliases WHERE domain = $1", key)
            if users or aliases:
                raise Conflict(f"domain {key} still has {users} user(s) and {aliases} alias(es)")
            await tx.execute("DELETE FROM domains WHERE name = $1", key)

        await self._write(job)

    async def set_dkim_selector(self, name: str, selector: str) -> None:
        key = _domain_key(name)

        async def job(tx: Tx) -> None:
            self._accounts_changed(tx)
            status = await tx.execute(
                "UPDATE domains SET dkim_selector = $1 WHERE name = $2", selector, key
            )
            if rowcount(status) == 0:
                raise NotFound(f"no domain {key}")

        await self._write(job)

    async def dkim_keys(self, domain: str) -> dict[str, bytes]:
        """The ``dkim_keys`` rows of the domain (`Store.dkim_keys`)."""
        key = _domain_key(domain)
        rows = await self._fetch(
            "SELECT selector, private_pem FROM dkim_keys WHERE domain = $1", key
        )
        return {r[0]: bytes(r[1]) for r in rows}

    async def add_dkim_key(self, domain: str, selector: str, private_pem: bytes) -> bytes:
        """INSERT … ON CONFLICT DO NOTHING, then the row as committed: a node that
        loses the race waits for the winner's commit and returns its key."""
        key = _domain_key(domain)
        if not valid_selector(selector):
            raise Invalid(f"bad DKIM selector {selector!r}")

        async def job(tx: Tx) -> bytes:
            await tx.execute(
                "INSERT INTO dkim_keys (domain, selector, private_pem, created) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (domain, selector) DO NOTHING",
                key,
                selector,
                private_pem,
                _now_us(),
            )
            kept = await tx.fetchval(
                "SELECT private_pem FROM dkim_keys WHERE domain = $1 AND selector = $2",
                key,
                selector,
            )
            return bytes(kept)

        result: bytes = await self._write(job)
        return result

    # --- users -------------------------------------------------------------
    async def add_user(self, address: str, password_hash: str, quota_bytes: int = 0) -> User:
        """As `SqliteStore.add_user`."""
        key = _address_key(address)
        domain = _domain_of(key)
        quota = quota_bytes or self.default_quota
        if quota < 0:
            raise Invalid("quota must not be negative")
        created = _now_us()

        async def job(tx: Tx) -> User:
            self._accounts_changed(tx)
            # the domain row lock keeps delete_domain on another node from racing us
            if await tx.fetchrow("SELECT 1 FROM domains WHERE name = $1 FOR SHARE", domain) is None:
                raise NotFound(f"no domain {domain}")
            if await tx.fetchrow("SELECT 1 FROM aliases WHERE source = $1", key):
                raise Conflict(f"{key} is an alias")
            user_id = await tx.fetchval(
                "INSERT INTO users (address, domain, password_hash, quota_bytes, created) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
                key,
                domain,
                password_hash,
                quota,
                created,
            )
            if user_id is None:
                raise Conflict(f"user {key} exists already")
            for name, special in SPECIAL_USE.items():
                await self._insert_mailbox(tx, UserId(user_id), name, special, subscribed=True)
            return User(
                id=UserId(user_id),
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
        row = await self._fetchrow(f"SELECT {_USER_COLS} FROM users WHERE address = $1", key)
        return None if row is None else _user_of(row)

    async def get_user_by_id(self, user_id: UserId) -> User | None:
        row = await self._fetchrow(f"SELECT {_USER_COLS} FROM users WHERE id = $1", user_id)
        return None if row is None else _user_of(row)

    async def list_users(self, domain: str | None = None) -> list[User]:
        if domain is None:
            rows = await self._fetch(f'SELECT {_USER_COLS} FROM users ORDER BY address COLLATE "C"')
        else:
            rows = await self._fetch(
                f'SELECT {_USER_COLS} FROM users WHERE domain = $1 ORDER BY address COLLATE "C"',
                _domain_key(domain),
            )
        return [_user_of(r) for r in rows]

    async def _update_user(self, address: str, column: str, value: object) -> None:
        key = _address_key(address)

        async def job(tx: Tx) -> None:
            self._accounts_changed(tx)
            status = await tx.execute(
                f"UPDATE users SET {column} = $1 WHERE address = $2", value, key
            )
            if rowcount(status) == 0:
                raise NotFound(f"no user {key}")

        await self._write(job)

    async def set_password(self, address: str, password_hash: str) -> None:
        key = _address_key(address)

        async def job(tx: Tx) -> None:
            self._accounts_changed(tx)
            user_id = await tx.fetchval(
                "UPDATE users SET password_hash = $1 WHERE address = $2 RETURNING id",
                password_hash,
                key,
            )
            if user_id is None:
                raise NotFound(f"no user {key}")
            # a new password (a reset, often after a leak) ends every webmail session
            await tx.execute("DELETE FROM web_sessions WHERE user_id = $1", user_id)

        await self._write(job)

    async def set_quota(self, address: str, quota_bytes: int) -> None:
        if quota_bytes < 0:
            raise Invalid("quota must not be negative")
        await self._update_user(address, "quota_bytes", quota_bytes)

    async def set_admin(self, address: str, admin: bool) -> None:
        await self._update_user(address, "admin", admin)

    async def set_disabled(self, address: str, disabled: bool) -> None:
        key = _address_key(address)

        async def job(tx: Tx) -> None:
            self._accounts_changed(tx)
            user_id = await tx.fetchval(
                "UPDATE users SET disabled = $1 WHERE address = $2 RETURNING id", disabled, key
            )
            if user_id is None:
                raise NotFound(f"no user {key}")
            if disabled:  # its webmail sessions end with it
                await tx.execute("DELETE FROM web_sessions WHERE user_id = $1", user_id)

        await self._write(job)

    async def delete_user(self, address: str) -> None:
        key = _address_key(address)

        async def job(tx: Tx) -> None:
            self._accounts_changed(tx)
            user_id = await tx.fetchval("SELECT id FROM users WHERE address = $1", key)
            if user_id is None:
                raise NotFound(f"no user {key}")
            blob_ids = [
                r[0]
                for r in await tx.fetch(
                    "SELECT DISTINCT m.blob_id FROM messages m JOIN mailboxes x "
                    "ON x.id = m.mailbox_id WHERE x.user_id = $1",
                    user_id,
                )
            ]
            await tx.execute("DELETE FROM users WHERE id = $1", user_id)  # cascades
            await self._free_blobs(tx, blob_ids)

        await self._write(job)

    # --- aliases -----------------------------------------------------------
    async def add_alias(self, source: str, targets: Sequence[str]) -> Alias:
        src = _source_key(source)
        if isinstance(targets, str):
            raise Invalid("targets must be a list of addresses")
        keys = tuple(dict.fromkeys(_address_key(t) for t in targets))
        if not keys:
            raise Invalid("an alias needs at least one target")
        domain = _domain_of(src)

        async def job(tx: Tx) -> Alias:
            self._accounts_changed(tx)
            if await tx.fetchrow("SELECT 1 FROM domains WHERE name = $1 FOR SHARE", domain) is None:
                raise NotFound(f"no domain {domain}")
            if await tx.fetchrow("SELECT 1 FROM users WHERE address = $1", src):
                raise Conflict(f"{src} is a user")
            status = await tx.execute(
                "INSERT INTO aliases (source, domain, targets) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                src,
                domain,
                list(keys),
            )
            if rowcount(status) == 0:
                raise Conflict(f"alias {src} exists already")
            return Alias(src, keys)

        result: Alias = await self._write(job)
        return result

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain is None:
            rows = await self._fetch(
                'SELECT source, targets FROM aliases ORDER BY source COLLATE "C"'
            )
        else:
            rows = await self._fetch(
                'SELECT source, targets FROM aliases WHERE domain = $1 ORDER BY source COLLATE "C"',
                _domain_key(domain),
            )
        return [Alias(r[0], tuple(r[1])) for r in rows]

    async def delete_alias(self, source: str) -> None:
        src = _source_key(source)

        async def job(tx: Tx) -> None:
            self._accounts_changed(tx)
            status = await tx.execute("DELETE FROM aliases WHERE source = $1", src)
            if rowcount(status) == 0:
                raise NotFound(f"no alias {src}")

        await self._write(job)

    async def _resolve_on(self, conn: asyncpg.Connection, key: str) -> Resolution:
        """As `SqliteStore._resolve_sync`: exact user → alias (recursively) → the
        domain's catch-all, loops and chains deeper than `max_alias_depth` cut."""
        users: dict[int, User] = {}
        remote: dict[str, None] = {}
        visited: set[str] = set()
        local_domains: dict[str, bool] = {}

        async def is_local(domain: str) -> bool:
            if domain not in local_domains:
                local_domains[domain] = (
                    await conn.fetchrow("SELECT 1 FROM domains WHERE name = $1", domain) is not None
                )
            return local_domains[domain]

        async def alias_targets(source: str) -> list[str] | None:
            row = await conn.fetchrow("SELECT targets FROM aliases WHERE source = $1", source)
            return None if row is None else list(row[0])

        async def expand(addr: str, depth: int) -> None:
            if addr in visited:
                return
            visited.add(addr)
            domain = _domain_of(addr)
            if not await is_local(domain):
                if depth > 0:
                    remote[addr] = None
                return
            row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users WHERE address = $1", addr)
            if row is not None:
                users[row[0]] = _user_of(row)
                return
            if depth >= self.max_alias_depth:
                log.warning("alias chain for %s cut at depth %d", key, depth)
                return
            targets = await alias_targets(addr)
            if targets is None:
                catch_all = "@" + domain
                if catch_all in visited:
                    return
                visited.add(catch_all)
                targets = await alias_targets(catch_all)
            for target in targets or ():
                await expand(target, depth + 1)

        await expand(key, 0)
        return Resolution(users=tuple(users.values()), remote=tuple(remote))

    async def resolve(self, address: str) -> Resolution:
        try:
            key = _address_key(address)
        except Invalid:
            return Resolution()
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        gen = self._accounts_gen
        result = await self._resolve(key)
        self._cache(self._resolved, key, result, gen)
        return result

    async def _resolve(self, key: str) -> Resolution:
        # the usual case, a user of ours (or nobody's address), in one round trip
        row = await self._fetchrow(
            f"SELECT EXISTS (SELECT 1 FROM domains WHERE name = $2), u.* FROM (SELECT 1) AS one "
            f"LEFT JOIN (SELECT {_USER_COLS} FROM users WHERE address = $1) AS u ON TRUE",
            key,
            _domain_of(key),
        )
        assert row is not None
        if not row[0]:
            return Resolution()  # not one of our domains: nothing of ours
        if row[1] is not None:
            return Resolution(users=(_user_of(tuple(row)[1:]),))
        result: Resolution = await self._require_db().read(lambda c: self._resolve_on(c, key))
        return result

    async def addresses_of(self, user_id: UserId) -> list[str]:
        async def read(conn: asyncpg.Connection) -> list[str]:
            address = await conn.fetchval("SELECT address FROM users WHERE id = $1", user_id)
            if address is None:
                return []
            out = [address]
            for (source,) in await conn.fetch(
                "SELECT source FROM aliases WHERE source NOT LIKE '@%' "
                'ORDER BY source COLLATE "C"'
            ):
                res = await self._resolve_on(conn, source)
                if not res.remote and [u.id for u in res.users] == [user_id]:
                    out.append(source)
            return out

        result: list[str] = await self._require_db().read(read)
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
            levels[0] = "INBOX"
        out = "/".join(levels)
        if len(out.encode()) > self.max_mailbox_name:
            raise Invalid(f"mailbox name longer than {self.max_mailbox_name} octets")
        return out

    @staticmethod
    async def _new_uidvalidity(tx: Tx) -> int:
        now = int(time.time())
        value = int(
            await tx.fetchval(
                "INSERT INTO meta AS m (key, value) VALUES ('uidvalidity', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = GREATEST($1, m.value + 1) "
                "RETURNING value",
                now,
            )
        )
        if value > _MAX_UIDVALIDITY:
            value = 1  # todo: year 2106, as in the SQLite backend
            await tx.execute("UPDATE meta SET value = 1 WHERE key = 'uidvalidity'")
        return value

    async def _insert_mailbox(
        self,
        tx: Tx,
        user_id: UserId,
        name: str,
        special_use: str | None,
        *,
        subscribed: bool,
        uidnext: int = 1,
    ) -> MailboxId:
        mid = await tx.fetchval(
            "INSERT INTO mailboxes (user_id, name, special_use, uidvalidity, uidnext, "
            "highestmodseq) VALUES ($1, $2, $3, $4, $5, 1) RETURNING id",
            user_id,
            name,
            special_use,
            await self._new_uidvalidity(tx),
            uidnext,
        )
        if subscribed:
            await tx.execute(
                "INSERT INTO subscriptions (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                user_id,
                name,
            )
        return MailboxId(mid)

    async def _create_parents(
        self, tx: Tx, user_id: UserId, name: str, changes: list[Change]
    ) -> None:
        levels = name.split("/")
        for i in range(1, len(levels)):
            parent = "/".join(levels[:i])
            if (
                await tx.fetchrow(
                    "SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $2", user_id, parent
                )
                is None
            ):
                mid = await self._insert_mailbox(tx, user_id, parent, None, subscribed=False)
                changes.append(Change(user_id, mid, ChangeKind.MAILBOX))

    @staticmethod
    async def _lock_user(tx: Tx, user_id: UserId) -> None:
        """`NotFound` for an unknown user; else the user's row is locked until
        commit, so two nodes changing one user's mailbox tree take turns."""
        if await tx.fetchrow("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id) is None:
            raise NotFound(f"no user with id {user_id}")

    _MBX_QUERY = f"SELECT {_MBX_COLS}, {_MBX_COUNTS} FROM mailboxes x WHERE {{where}}"

    async def list_mailboxes(self, user_id: UserId) -> list[Mailbox]:
        rows = await self._fetch(
            self._MBX_QUERY.format(where="x.user_id = $1") + ' ORDER BY x.name COLLATE "C"',
            user_id,
        )
        return [_mailbox_of(r) for r in rows]

    async def get_mailbox(self, user_id: UserId, name: str) -> Mailbox | None:
        try:
            key = self._mailbox_name(name)
        except Invalid:
            return None
        row = await self._fetchrow(
            self._MBX_QUERY.format(where="x.user_id = $1 AND x.name = $2"), user_id, key
        )
        return None if row is None else _mailbox_of(row)

    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None:
        row = await self._fetchrow(self._MBX_QUERY.format(where="x.id = $1"), mailbox_id)
        return None if row is None else _mailbox_of(row)

    async def create_mailbox(
        self, user_id: UserId, name: str, special_use: str | None = None
    ) -> Mailbox:
        key = self._mailbox_name(name)
        if special_use is not None and special_use not in SPECIAL_USE_ATTRIBUTES:
            raise Invalid(f"unknown special-use attribute {special_use!r}")

        async def job(tx: Tx) -> MailboxId:
            await self._lock_user(tx, user_id)
            if await tx.fetchrow(
                "SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $2", user_id, key
            ):
                raise Conflict(f"mailbox {key} exists already")
            changes: list[Change] = []
            await self._create_parents(tx, user_id, key, changes)
            mid = await self._insert_mailbox(tx, user_id, key, special_use, subscribed=False)
            changes.append(Change(user_id, mid, ChangeKind.MAILBOX))
            await self._record(tx, changes)
            return mid

        mid: MailboxId = await self._write(job)
        mailbox = await self.get_mailbox_by_id(mid)
        assert mailbox is not None
        return mailbox

    async def delete_mailbox(self, user_id: UserId, name: str) -> None:
        key = self._mailbox_name(name)
        if key == "INBOX":
            raise Invalid("INBOX cannot be deleted")

        async def job(tx: Tx) -> None:
            await self._lock_user(tx, user_id)
            mid = await tx.fetchval(
                "SELECT id FROM mailboxes WHERE user_id = $1 AND name = $2", user_id, key
            )
            if mid is None:
                raise NotFound(f"no mailbox {key}")
            if await tx.fetchrow(
                "SELECT 1 FROM mailboxes WHERE user_id = $1 AND starts_with(name, $2)",
                user_id,
                key + "/",
            ):
                raise Conflict(f"mailbox {key} has children")
            blob_ids = [
                r[0]
                for r in await tx.fetch(
                    "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = $1", mid
                )
            ]
            await tx.execute("DELETE FROM mailboxes WHERE id = $1", mid)
            await self._free_blobs(tx, blob_ids)
            await self._record(tx, [Change(user_id, MailboxId(mid), ChangeKind.MAILBOX)])

        await self._write(job)

    async def rename_mailbox(self, user_id: UserId, old: str, new: str) -> None:
        src = self._mailbox_name(old)
        dst = self._mailbox_name(new)
        if src != "INBOX" and _is_under(dst, src):
            raise Invalid(f"cannot rename {src} into itself")

        async def job(tx: Tx) -> None:
            await self._lock_user(tx, user_id)
            mid = await tx.fetchval(
                "SELECT id FROM mailboxes WHERE user_id = $1 AND name = $2", user_id, src
            )
            if mid is None:
                raise NotFound(f"no mailbox {src}")
            if await tx.fetchrow(
                "SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $2", user_id, dst
            ):
                raise Conflict(f"mailbox {dst} exists already")
            changes: list[Change] = []
            await self._create_parents(tx, user_id, dst, changes)
            if src == "INBOX":
                await self._rename_inbox(tx, user_id, MailboxId(mid), dst, changes)
            else:
                children = await tx.fetch(
                    "SELECT id, name FROM mailboxes WHERE user_id = $1 AND starts_with(name, $2)",
                    user_id,
                    src + "/",
                )
                await tx.execute("UPDATE mailboxes SET name = $1 WHERE id = $2", dst, mid)
                changes.append(Change(user_id, MailboxId(mid), ChangeKind.MAILBOX))
                for cid, cname in children:
                    target = dst + cname[len(src) :]
                    if await tx.fetchrow(
                        "SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $2",
                        user_id,
                        target,
                    ):
                        raise Conflict(f"mailbox {target} exists")
                    await tx.execute("UPDATE mailboxes SET name = $1 WHERE id = $2", target, cid)
                    changes.append(Change(user_id, MailboxId(cid), ChangeKind.MAILBOX))
                await self._move_subscriptions(tx, user_id, src, dst)
            await self._record(tx, changes)

        await self._write(job)

    async def _rename_inbox(
        self, tx: Tx, user_id: UserId, inbox: MailboxId, dst: str, changes: list[Change]
    ) -> None:
        uidnext = await tx.fetchval("SELECT uidnext FROM mailboxes WHERE id = $1", inbox)
        new_id = await self._insert_mailbox(
            tx, user_id, dst, None, subscribed=True, uidnext=uidnext
        )
        changes.append(Change(user_id, new_id, ChangeKind.MAILBOX))
        uids = [
            r[0]
            for r in await tx.fetch(
                "SELECT uid FROM messages WHERE mailbox_id = $1 ORDER BY uid", inbox
            )
        ]
        if not uids:
            return
        base = await self._take_modseqs(tx, new_id, len(uids))
        base_old = await self._take_modseqs(tx, inbox, len(uids))
        modseqs = [base + i for i in range(len(uids))]
        old_modseqs = [base_old + i for i in range(len(uids))]
        await tx.execute(
            "UPDATE messages m SET mailbox_id = $1, modseq = v.modseq "
            "FROM unnest($3::bigint[], $4::bigint[]) AS v(uid, modseq) "
            "WHERE m.mailbox_id = $2 AND m.uid = v.uid",
            new_id,
            inbox,
            uids,
            modseqs,
        )
        await self._remember_expunged(tx, inbox, uids, old_modseqs)
        changes.extend(
            Change(user_id, inbox, ChangeKind.EXPUNGE, Uid(uid), ModSeq(ms))
            for uid, ms in zip(uids, old_modseqs, strict=True)
        )

    @staticmethod
    async def _move_subscriptions(tx: Tx, user_id: UserId, src: str, dst: str) -> None:
        names = [
            r[0]
            for r in await tx.fetch(
                "DELETE FROM subscriptions WHERE user_id = $1 "
                "AND (name = $2 OR starts_with(name, $3)) RETURNING name",
                user_id,
                src,
                src + "/",
            )
        ]
        if names:
            await tx.execute(
                "INSERT INTO subscriptions (user_id, name) SELECT $1, unnest($2::text[]) "
                "ON CONFLICT DO NOTHING",
                user_id,
                [dst + n[len(src) :] for n in names],
            )

    async def set_subscribed(self, user_id: UserId, name: str, subscribed: bool) -> None:
        key = self._mailbox_name(name)

        async def job(tx: Tx) -> None:
            mid = await tx.fetchval(
                "SELECT id FROM mailboxes WHERE user_id = $1 AND name = $2", user_id, key
            )
            if subscribed:
                if mid is None:
                    raise NotFound(f"no mailbox {key}")
                await tx.execute(
                    "INSERT INTO subscriptions (user_id, name) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    user_id,
                    key,
                )
            else:
                status = await tx.execute(
                    "DELETE FROM subscriptions WHERE user_id = $1 AND name = $2", user_id, key
                )
                if rowcount(status) == 0 and mid is None:
                    raise NotFound(f"no mailbox {key}")
            if mid is not None:
                await self._record(tx, [Change(user_id, MailboxId(mid), ChangeKind.MAILBOX)])

        await self._write(job)

    async def list_subscriptions(self, user_id: UserId) -> list[str]:
        rows = await self._fetch(
            'SELECT name FROM subscriptions WHERE user_id = $1 ORDER BY name COLLATE "C"',
            user_id,
        )
        return [r[0] for r in rows]

    # --- message helpers ---------------------------------------------------
    @staticmethod
    async def _take_uids(tx: Tx, mailbox_id: MailboxId, count: int) -> tuple[int, int]:
        row = await tx.fetchrow(
            "UPDATE mailboxes SET uidnext = uidnext + $1, highestmodseq = highestmodseq + $1 "
            "WHERE id = $2 RETURNING uidnext - $1, highestmodseq - $1 + 1",
            count,
            mailbox_id,
        )
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return int(row[0]), int(row[1])

    @staticmethod
    async def _take_modseqs(tx: Tx, mailbox_id: MailboxId, count: int) -> int:
        value = await tx.fetchval(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + $1 WHERE id = $2 "
            "RETURNING highestmodseq - $1 + 1",
            count,
            mailbox_id,
        )
        if value is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return int(value)

    @staticmethod
    async def _mailbox_owner(tx: Tx, mailbox_id: MailboxId) -> UserId:
        user_id = await tx.fetchval("SELECT user_id FROM mailboxes WHERE id = $1", mailbox_id)
        if user_id is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return UserId(user_id)

    @staticmethod
    async def _check_quota(tx: Tx, user_id: UserId, adding: int) -> None:
        limit = await tx.fetchval("SELECT quota_bytes FROM users WHERE id = $1", user_id)
        if limit is None or limit <= 0:
            return
        used = await tx.fetchval(
            "SELECT COALESCE(SUM(n_octets), 0) FROM mailboxes WHERE user_id = $1",
            user_id,
        )
        if used + adding > limit:
            raise QuotaExceeded(f"quota exceeded: {used} + {adding} > {limit} octets")

    @staticmethod
    async def _insert_messages(
        tx: Tx,
        mailbox_id: int,
        first_uid: int,
        first_modseq: int,
        rows: Sequence[tuple[str, int, int, str]],
    ) -> None:
        """Rows of (flags, internal date, size, blob id) get consecutive UIDs and
        MODSEQs from the given firsts."""
        if len(rows) == 1:
            flags, date, size, blob_id = rows[0]
            await tx.execute(
                "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, "
                "blob_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                mailbox_id,
                first_uid,
                first_modseq,
                flags,
                date,
                size,
                blob_id,
            )
            return
        n = len(rows)
        await tx.execute(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id) "
            "SELECT $1, v.* FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], "
            "$6::bigint[], $7::text[]) AS v",
            mailbox_id,
            [first_uid + i for i in range(n)],
            [first_modseq + i for i in range(n)],
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
        )

    @staticmethod
    async def _remember_expunged(
        tx: Tx, mailbox_id: MailboxId, uids: Sequence[int], modseqs: Sequence[int]
    ) -> None:
        # RFC 7162 §3.2.10: remembered for QRESYNC's VANISHED (EARLIER)
        await tx.execute(
            "INSERT INTO expunged (mailbox_id, uid, modseq) "
            "SELECT $1, u, s FROM unnest($2::bigint[], $3::bigint[]) AS v(u, s) "
            "ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
            mailbox_id,
            list(uids),
            list(modseqs),
        )

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
        """As `SqliteStore.deliver`: atomic and durable when it returns."""
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
        try:
            blob = await self._prepare_blob(message)
        finally:
            self._consume(message)
        blob_id, size = blob.id, blob.size

        async def job(tx: Tx) -> DeliveryResult:
            ctes, args = self._blob_ctes(blob, trace, qid)
            first = True
            if len(prepared) != 1:
                await tx.execute(ctes + "SELECT 1", *args)
                first = False
            delivered: list[Delivered] = []
            changes: list[Change] = []
            for user_id, name, flags in prepared:
                # the mailbox (INBOX when it is missing), its next UID and MODSEQ,
                # and the message row: one statement, with the blob's when there is
                # one target (the usual delivery: one round trip in all)
                row = await tx.fetchrow(
                    _DELIVER_SQL if first else "WITH " + _DELIVER_ONE.format(*range(1, 7)),
                    *(args if first else ()),
                    user_id,
                    name,
                    flags,
                    date_us,
                    size,
                    blob_id,
                )
                if row is None:
                    raise NotFound(f"no user with id {user_id} (or no INBOX)")
                mid, uid, modseq = row
                delivered.append(Delivered(user_id, MailboxId(mid), Uid(uid)))
                changes.append(
                    Change(user_id, MailboxId(mid), ChangeKind.EXISTS, Uid(uid), ModSeq(modseq))
                )
            if queue is not None:
                await self._insert_queue(tx, qid, queue, blob_id, size)
            await self._record(tx, changes)
            return DeliveryResult(
                qid=qid,
                delivered=tuple(delivered),
                queued=qid if queue is not None else None,
                blob_id=blob_id,
            )

        many = None
        if len(prepared) == 1 and queue is None:
            _ctes, args = self._blob_ctes(blob, trace, qid)
            user_id, name, flags = prepared[0]
            item = _OneDelivery(
                qid, blob_id, user_id, [*args, user_id, name, flags, date_us, size, blob_id]
            )
            many = (self._deliver_many, item)
        result: DeliveryResult = await self._write_new_blob(job, blob, many)
        return result

    async def _deliver_many(self, tx: Tx, items: list[_OneDelivery]) -> list[DeliveryResult]:
        """Deliveries to one mailbox each, several at once (`Database`'s `Many`):
        their statements (those of `deliver`'s job) pipelined in one round trip,
        then their message rows read back in one. A delivery that found no
        mailbox (a user deleted meanwhile) raises, and the batch runs job by job."""
        await tx.conn.executemany(_DELIVER_SQL, [it.args for it in items])
        rows = await tx.fetch(
            "SELECT blob_id, mailbox_id, uid, modseq FROM messages WHERE blob_id = ANY($1::text[])",
            [it.blob_id for it in items],
        )
        found = {r[0]: r for r in rows}
        results: list[DeliveryResult] = []
        changes: list[Change] = []
        for it in items:
            row = found.get(it.blob_id)
            if row is None:
                raise NotFound(f"no user with id {it.user_id} (or no INBOX)")
            mid, uid, modseq = MailboxId(row[1]), Uid(row[2]), ModSeq(row[3])
            changes.append(Change(it.user_id, mid, ChangeKind.EXISTS, uid, modseq))
            results.append(
                DeliveryResult(
                    qid=QueueId(it.qid),
                    delivered=(Delivered(it.user_id, mid, uid),),
                    queued=None,
                    blob_id=it.blob_id,
                )
            )
        await self._record(tx, changes)
        return results

    async def append(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Message:
        self._require_db()
        flag_set = normalize_flags(flags)
        date_us = _to_us(internal_date) if internal_date else _now_us()
        try:
            blob = await self._prepare_blob(message)
        finally:
            self._consume(message)
        size = blob.size

        async def job(tx: Tx) -> Message:
            user_id = await self._mailbox_owner(tx, mailbox_id)
            await self._check_quota(tx, user_id, size)
            await self._insert_blob(tx, blob)
            uid, modseq = await self._take_uids(tx, mailbox_id, 1)
            await self._insert_messages(
                tx, mailbox_id, uid, modseq, [(_flags_text(flag_set), date_us, size, blob.id)]
            )
            await self._record(
                tx, [Change(user_id, mailbox_id, ChangeKind.EXISTS, Uid(uid), ModSeq(modseq))]
            )
            return Message(
                mailbox_id=mailbox_id,
                uid=Uid(uid),
                modseq=ModSeq(modseq),
                flags=flag_set,
                internal_date=_from_us(date_us),
                size=size,
                blob_id=blob.id,
                summary=blob.summary,
            )

        result: Message = await self._write_new_blob(job, blob)
        return result

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
            light = await self._fetch(
                f"SELECT {_LIGHT_COLS} FROM messages WHERE mailbox_id = $1 "
                "AND uid BETWEEN $2 AND $3 ORDER BY uid",
                mailbox_id,
                uid_min,
                hi,
            )
            return await _made(_light_message_of, light)
        cols, make = (_MSG_COLS, _message_of) if structures else (_TEXT_COLS, _text_message_of)
        rows = await self._fetch(
            f"SELECT {cols} FROM {_MSG_FROM} WHERE m.mailbox_id = $1 "
            "AND m.uid BETWEEN $2 AND $3 ORDER BY m.uid",
            mailbox_id,
            uid_min,
            hi,
        )
        return await _made(make, rows)

    async def list_meta(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[MetaRow]:
        hi = uid_max if uid_max is not None else 1 << 62
        rows = await self._fetch(
            "SELECT m.uid, m.size, m.internal_date, b.envelope, b.bodystructure, b.body "
            f"FROM {_MSG_FROM} WHERE m.mailbox_id = $1 AND m.uid BETWEEN $2 AND $3 "
            "ORDER BY m.uid",
            mailbox_id,
            uid_min,
            hi,
        )
        return [(Uid(r[0]), r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5])) for r in rows]

    async def list_sort_keys(self, mailbox_id: MailboxId) -> list[SortRow]:
        rows = await self._fetch(
            "SELECT m.uid, COALESCE(b.date, m.internal_date), m.size, b.from_addr, b.subject "
            f"FROM {_MSG_FROM} WHERE m.mailbox_id = $1 ORDER BY m.uid",
            mailbox_id,
        )
        return [(Uid(r[0]), r[1], r[2], _str(r[3]), _str(r[4])) for r in rows]

    async def list_bodies(
        self, mailbox_id: MailboxId, uid_min: int, uid_max: int
    ) -> list[tuple[Uid, bytes]]:
        rows = await self._fetch(
            "SELECT uid, blob_id FROM messages WHERE mailbox_id = $1 "
            "AND uid BETWEEN $2 AND $3 ORDER BY uid",
            mailbox_id,
            uid_min,
            uid_max,
        )
        read = await self.read_blobs([BlobId(r[1]) for r in rows])
        return [(Uid(r[0]), read[r[1]]) for r in rows if r[1] in read]

    async def maildrop(self, mailbox_id: MailboxId) -> list[MaildropItem]:
        rows = await self._fetch(
            "SELECT m.uid, m.blob_id, b.crlf_size, m.flags FROM messages m "
            "JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = $1 ORDER BY m.uid",
            mailbox_id,
        )
        return [MaildropItem(u, b, n, "\\Seen" in f.split()) for u, b, n, f in rows]

    async def list_flags(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[tuple[Uid, ModSeq, frozenset[str]]]:
        hi = uid_max if uid_max is not None else 1 << 62
        rows = await self._fetch(
            "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = $1 "
            "AND uid BETWEEN $2 AND $3 ORDER BY uid",
            mailbox_id,
            uid_min,
            hi,
        )
        return _with_flag_sets((Uid(r[0]), ModSeq(r[1]), r[2]) for r in rows)

    async def search_headers(
        self, mailbox_id: MailboxId, needle: str, fields: Sequence[SearchField]
    ) -> list[Uid]:
        """The mailbox's rows whose casefolded field holds the casefolded needle:
        position() over the BYTEA columns decides, exactly. With the trigram index
        (schema 5) and a needle it can look up, the index first narrows the rows
        to those whose escaped text is LIKE the escaped needle (`_like_pattern`:
        a superset, never missing one); without it, every row of the mailbox is
        tested (one pass in the server, no summary sent to the client)."""
        unknown = set(fields) - _FOLDED.keys()
        if unknown:
            raise ValueError(f"no header search for {sorted(unknown)}")
        cols = sorted({_FOLDED[f] for f in fields})
        if not cols:
            return []
        folded = schema.folded(needle)
        pattern = _like_pattern(folded) if self._header_index else None
        if pattern is None:
            test = " OR ".join(f"position($2::bytea in b.{c}) > 0" for c in cols)
            rows = await self._fetch(
                f"SELECT m.uid FROM {_MSG_FROM} WHERE m.mailbox_id = $1 AND ({test}) "
                "ORDER BY m.uid",
                mailbox_id,
                folded,
            )
        else:
            # the index's expressions, verbatim (the planner matches them as written);
            # the candidates are blobs, then their rows in this mailbox
            test = " OR ".join(
                f"(encode(b.{c}, 'escape') LIKE $3 AND position($2::bytea in b.{c}) > 0)"
                for c in cols
            )
            sql = (
                f"SELECT m.uid FROM {_MSG_FROM} WHERE m.mailbox_id = $1 AND ({test}) ORDER BY m.uid"
            )

            async def read(conn: asyncpg.Connection) -> list[Row]:
                # planned for this needle: a statement of its own (not the cached one)
                # is planned with its parameters (PostgreSQL makes a generic plan only
                # after five runs), and a generic plan would take the index for a
                # needle every row holds ("example.com"): a walk of all of them
                statement = await conn.prepare(sql)
                found: list[Row] = await statement.fetch(mailbox_id, folded, pattern)
                return found

            rows = await self._require_db().read(read)
        return [Uid(r[0]) for r in rows]

    async def get_messages(
        self, mailbox_id: MailboxId, uids: Sequence[Uid], *, structures: bool = True
    ) -> list[Message]:
        if not uids:
            return []
        cols, make = (_MSG_COLS, _message_of) if structures else (_TEXT_COLS, _text_message_of)
        rows = await self._fetch(
            f"SELECT {cols} FROM {_MSG_FROM} WHERE m.mailbox_id = $1 "
            "AND m.uid = ANY($2::bigint[]) ORDER BY m.uid",
            mailbox_id,
            [int(u) for u in uids],
        )
        return await _made(make, rows)

    async def get_message(self, mailbox_id: MailboxId, uid: Uid) -> Message | None:
        row = await self._fetchrow(
            f"SELECT {_MSG_COLS} FROM {_MSG_FROM} WHERE m.mailbox_id = $1 AND m.uid = $2",
            mailbox_id,
            uid,
        )
        return None if row is None else _message_of(row)

    async def read_blob(self, blob_id: BlobId) -> bytes:
        """The message bytes; `NotFound` for an unknown (or malformed) id."""
        if not is_blob_id(blob_id):
            raise NotFound(f"no blob {blob_id!r}")
        got = await self.read_blobs([blob_id])
        if blob_id not in got:
            raise NotFound(f"no blob {blob_id}")
        return got[blob_id]

    async def read_blobs(self, blob_ids: Sequence[BlobId]) -> dict[BlobId, bytes]:
        ids = sorted({b for b in blob_ids if is_blob_id(b)})
        if not ids:
            return {}
        # only blobs with a row: chunks of a large message not yet committed are not mail
        rows = await self._fetch(
            "SELECT c.blob_id, c.data FROM blob_chunks c JOIN blobs b ON b.id = c.blob_id "
            "WHERE c.blob_id = ANY($1::text[]) ORDER BY c.blob_id, c.seq",
            ids,
        )
        parts: dict[BlobId, list[bytes]] = {}
        for blob_id, data in rows:
            parts.setdefault(BlobId(blob_id), []).append(data)
        return {b: p[0] if len(p) == 1 else b"".join(p) for b, p in parts.items()}

    async def blob_path(self, blob_id: BlobId) -> Path | None:
        """Never a file: the bytes are in the database."""
        return None

    async def store_flags(
        self,
        mailbox_id: MailboxId,
        uids: Sequence[Uid],
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> tuple[list[Message], list[Uid]]:
        """As `SqliteStore.store_flags`. The messages' rows are locked while their
        new flags are computed, so a change made meanwhile on another node is
        never overwritten."""
        if mode not in ("add", "remove", "replace"):
            raise Invalid(f"bad flag mode {mode!r}")
        flag_set = normalize_flags(flags)

        async def job(tx: Tx) -> tuple[list[Message], list[Uid]]:
            user_id = await self._mailbox_owner(tx, mailbox_id)
            rows = await tx.fetch(
                "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = $1 "
                "AND uid = ANY($2::bigint[]) ORDER BY uid FOR UPDATE",
                mailbox_id,
                [int(u) for u in uids],
            )
            if len(rows) <= _MAKE_INLINE:
                updates, texts, refused = _flag_updates(rows, flag_set, mode, unchanged_since)
            else:  # 50,000 rows held the loop 100 ms
                updates, texts, refused = await asyncio.to_thread(
                    _flag_updates, rows, flag_set, mode, unchanged_since
                )
            if not updates:
                return [], refused
            base = await self._take_modseqs(tx, mailbox_id, len(updates))
            # the MODSEQs counted by the server: asyncpg encodes each array's items
            # on the loop, 50,000 of three arrays in a 26 ms step
            await tx.execute(
                "UPDATE messages m SET flags = v.flags, modseq = $4 + v.n - 1 "
                "FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS v(uid, flags, n) "
                "WHERE m.mailbox_id = $1 AND m.uid = v.uid",
                mailbox_id,
                updates,
                texts,
                base,
            )
            if len(updates) <= _MAKE_INLINE:
                changes = _flag_changes(user_id, mailbox_id, updates, base)
            else:
                changes = await asyncio.to_thread(_flag_changes, user_id, mailbox_id, updates, base)
            await self._record(tx, changes)
            # the rows of the MODSEQs just taken (the mailbox's row lock is held)
            rows = await tx.fetch(
                f"SELECT {_MSG_COLS} FROM {_MSG_FROM} WHERE m.mailbox_id = $1 "
                "AND m.modseq BETWEEN $2 AND $3 ORDER BY m.uid",
                mailbox_id,
                base,
                base + len(updates) - 1,
            )
            return await _made(_message_of, rows), refused

        result: tuple[list[Message], list[Uid]] = await self._write(job)
        return result

    async def _remove(
        self, tx: Tx, user_id: UserId, mailbox_id: MailboxId, uids: list[int], changes: list[Change]
    ) -> list[str]:
        """Delete message rows, remember them in `expunged`; returns their blob ids."""
        base = await self._take_modseqs(tx, mailbox_id, len(uids))
        blob_ids = [
            r[0]
            for r in await tx.fetch(
                "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) "
                "RETURNING blob_id",
                mailbox_id,
                uids,
            )
        ]
        modseqs = [base + i for i in range(len(uids))]
        await self._remember_expunged(tx, mailbox_id, uids, modseqs)
        changes.extend(
            Change(user_id, mailbox_id, ChangeKind.EXPUNGE, Uid(uid), ModSeq(ms))
            for uid, ms in zip(uids, modseqs, strict=True)
        )
        return blob_ids

    async def expunge(
        self,
        mailbox_id: MailboxId,
        uids: Sequence[Uid] | None = None,
        *,
        flagged_only: bool = True,
    ) -> list[Uid]:
        if not flagged_only and uids is None:
            raise ValueError("flagged_only=False needs explicit uids")

        async def job(tx: Tx) -> list[Uid]:
            user_id = await self._mailbox_owner(tx, mailbox_id)
            sql = "SELECT uid FROM messages WHERE mailbox_id = $1"
            args: list[object] = [mailbox_id]
            if flagged_only:
                sql += " AND strpos(' ' || flags || ' ', ' \\Deleted ') > 0"
            if uids is not None:
                sql += " AND uid = ANY($2::bigint[])"
                args.append([int(u) for u in uids])
            found = [r[0] for r in await tx.fetch(sql + " ORDER BY uid FOR UPDATE", *args)]
            if not found:
                return []
            changes: list[Change] = []
            blob_ids = await self._remove(tx, user_id, mailbox_id, found, changes)
            await self._free_blobs(tx, blob_ids)
            await self._record(tx, changes)
            return [Uid(u) for u in found]

        result: list[Uid] = await self._write(job)
        return result

    def _copy_job(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId, *, move: bool
    ) -> Callable[[Tx], Any]:
        async def job(tx: Tx) -> list[tuple[Uid, Uid]]:
            src_user = await self._mailbox_owner(tx, src)
            dst_user = await self._mailbox_owner(tx, dst)
            rows = await tx.fetch(
                "SELECT uid, flags, internal_date, size, blob_id FROM messages "
                "WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) ORDER BY uid"
                + (" FOR UPDATE" if move else " FOR SHARE"),
                src,
                [int(u) for u in uids],
            )
            if not rows:
                return []
            if not move or src_user != dst_user:
                await self._check_quota(tx, dst_user, sum(r[3] for r in rows))
            first_uid, first_modseq = await self._take_uids(tx, dst, len(rows))
            await self._insert_messages(
                tx, dst, first_uid, first_modseq, [(r[1], r[2], r[3], r[4]) for r in rows]
            )
            pairs = [(Uid(r[0]), Uid(first_uid + i)) for i, r in enumerate(rows)]
            changes = [
                Change(
                    dst_user, dst, ChangeKind.EXISTS, Uid(first_uid + i), ModSeq(first_modseq + i)
                )
                for i in range(len(rows))
            ]
            if move:
                await self._remove(tx, src_user, src, [r[0] for r in rows], changes)
            await self._record(tx, changes)
            return pairs

        return job

    async def copy(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId
    ) -> list[tuple[Uid, Uid]]:
        result: list[tuple[Uid, Uid]] = await self._write(
            self._copy_job(src, uids, dst, move=False)
        )
        return result

    async def move(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId
    ) -> list[tuple[Uid, Uid]]:
        result: list[tuple[Uid, Uid]] = await self._write(self._copy_job(src, uids, dst, move=True))
        return result

    async def changed_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Message]:
        rows = await self._fetch(
            f"SELECT {_MSG_COLS} FROM {_MSG_FROM} WHERE m.mailbox_id = $1 AND m.modseq > $2 "
            "ORDER BY m.uid",
            mailbox_id,
            modseq,
        )
        return await _made(_message_of, rows)

    async def vanished_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Uid]:
        rows = await self._fetch(
            "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
            mailbox_id,
            modseq,
        )
        return [Uid(r[0]) for r in rows]

    async def quota_usage(self, user_id: UserId) -> tuple[int, int]:
        row = await self._fetchrow(
            "SELECT u.quota_bytes, (SELECT COALESCE(SUM(x.n_octets), 0) FROM mailboxes x "
            "WHERE x.user_id = u.id) "
            "FROM users u WHERE u.id = $1",
            user_id,
        )
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return int(row[1]), int(row[0])

    # --- URLAUTH (RFC 4467) -------------------------------------------------
    async def access_key(self, mailbox_id: MailboxId, new: bytes | None = None) -> bytes | None:
        if new is None:
            row = await self._fetchrow(
                "SELECT key FROM access_keys WHERE mailbox_id = $1", mailbox_id
            )
            return None if row is None else bytes(row[0])

        async def job(tx: Tx) -> bytes:
            if await tx.fetchrow("SELECT 1 FROM mailboxes WHERE id = $1", mailbox_id) is None:
                raise NotFound(f"no mailbox with id {mailbox_id}")
            await tx.execute(
                "INSERT INTO access_keys (mailbox_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                mailbox_id,
                new,
            )
            key = await tx.fetchval("SELECT key FROM access_keys WHERE mailbox_id = $1", mailbox_id)
            return bytes(key)

        result: bytes = await self._write(job)
        return result

    async def reset_access_keys(self, user_id: UserId, mailbox_id: MailboxId | None = None) -> None:
        async def job(tx: Tx) -> None:
            await tx.execute(
                "DELETE FROM access_keys WHERE mailbox_id IN "
                "(SELECT id FROM mailboxes WHERE user_id = $1 AND ($2::bigint IS NULL OR id = $2))",
                user_id,
                mailbox_id,
            )

        await self._write(job)

    # --- outbound queue ----------------------------------------------------
    @staticmethod
    async def _insert_queue(
        tx: Tx, qid: QueueId, entry: NewQueueEntry, blob_id: BlobId, size: int
    ) -> None:
        now = _now_us()
        rcpts = entry.recipients
        inserted = await tx.fetchval(
            "WITH q AS (INSERT INTO queue (id, sender, blob_id, size, created, next_attempt, "
            "envid, ret, smtputf8, body_8bit, auth_user, is_bounce, return_path_size, "
            "dkim_signature) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT DO NOTHING RETURNING id), "
            "r AS (INSERT INTO queue_recipients (qid, position, address, state, last_reply, "
            "notify, orcpt) SELECT q.id, v.* FROM q CROSS JOIN unnest($14::int[], $15::text[], "
            "$16::text[], $17::text[], $18::text[], $19::text[]) AS v) "
            "SELECT count(*) FROM q",
            qid,
            entry.sender,
            blob_id,
            size,
            now,
            entry.envid,
            entry.ret,
            entry.smtputf8,
            entry.body_8bit,
            entry.auth_user,
            entry.is_bounce,
            entry.return_path_size,
            entry.dkim_signature,
            list(range(len(rcpts))),
            [r.address for r in rcpts],
            [RcptState(r.state).value for r in rcpts],
            [_safe(r.last_reply) for r in rcpts],
            [r.notify for r in rcpts],
            [r.orcpt for r in rcpts],
        )
        if not inserted:
            raise Conflict(f"queue id {qid} exists already")

    @staticmethod
    async def _insert_recipients(tx: Tx, qid: QueueId, rcpts: Sequence[QueueRecipient]) -> None:
        await tx.execute("DELETE FROM queue_recipients WHERE qid = $1", qid)
        await tx.execute(
            "INSERT INTO queue_recipients (qid, position, address, state, last_reply, notify, "
            "orcpt) SELECT $1, v.* FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], "
            "$6::text[], $7::text[]) AS v",
            qid,
            list(range(len(rcpts))),
            [r.address for r in rcpts],
            [RcptState(r.state).value for r in rcpts],
            [_safe(r.last_reply) for r in rcpts],
            [r.notify for r in rcpts],
            [r.orcpt for r in rcpts],
        )

    async def queue_list(self) -> list[QueueEntry]:
        async def read(c: asyncpg.Connection) -> list[QueueEntry]:
            async with c.transaction(readonly=True, isolation="repeatable_read"):
                rows = await c.fetch(
                    f'SELECT {_QUEUE_COLS} FROM queue ORDER BY created, id COLLATE "C"'
                )
                return await _queue_entries(c, rows)

        result: list[QueueEntry] = await self._require_db().read(read)
        return result

    async def queue_get(self, qid: QueueId) -> QueueEntry | None:
        async def read(c: asyncpg.Connection) -> list[QueueEntry]:
            async with c.transaction(readonly=True, isolation="repeatable_read"):
                rows = await c.fetch(f"SELECT {_QUEUE_COLS} FROM queue WHERE id = $1", qid)
                return await _queue_entries(c, rows)

        entries: list[QueueEntry] = await self._require_db().read(read)
        return entries[0] if entries else None

    async def queue_due(self, now: datetime, limit: int) -> list[QueueEntry]:
        """Entries not held, due at `now` and not under a live lease, oldest first,
        leased to this node until `now + claim_timeout`. SKIP LOCKED: runners of
        other nodes claiming at the same moment take other entries instead of
        waiting for these."""
        now_us = _to_us(now)
        until = now_us + int(self.claim_timeout * 1_000_000)

        async def job(tx: Tx) -> list[QueueEntry]:
            pid, start = self._session or (None, None)
            rows = await tx.fetch(
                "UPDATE queue SET claimed_until = $2, claimed_by = $3, claimed_pid = $5, "
                "claimed_start = $6 WHERE id IN ("
                f"SELECT id FROM queue q WHERE NOT held AND next_attempt <= $1 AND {_UNCLAIMED} "
                'ORDER BY created, id COLLATE "C" LIMIT $4 FOR UPDATE SKIP LOCKED) '
                f"RETURNING {_QUEUE_COLS}",
                now_us,
                until,
                self.node,
                max(limit, 0),
                pid,
                start,
            )
            ordered = sorted(rows, key=lambda r: (r[4], r[0].encode()))
            return await _queue_entries(tx, ordered)

        result: list[QueueEntry] = await self._write(job)
        return result

    async def queue_release_claims(self) -> int:
        """Release the leases this node's name holds: a node starting again
        forgets its dead runner's claims; other nodes' leases run out by
        themselves."""

        async def job(tx: Tx) -> int:
            status = await tx.execute(
                "UPDATE queue SET claimed_until = NULL, claimed_by = NULL, claimed_pid = NULL, "
                "claimed_start = NULL WHERE claimed_by = $1",
                self.node,
            )
            return rowcount(status)

        released: int = await self._write(job)
        return released

    async def queue_next_due(self) -> datetime | None:
        value = await self._require_db().fetchval(
            "SELECT MIN(CASE WHEN claimed_until IS NULL OR claimed_pid IS NOT NULL "
            f"AND NOT {_CLAIMER_ALIVE} THEN next_attempt "
            "ELSE GREATEST(next_attempt, claimed_until) END) FROM queue q WHERE NOT held"
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
        release = (
            ""
            if keep_claim
            else ", claimed_until = NULL, claimed_by = NULL, claimed_pid = NULL, "
            "claimed_start = NULL"
        )

        async def job(tx: Tx) -> None:
            status = await tx.execute(
                "UPDATE queue SET next_attempt = $1, attempts = $2, last_error = $3"
                f"{release} WHERE id = $4",
                next_us,
                attempts,
                _safe(last_error),
                qid,
            )
            if rowcount(status) == 0:
                raise NotFound(f"no queue entry {qid}")
            await self._insert_recipients(tx, qid, recipients)

        await self._write(job)

    async def _queue_set(self, qid: QueueId, sql: str, value: object) -> None:
        async def job(tx: Tx) -> None:
            if rowcount(await tx.execute(sql, value, qid)) == 0:
                raise NotFound(f"no queue entry {qid}")

        await self._write(job)

    async def queue_set_next_attempt(self, qid: QueueId, when: datetime) -> None:
        await self._queue_set(qid, "UPDATE queue SET next_attempt = $1 WHERE id = $2", _to_us(when))

    async def queue_hold(self, qid: QueueId, held: bool) -> None:
        await self._queue_set(qid, "UPDATE queue SET held = $1 WHERE id = $2", held)

    async def queue_delete(self, qid: QueueId) -> None:
        async def job(tx: Tx) -> None:
            blob_id = await tx.fetchval("DELETE FROM queue WHERE id = $1 RETURNING blob_id", qid)
            if blob_id is None:
                raise NotFound(f"no queue entry {qid}")
            await self._free_blobs(tx, [blob_id])

        await self._write(job)

    # --- trace -------------------------------------------------------------
    async def trace_add(self, qid: QueueId, event: str, detail: str) -> None:
        at = _now_us()

        async def job(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO trace (qid, at, event, detail) VALUES ($1, $2, $3, $4)",
                qid,
                at,
                _safe(event),
                _safe(detail),
            )

        await self._write(job)

    async def trace_get(self, qid: QueueId) -> list[TraceEvent]:
        rows = await self._fetch(
            "SELECT at, event, detail FROM trace WHERE qid = $1 ORDER BY id", qid
        )
        return [TraceEvent(qid, _from_us(r[0]), r[1], r[2]) for r in rows]

    async def trace_count(self, event: str, since: datetime, detail_prefix: str = "") -> int:
        n = await self._require_db().fetchval(
            "SELECT COUNT(*) FROM trace WHERE event = $1 AND at >= $2 AND left(detail, $3) = $4",
            event,
            _to_us(since),
            len(detail_prefix),
            detail_prefix,
        )
        return int(n)

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

        async def job(tx: Tx) -> None:
            if await tx.fetchrow("SELECT 1 FROM users WHERE id = $1", user_id) is None:
                raise NotFound(f"no user with id {user_id}")
            await tx.execute("DELETE FROM web_sessions WHERE last_seen < $1", idle)
            await tx.execute(
                "INSERT INTO web_sessions (key, user_id, csrf, created, last_seen) "
                "VALUES ($1, $2, $3, $4, $4)",
                key,
                user_id,
                csrf,
                at,
            )
            await tx.execute(
                "DELETE FROM web_sessions WHERE user_id = $1 AND key NOT IN (SELECT key "
                "FROM web_sessions WHERE user_id = $1 ORDER BY last_seen DESC LIMIT $2)",
                user_id,
                keep,
            )

        await self._write(job)

    async def web_session_get(self, key: bytes) -> WebSession | None:
        row = await self._fetchrow(
            "SELECT s.user_id, u.address, u.admin, s.csrf, s.created, s.last_seen "
            "FROM web_sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.key = $1 AND NOT u.disabled",
            key,
        )
        if row is None:
            return None
        return WebSession(
            UserId(row[0]), row[1], bool(row[2]), row[3], _from_us(row[4]), _from_us(row[5])
        )

    async def web_session_touch(self, key: bytes, now: datetime) -> None:
        async def job(tx: Tx) -> None:
            await tx.execute(
                "UPDATE web_sessions SET last_seen = GREATEST(last_seen, $1) WHERE key = $2",
                _to_us(now),
                key,
            )

        await self._write(job)

    async def web_session_delete(self, key: bytes) -> None:
        async def job(tx: Tx) -> None:
            await tx.execute("DELETE FROM web_sessions WHERE key = $1", key)

        await self._write(job)

    async def server_secret(self, name: str) -> bytes:
        row = await self._fetchrow("SELECT value FROM server_secrets WHERE name = $1", name)
        if row is not None:
            return bytes(row[0])
        new = secrets.token_bytes(32)

        async def job(tx: Tx) -> bytes:
            await tx.execute(
                "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                name,
                new,
            )
            return bytes(
                await tx.fetchval("SELECT value FROM server_secrets WHERE name = $1", name)
            )

        result: bytes = await self._write(job)
        return result

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
        """As `SqliteStore.greylist_check`; the triplet's row is locked while it is
        decided, so two nodes seeing the same retry agree."""
        now_us = _to_us(now)
        delay_us = int(delay * 1_000_000)
        window_us = int(window * 1_000_000)
        until = now_us + int(whitelist_period * 1_000_000)

        async def job(tx: Tx) -> GreylistDecision:
            await tx.execute("DELETE FROM greylist WHERE first_seen < $1", now_us - window_us)
            await tx.execute("DELETE FROM greylist_pass WHERE expires < $1", now_us)
            for kind, value, outcome in (
                ("net", network, GreylistOutcome.WHITELISTED_NETWORK),
                ("domain", spf_domain, GreylistOutcome.WHITELISTED_DOMAIN),
            ):
                if not value:
                    continue
                status = await tx.execute(
                    "UPDATE greylist_pass SET expires = $1 WHERE kind = $2 AND value = $3",
                    until,
                    kind,
                    value,
                )
                if rowcount(status):
                    return GreylistDecision(outcome)
            row = await tx.fetchrow(
                "INSERT INTO greylist AS g (network, sender, recipient, first_seen, last_seen, "
                "attempts) VALUES ($1, $2, $3, $4, $4, 1) ON CONFLICT (network, sender, recipient) "
                "DO UPDATE SET last_seen = EXCLUDED.last_seen, attempts = g.attempts + 1 "
                "RETURNING g.first_seen, (g.xmax = 0) AS inserted",
                network,
                sender,
                recipient,
                now_us,
            )
            assert row is not None
            if row["inserted"]:
                return GreylistDecision(GreylistOutcome.NEW, delay)
            first_seen = row["first_seen"]
            age = now_us - int(first_seen)
            if age < delay_us:
                return GreylistDecision(GreylistOutcome.TOO_EARLY, (delay_us - age) / 1e6)
            await tx.execute(
                "DELETE FROM greylist WHERE network = $1 AND sender = $2 AND recipient = $3",
                network,
                sender,
                recipient,
            )
            for kind, value in (("net", network), ("domain", spf_domain)):
                if value:
                    await tx.execute(
                        "INSERT INTO greylist_pass (kind, value, expires) VALUES ($1, $2, $3) "
                        "ON CONFLICT (kind, value) DO UPDATE SET expires = EXCLUDED.expires",
                        kind,
                        value,
                        until,
                    )
            return GreylistDecision(GreylistOutcome.RETRY_PASSED)

        result: GreylistDecision = await self._write(job)
        return result

    # --- Bayes token counts (issue 7) --------------------------------------
    async def bayes_learn(
        self, model: UserId, digest: str, tokens: Sequence[str], is_spam: bool
    ) -> bool:
        unique = sorted({_safe(t) for t in tokens})

        async def job(tx: Tx) -> bool:
            await tx.execute(
                "INSERT INTO bayes_totals (model, spam, ham) VALUES ($1, 0, 0) "
                "ON CONFLICT DO NOTHING",
                model,
            )
            # the totals row serialises learning per model across nodes
            await tx.execute("SELECT 1 FROM bayes_totals WHERE model = $1 FOR UPDATE", model)
            before = await tx.fetchval(
                "SELECT is_spam FROM bayes_seen WHERE model = $1 AND digest = $2", model, digest
            )
            if before is not None and bool(before) == is_spam:
                return False
            add_col, sub_col = ("spam", "ham") if is_spam else ("ham", "spam")
            if before is not None:  # learned as the other class before: move it over
                await tx.execute(
                    f"UPDATE bayes_totals SET {sub_col} = GREATEST({sub_col} - 1, 0) "
                    "WHERE model = $1",
                    model,
                )
                await tx.execute(
                    f"UPDATE bayes_tokens SET {sub_col} = GREATEST({sub_col} - 1, 0) "
                    "WHERE model = $1 AND token = ANY($2::text[])",
                    model,
                    unique,
                )
            await tx.execute(
                f"UPDATE bayes_totals SET {add_col} = {add_col} + 1 WHERE model = $1", model
            )
            spam, ham = (1, 0) if is_spam else (0, 1)
            await tx.execute(
                "INSERT INTO bayes_tokens AS t (model, token, spam, ham) "
                "SELECT $1, unnest($2::text[]), $3, $4 "
                "ON CONFLICT (model, token) DO UPDATE SET spam = t.spam + EXCLUDED.spam, "
                "ham = t.ham + EXCLUDED.ham",
                model,
                unique,
                spam,
                ham,
            )
            await tx.execute(
                "INSERT INTO bayes_seen (model, digest, is_spam) VALUES ($1, $2, $3) "
                "ON CONFLICT (model, digest) DO UPDATE SET is_spam = EXCLUDED.is_spam",
                model,
                digest,
                is_spam,
            )
            return True

        result: bool = await self._write(job)
        return result

    async def bayes_counts(self, model: UserId, tokens: Sequence[str]) -> BayesCounts:
        asked = {_safe(t): t for t in tokens}
        unique = sorted(asked)

        # one statement: one snapshot of totals and tokens, one round trip
        row = await self._fetchrow(
            "SELECT b.spam, b.ham, t.tokens, t.spams, t.hams FROM (SELECT 1) AS one "
            "LEFT JOIN bayes_totals b ON b.model = $1 CROSS JOIN LATERAL ("
            "SELECT array_agg(token), array_agg(spam), array_agg(ham) FROM bayes_tokens "
            "WHERE model = $1 AND token = ANY($2::text[])) AS t(tokens, spams, hams)",
            model,
            unique,
        )
        assert row is not None
        counts = {
            asked[t]: (int(s), int(h))
            for t, s, h in zip(row[2] or (), row[3] or (), row[4] or (), strict=True)
        }
        if row[0] is None:
            return BayesCounts(0, 0, counts)
        return BayesCounts(int(row[0]), int(row[1]), counts)
