"""State the nodes of a site share while they run, in the PostgreSQL database.

With several nodes over one database, what one process or one machine kept for
itself must be seen by every node: a POP3 maildrop lock taken through node A
refuses a login through node B, and a password guesser spreading his attempts
over the nodes is counted once. `SharedState` keeps that state in UNLOGGED
tables (schemas 7 and 8); the interfaces the servers already use are implemented over
it where they live (`pop3.locks.DatabaseMaildrops`,
`auth.shared.DatabaseLimiter`), and the composition root (`server.root`) picks
them when ``store.backend = "postgres"``.

Rules:
- A maildrop lock is a row naming its holder: the node,
  a random token, and the database session of that node's listener connection
  (pid and start time, as a queue lease, `store.py`). Taking it is one
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the present holder's session is
  gone from ``pg_stat_activity``: one statement, so two nodes taking it at once
  give it to one of them. Releasing deletes the row with its token.
- A node that dies (even by SIGKILL) closes its connections with it; the
  server ends its sessions and the next login takes the lock at once. A node
  whose machine vanished without closing them is noticed by TCP keepalives
  (the listener connection asks for them: `KEEPALIVE_SETTINGS`, under a
  minute). A node whose listener connection merely reconnected moves its locks
  to the new session (`store.py`).
- A release that fails (the database unreachable for a moment) is tried again
  in the background until it succeeds or the store closes: a live node never
  keeps a maildrop locked for a session that ended.
- The login limiter's records are rows too; the limiter's own rules (the
  caller's `apply`) update them: a failure is counted in one transaction
  holding the rows of its keys (``FOR UPDATE``, in
  key order, so two nodes never deadlock), so failures counted at once on two
  nodes are all counted. Times are each node's wall clock (Unix seconds): keep
  the nodes' clocks in step (NTP), as mail already needs.
- Connections at once per client address are counted per process in memory
  (`server.listeners`); each process writes its own number for a (listener,
  address) to one row (an absolute value: a late or lost write is put right by
  the next) and adds the rows of the other live processes, of every node, in
  the same statement. Two nodes admitting at the same instant may both let one
  more in: a limit on resources, not an invariant.
- \\Recent: one row per mailbox holds the highest UID claimed; a claim raises
  it with the row held (``FOR UPDATE``) and gets the value before, so of two
  sessions on two nodes claiming one new message, one gets it.
- Every statement here goes through the reader pool in autocommit, not through
  the group-committed writer: these rows are UNLOGGED, so a write costs no WAL
  flush, and a login never waits for a batch of message inserts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from postier.store.errors import StoreError
from postier.store.models import MailboxId, UserId
from postier.store.sqlite.store import _now_us

if TYPE_CHECKING:
    from postier.store.postgres.store import PostgresStore

log = logging.getLogger(__name__)

#: a maildrop lock: taken unless its holder's database session is still there
_TAKE = (
    "INSERT INTO maildrop_locks AS l (user_id, node, holder_pid, holder_start, token, "
    "taken) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET "
    "node = excluded.node, holder_pid = excluded.holder_pid, "
    "holder_start = excluded.holder_start, token = excluded.token, taken = excluded.taken "
    "WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid "
    "AND a.backend_start = l.holder_start) RETURNING token"
)


#: this process has `$5` connections of address `$2` on listener `$1`; how many
#: have the other live processes (of every node)?
_CLIENTS = (
    "WITH mine AS (INSERT INTO client_connections (listener, ip, holder_pid, holder_start, n) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (listener, ip, holder_pid, holder_start) "
    "DO UPDATE SET n = excluded.n) "
    "SELECT COALESCE(SUM(c.n), 0) FROM client_connections c "
    "WHERE c.listener = $1 AND c.ip = $2 AND NOT (c.holder_pid = $3 AND c.holder_start = $4) "
    "AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.holder_pid "
    "AND a.backend_start = c.holder_start)"
)
_CLIENTS_GONE = (
    "DELETE FROM client_connections c WHERE listener = $1 AND ip = $2 "
    "AND holder_pid = $3 AND holder_start = $4"
)
#: rows of processes that are gone
_CLIENTS_DEAD = (
    "DELETE FROM client_connections c WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
    "WHERE a.pid = c.holder_pid AND a.backend_start = c.holder_start)"
)

#: raise mailbox `$1`'s \Recent mark to `$2`; the mark before
_CLAIM_RECENT = (
    "UPDATE recent_claims r SET last_uid = GREATEST(r.last_uid, $2) FROM (SELECT last_uid "
    "FROM recent_claims WHERE mailbox_id = $1 FOR UPDATE) o WHERE r.mailbox_id = $1 "
    "RETURNING o.last_uid"
)

#: errors after which a release is tried again
_TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError)


@dataclass
class LoginRecord:
    """One key's consecutive failures (`auth.service.Limiter`'s record)."""

    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class SharedState:
    """The run-time state of every node, over one open `PostgresStore`."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._retries: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._client_writes = 0

    # --- POP3 maildrop locks ----------------------------------------------
    async def take_maildrop(self, user_id: UserId) -> str | None:
        """The lock's token, or None when a live session of any node holds it."""
        store = self._store
        session = store.session
        if session is None:
            raise StoreError("no database session to hold a maildrop lock")
        token = secrets.token_hex(8)
        got = await store.database.fetchval(
            _TAKE, int(user_id), store.node, *session, token, _now_us()
        )
        return None if got is None else token

    async def release_maildrop(self, user_id: UserId, token: str) -> None:
        try:
            await self._delete_lock(user_id, token)
        except _TRANSIENT:
            log.warning("could not release the maildrop lock of user %d; trying again", user_id)
            task = asyncio.get_running_loop().create_task(self._retry(user_id, token))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _delete_lock(self, user_id: UserId, token: str) -> None:
        await self._store.database.fetchval(
            "DELETE FROM maildrop_locks WHERE user_id = $1 AND token = $2", int(user_id), token
        )

    async def _retry(self, user_id: UserId, token: str) -> None:
        delay = 0.5
        while self._store.is_open:
            await asyncio.sleep(delay)
            try:
                await self._delete_lock(user_id, token)
            except _TRANSIENT:
                delay = min(delay * 2, 10.0)
            else:
                return

    # --- login failure records --------------------------------------------
    async def login_records(self, keys: Sequence[str]) -> dict[str, LoginRecord]:
        """The records of those `keys` that have one."""
        rows = await self._store.database.fetch(
            "SELECT key, failures, last, locked_until FROM login_failures WHERE key = ANY($1)",
            list(keys),
        )
        return {r[0]: LoginRecord(int(r[1]), float(r[2]), float(r[3])) for r in rows}

    async def update_login_records(
        self,
        keys: Sequence[str],
        apply: Callable[[dict[str, LoginRecord]], None],
        *,
        forget_before: float,
        now: float,
    ) -> dict[str, LoginRecord]:
        """Run `apply` on the records of every key (a new one for a key without)
        while their rows are held, store what it made of them and return it.
        Now and then records last changed before `forget_before` and not locked
        at `now` are deleted (the limiter's horizon bounds the table by the rate
        of failures, whoever makes them)."""
        ordered = sorted(set(keys))
        async with self._store.database.pool.acquire() as conn, conn.transaction():
            # every key's row exists, then is held until commit: in key order on
            # every node, so two nodes counting the same keys wait, never deadlock
            await conn.execute(
                "INSERT INTO login_failures (key, failures, last, locked_until) "
                "SELECT k, 0, 0, 0 FROM unnest($1::text[]) AS k ON CONFLICT (key) DO NOTHING",
                ordered,
            )
            rows = await conn.fetch(
                "SELECT key, failures, last, locked_until FROM login_failures "
                "WHERE key = ANY($1) ORDER BY key FOR UPDATE",
                ordered,
            )
            records = {r[0]: LoginRecord(int(r[1]), float(r[2]), float(r[3])) for r in rows}
            for k in ordered:  # a row deleted meanwhile (a success) starts over
                records.setdefault(k, LoginRecord())
            apply(records)
            await conn.execute(
                "INSERT INTO login_failures (key, failures, last, locked_until) "
                "SELECT * FROM unnest($1::text[], $2::int[], $3::float8[], $4::float8[]) "
                "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                "last = excluded.last, locked_until = excluded.locked_until",
                ordered,
                [records[k].failures for k in ordered],
                [records[k].last for k in ordered],
                [records[k].locked_until for k in ordered],
            )
            self._failures += 1
            if self._failures % 1000 == 0:
                await conn.execute(
                    "DELETE FROM login_failures WHERE last < $1 AND locked_until < $2",
                    forget_before,
                    now,
                )
        return records

    async def clear_login_records(self, keys: Sequence[str]) -> None:
        # deleting nothing (the usual case) writes nothing
        await self._store.database.fetchval(
            "DELETE FROM login_failures WHERE key = ANY($1)", list(keys)
        )

    # --- connections at once per client address -----------------------------
    async def count_clients(self, listener: str, ip: str, mine: int) -> int:
        """Record that this process has `mine` connections of `ip` on `listener`;
        returns the number the other live processes have."""
        store = self._store
        session = store.session
        if session is None:
            raise StoreError("no database session to count connections with")
        db = store.database
        self._client_writes += 1
        if self._client_writes % 10_000 == 0:
            await db.fetchval(_CLIENTS_DEAD)
        if mine <= 0:
            await db.fetchval(_CLIENTS_GONE, listener, ip, *session)
            return 0
        return int(await db.fetchval(_CLIENTS, listener, ip, *session, mine))

    # --- \Recent ------------------------------------------------------------
    async def claim_recent(self, mailbox_id: MailboxId, up_to: int) -> int:
        """Raise the mailbox's mark to `up_to`; returns the mark before (the
        caller's messages above it are its \\Recent ones)."""
        db = self._store.database
        before = await db.fetchval(_CLAIM_RECENT, int(mailbox_id), up_to)
        if before is None:  # the mailbox's first claim
            await db.fetchval(
                "INSERT INTO recent_claims (mailbox_id, last_uid) VALUES ($1, 0) "
                "ON CONFLICT (mailbox_id) DO NOTHING",
                int(mailbox_id),
            )
            before = await db.fetchval(_CLAIM_RECENT, int(mailbox_id), up_to)
        return int(before)

    async def recent_mark(self, mailbox_id: MailboxId) -> int:
        value = await self._store.database.fetchval(
            "SELECT last_uid FROM recent_claims WHERE mailbox_id = $1", int(mailbox_id)
        )
        return 0 if value is None else int(value)
