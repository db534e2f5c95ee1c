"""What the PostgreSQL backend does beyond the store contract (tests/contract runs
that on both backends): migrations when nodes start at once, group commit, bytes
in chunks, the orphan sweep, the feed connection, queue leases between nodes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from postier.config.schema import Settings, StoreSettings
from postier.store import open_store
from postier.store.errors import NotFound
from postier.store.feed import FeedOverflow
from postier.store.models import DeliveryTarget, NewQueueEntry, QueueRecipient
from postier.store.postgres import PostgresStore, schema
from postier.store.postgres.store import default_node_name
from tests.support.downgrade import (
    POSTGRES_6,
    POSTGRES_7,
    POSTGRES_8,
    POSTGRES_9,
    POSTGRES_10,
    postgres_drop,
)
from tests.support.messages import inbox_and_sent, new_message
from tests.support.postgres import pg_dsn  # noqa: F401  (a fixture)

pytestmark = pytest.mark.postgres

MSG = b"Subject: x\r\n\r\nbody\r\n"


async def opened(dsn: str, **kw: object) -> PostgresStore:
    s = PostgresStore(dsn, **kw)  # type: ignore[arg-type]
    await s.open()
    return s


def test_open_store_picks_postgres(tmp_path: Path) -> None:
    settings = Settings()
    settings = replace(
        settings,
        server=replace(settings.server, data_dir=tmp_path / "d"),
        store=StoreSettings(backend="postgres", postgres_dsn="postgresql://x@127.0.0.1/db"),
    )
    store = open_store(settings)
    assert isinstance(store, PostgresStore)
    # a restarted node keeps its name (it releases its own queue claims); another
    # node on the same host (another data directory) has another
    assert store.node == default_node_name(tmp_path / "d")
    assert default_node_name(tmp_path / "d") != default_node_name(tmp_path / "e")


async def test_nodes_starting_at_once_migrate_once(pg_dsn: str) -> None:  # noqa: F811
    stores = await asyncio.gather(*(opened(pg_dsn) for _ in range(4)))
    try:
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetch("SELECT version FROM schema_version") == [(schema.VERSION,)]
            # the blob bytes are never compressed (STORAGE EXTERNAL)
            storage = await conn.fetchval(
                "SELECT attstorage FROM pg_attribute WHERE attrelid = 'blob_chunks'::regclass "
                "AND attname = 'data'"
            )
            assert storage == b"e"
            # a database from a newer postier is refused
            await conn.execute("UPDATE schema_version SET version = $1", schema.VERSION + 1)
        finally:
            await conn.close()
        with pytest.raises(RuntimeError, match="newer"):
            await opened(pg_dsn)
    finally:
        for s in stores:
            await s.close()


async def test_concurrent_deliveries_are_group_committed(pg_dsn: str) -> None:  # noqa: F811
    store = await opened(pg_dsn)
    try:
        await store.add_domain("example.test")
        u = await store.add_user("a@example.test", "h")
        before = store.commits
        results = await asyncio.gather(
            *(store.deliver(new_message(MSG), [DeliveryTarget(u.id)]) for _ in range(200))
        )
        assert sorted(r.delivered[0].uid for r in results) == list(range(1, 201))
        assert store.commits - before < 100  # batched, not one commit each
    finally:
        await store.close()


async def test_large_message_in_chunks_and_orphans_swept(pg_dsn: str) -> None:  # noqa: F811
    store = await opened(pg_dsn, inline_max=1000)
    try:
        await store.add_domain("example.test")
        u = await store.add_user("a@example.test", "h")
        big = b"Subject: big\r\n\r\n" + bytes(range(256)) * (3 * schema.CHUNK // 256 + 7)
        r = await store.deliver(new_message(big), [DeliveryTarget(u.id)])
        assert await store.read_blob(r.blob_id) == big
        conn = await asyncpg.connect(pg_dsn)
        try:
            chunks = await conn.fetchval(
                "SELECT COUNT(*) FROM blob_chunks WHERE blob_id = $1", r.blob_id
            )
            assert chunks == 4
            # chunks a crash left without their blob row: swept once old enough
            await conn.execute(
                "INSERT INTO blob_chunks (blob_id, seq, written, data) VALUES "
                "('0123456789abcdef0123456789abcdef', 0, 0, 'x'), "
                "('fedcba9876543210fedcba9876543210', 0, $1, 'y')",
                int(datetime.now(UTC).timestamp() * 1e6),
            )
        finally:
            await conn.close()
        await store.close()
        store = await opened(pg_dsn)
        assert store.last_sweep == 1  # the young one may be a commit in progress
        assert await store.read_blob(r.blob_id) == big
        # a failed delivery removes the chunks it had committed
        with pytest.raises(Exception, match="no user"):
            await store.deliver(new_message(big), [DeliveryTarget(9999)])
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT COUNT(DISTINCT blob_id) FROM blob_chunks") == 2
        finally:
            await conn.close()
    finally:
        await store.close()


async def test_lost_feed_connection_cuts_subscriptions_off(pg_dsn: str) -> None:  # noqa: F811
    a = await opened(pg_dsn)
    b = await opened(pg_dsn)
    try:
        await a.add_domain("example.test")
        u = await a.add_user("a@example.test", "h")
        sub = b.subscribe(u.id)
        admin = await asyncpg.connect(pg_dsn)
        try:
            assert b._listener is not None
            pid = b._listener.get_server_pid()
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(FeedOverflow):
            await asyncio.wait_for(sub.get(), 5)
        # the node listens again: a new subscription hears the other node
        for _ in range(100):
            if b._listener is not None:
                break
            await asyncio.sleep(0.05)
        sub = b.subscribe(u.id)
        await a.deliver(new_message(MSG), [DeliveryTarget(u.id)])
        change = await asyncio.wait_for(sub.get(), 2)
        assert change.uid == 1
        sub.close()
    finally:
        await b.close()
        await a.close()


async def test_queue_leases_between_nodes(pg_dsn: str) -> None:  # noqa: F811
    a = await opened(pg_dsn, node="a")
    b = await opened(pg_dsn, node="b")
    try:
        entry = NewQueueEntry(sender="s@example.test", recipients=(QueueRecipient("r@x.test"),))
        qids = {(await a.deliver(new_message(MSG), [], queue=entry)).qid for _ in range(40)}
        now = datetime.now(UTC) + timedelta(seconds=1)
        # a node in the middle of claiming holds the oldest entries' rows: another
        # node's runner skips them at once instead of waiting (SKIP LOCKED)
        conn = await asyncpg.connect(pg_dsn)
        try:
            async with conn.transaction():
                held = await conn.fetch(
                    'SELECT id FROM queue ORDER BY created, id COLLATE "C" LIMIT 10 FOR UPDATE'
                )
                skipped = await asyncio.wait_for(b.queue_due(now, 5), 2)
                assert not {e.id for e in skipped} & {r[0] for r in held}
                assert len(skipped) == 5
        finally:
            await conn.close()
        await b.queue_release_claims()
        # both nodes claim at once, in small bites: every entry goes to exactly one
        got_a: list[str] = []
        got_b: list[str] = []

        async def runner(store: PostgresStore, got: list[str]) -> None:
            while batch := await store.queue_due(now, 3):
                got.extend(e.id for e in batch)
                await asyncio.sleep(0)

        await asyncio.gather(runner(a, got_a), runner(b, got_b))
        assert sorted(got_a + got_b) == sorted(qids)
        assert not set(got_a) & set(got_b)
        # b restarting releases its own claims, not a's
        assert await b.queue_release_claims() == len(got_b)
        again = [e.id for e in await a.queue_due(now, 100)]
        assert sorted(again) == sorted(got_b)
        # a's leases run out by themselves (a died): b takes them
        later = now + timedelta(seconds=a.claim_timeout + 1)
        assert sorted(e.id for e in await b.queue_due(later, 100)) == sorted(qids)
    finally:
        await b.close()
        await a.close()


async def test_queue_leases_end_with_their_node(pg_dsn: str) -> None:  # noqa: F811
    """A claim lives as long as the database session of the node that took it:
    a node that is gone (killed: its connections close) leaves its entries to the
    others at once, while one that merely reconnected keeps them."""
    a = await opened(pg_dsn, node="a")
    b = await opened(pg_dsn, node="b")
    try:
        entry = NewQueueEntry(sender="s@example.test", recipients=(QueueRecipient("r@x.test"),))
        qids = sorted([(await a.deliver(new_message(MSG), [], queue=entry)).qid for _ in range(3)])
        now = datetime.now(UTC) + timedelta(seconds=1)
        assert sorted(e.id for e in await a.queue_due(now, 10)) == qids
        # a's feed connection drops and comes back: its leases follow it
        session = a._session
        admin = await asyncpg.connect(pg_dsn)
        try:
            assert a._listener is not None
            await admin.execute("SELECT pg_terminate_backend($1)", a._listener.get_server_pid())
        finally:
            await admin.close()
        for _ in range(100):
            if a._session != session:
                break
            await asyncio.sleep(0.05)
        assert a._session != session
        assert await b.queue_due(now, 10) == []
        assert await b.queue_next_due() is not None
        assert await b.queue_next_due() > now + timedelta(minutes=10)
        # a goes away without releasing anything: b takes its entries now, not
        # when the 30-minute lease runs out
        await a.close()
        for _ in range(50):
            if (nxt := await b.queue_next_due()) is not None and nxt < now:
                break
            await asyncio.sleep(0.05)
        assert sorted(e.id for e in await b.queue_due(now, 10)) == qids
    finally:
        await b.close()
        await a.close()


async def test_v4_fills_bcc_and_the_search_columns_of_older_blobs(pg_dsn: str) -> None:  # noqa: F811
    """A database of version 3 gets the Bcc: text from each stored ENVELOPE and the
    casefolded search columns, so older messages are found as new ones are."""
    raw = (
        b"From: me@example.test\r\nSubject: Gr\xc3\xbc\xc3\x9fe STRASSE\r\n"
        b"Bcc: =?utf-8?q?J=C3=B6rg?= <joerg@remote.test>\r\n\r\nx\r\n"
    )
    store = await opened(pg_dsn)
    try:
        _, sent = await inbox_and_sent(store)
        await store.append(sent.id, new_message(raw))
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_dsn)
    try:  # back to version 3
        await postgres_drop(conn, POSTGRES_10, POSTGRES_9, POSTGRES_8, POSTGRES_7, POSTGRES_6)
        for column in ("bcc", "subject_fold", "from_fold", "to_fold", "cc_fold", "bcc_fold"):
            await conn.execute(f"ALTER TABLE blobs DROP COLUMN {column}")
        await conn.execute("UPDATE schema_version SET version = 3")
    finally:
        await conn.close()
    store = await opened(pg_dsn)
    try:
        m = await store.get_message(sent.id, 1)
        assert m is not None
        assert m.summary.bcc == new_message(raw).summary.bcc == "Jörg <joerg@remote.test>"
        assert await store.search_headers(sent.id, "JÖRG", ["bcc"]) == [1]
        assert await store.search_headers(sent.id, "strasse", ["subject"]) == [1]
        assert await store.search_headers(sent.id, "grüsse", ["subject"]) == [1]
        assert await store.search_headers(sent.id, "ME@", ["from"]) == [1]
        assert await store.search_headers(sent.id, "jörg", ["cc", "to"]) == []
    finally:
        await store.close()


async def test_header_index_is_built_and_matches_the_search(pg_dsn: str) -> None:  # noqa: F811
    """Schema 5's trigram index exists (pg_trgm is in PostgreSQL's contrib, on the
    test server too), and the search's LIKE is on the index's very expressions."""
    from postier.store.postgres.store import _like_pattern

    store = await opened(pg_dsn)
    try:
        assert store._header_index
        await store.add_domain("example.test")
        user = await store.add_user("u@example.test", "h")
        inbox = await store.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        for i in range(50):
            await store.append(inbox.id, new_message(f"Subject: note {i}\r\n\r\nx\r\n".encode()))
        assert await store.search_headers(inbox.id, "NOTE 42", ["subject"]) == [43]
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await schema.has_header_index(conn)
            await conn.execute("ANALYZE blobs")
            await conn.execute("SET enable_seqscan = off")
            plan = await conn.fetchval(
                "EXPLAIN (FORMAT JSON) SELECT b.id FROM blobs b "
                "WHERE encode(b.subject_fold, 'escape') LIKE $1",
                _like_pattern(schema.folded("note 42")),
            )
        finally:
            await conn.close()
        assert schema.HEADER_INDEX in plan
    finally:
        await store.close()


async def test_header_index_pattern_never_misses_a_substring(pg_dsn: str) -> None:  # noqa: F811
    """encode(field, 'escape') LIKE the needle's pattern holds whenever the needle
    is in the field, whatever the octets (NUL, backslash, LIKE's % and _, UTF-8);
    needles without three letters or digits in a row get no pattern (a scan)."""
    from postier.store.postgres.store import _like_pattern

    assert _like_pattern(b"ab") is None
    assert _like_pattern(b"a@b.c") is None
    assert _like_pattern("é".encode()) is not None  # \303\251: digits
    rnd = __import__("random").Random(16)
    alphabet = b"abc019 \\%_\x00\x01'\"\x7f\x80\xc3\xa9\xff"
    fields, patterns, wanted = [], [], []
    for _ in range(4000):
        field = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        if field and rnd.random() < 0.7:
            lo = rnd.randrange(len(field))
            needle = field[lo : lo + rnd.randint(1, 10)]
        else:
            needle = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(1, 6)))
        pattern = _like_pattern(needle)
        if pattern is None:
            continue
        fields.append(field)
        patterns.append(pattern)
        wanted.append(needle in field)
    conn = await asyncpg.connect(pg_dsn)
    try:
        got = await conn.fetch(
            "SELECT encode(f, 'escape') LIKE p FROM unnest($1::bytea[], $2::text[]) "
            "WITH ORDINALITY AS v(f, p, n) ORDER BY n",
            fields,
            patterns,
        )
    finally:
        await conn.close()
    assert sum(wanted) > 1000
    for field, pattern, want, (like,) in zip(fields, patterns, wanted, got, strict=True):
        if want:
            assert like, (field, pattern)


async def test_without_pg_trgm_the_search_scans_and_says_so(
    pg_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server without the extension: no index, a warning, the same answers; a
    later start where the extension is there builds the index."""
    monkeypatch.setattr(schema, "TRGM_EXTENSION", "postier_no_such_extension")
    monkeypatch.setattr(schema, "_warned_no_trgm", False)
    store = await opened(pg_dsn)
    try:
        assert not store._header_index
        assert "no pg_trgm extension" in caplog.text
        await store.add_domain("example.test")
        user = await store.add_user("u@example.test", "h")
        inbox = await store.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        for subject in ("alpha beta", "gamma", "Beta Delta"):
            await store.append(inbox.id, new_message(f"Subject: {subject}\r\n\r\nx\r\n".encode()))
        assert await store.search_headers(inbox.id, "BETA", ["subject"]) == [1, 3]
    finally:
        await store.close()
    monkeypatch.setattr(schema, "TRGM_EXTENSION", "pg_trgm")
    store = await opened(pg_dsn)
    try:
        assert store._header_index
        assert await store.search_headers(inbox.id, "BETA", ["subject"]) == [1, 3]
    finally:
        await store.close()


async def test_a_failing_job_is_rolled_back_alone(pg_dsn: str) -> None:  # noqa: F811
    """Batches run without savepoints; a job that raises (in Python, or in
    PostgreSQL, which aborts the transaction) sends its batch back to be run with
    them, so the others still commit and it alone fails; alone, it just fails."""
    from postier.store.postgres.db import Database, Tx

    db = Database(pg_dsn)
    await db.start()
    try:
        await db.pool.execute("CREATE TABLE t (v INTEGER)")

        def insert(v: int) -> Any:
            async def job(tx: Tx) -> int:
                await tx.execute("INSERT INTO t VALUES ($1)", v)
                return v

            return job

        async def fails(tx: Tx) -> None:
            await tx.execute("INSERT INTO t VALUES (-1)")
            raise ValueError("no")

        async def fails_in_sql(tx: Tx) -> None:
            await tx.execute("INSERT INTO t VALUES (-2)")
            await tx.execute("INSERT INTO t VALUES (1 / 0)")

        before = db.commits
        got = await asyncio.gather(
            db.write(insert(1)),
            db.write(fails),
            db.write(insert(2)),
            db.write(fails_in_sql),
            db.write(insert(3)),
            return_exceptions=True,
        )
        assert db.commits - before == 1  # one batch
        assert got[0::2] == [1, 2, 3]
        assert isinstance(got[1], ValueError)
        assert isinstance(got[3], asyncpg.DivisionByZeroError)
        with pytest.raises(ValueError, match="no"):
            await db.write(fails)
        assert await db.write(insert(4)) == 4
        assert sorted(r[0] for r in await db.pool.fetch("SELECT v FROM t")) == [1, 2, 3, 4]
    finally:
        await db.stop()


async def test_a_delivery_costs_three_round_trips(pg_dsn: str) -> None:  # noqa: F811
    """One local target: BEGIN, one statement (blob, chunks, trace, UID, message
    row) and COMMIT with the change feed's NOTIFY; recipients already looked up
    cost nothing (cached until users, domains or aliases change)."""
    store = await opened(pg_dsn, readers=1)  # every read on the one logged connection
    try:
        await store.add_domain("example.test")
        u = await store.add_user("a@example.test", "h")
        await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])  # statements prepared
        assert await store.get_domain("Example.TEST") is not None
        assert (await store.resolve("A@example.test")).users == (u,)
        db = store._db
        assert db is not None
        sent: list[str] = []
        (await db._connection()).add_query_logger(lambda q: sent.append(q.query))
        async with db.pool.acquire() as conn:
            conn.add_query_logger(lambda q: sent.append(q.query))
        assert await store.get_domain("example.test") is not None
        assert (await store.resolve("a@example.test")).users == (u,)
        assert sent == []
        await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
        assert len(sent) == 3, sent
        assert sent[0] == "BEGIN"
        assert "pg_notify" in sent[2] and sent[2].endswith("COMMIT")
    finally:
        await store.close()


async def test_account_caches_follow_changes_made_on_any_node(pg_dsn: str) -> None:  # noqa: F811
    """get_domain and resolve answer from a cache; a change of users, domains or
    aliases drops it on the node that made it at once and on the others when its
    NOTIFY arrives; so does a lost feed connection (changes may be missed)."""
    a, b = await opened(pg_dsn), await opened(pg_dsn)

    async def soon(check: Any) -> None:
        for _ in range(100):
            if await check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("node b did not see the change within a second")

    try:
        assert await b.get_domain("new.test") is None
        assert not (await b.resolve("x@new.test")).found
        await a.add_domain("new.test")

        async def has_domain() -> bool:
            return await b.get_domain("new.test") is not None

        await soon(has_domain)
        assert not (await b.resolve("x@new.test")).found
        u = await a.add_user("x@new.test", "h")

        async def finds_user() -> bool:
            return (await b.resolve("X@new.test")).users == (u,)

        await soon(finds_user)
        await a.set_disabled("x@new.test", True)

        async def sees_disabled() -> bool:
            return all(v.disabled for v in (await b.resolve("x@new.test")).users)

        await soon(sees_disabled)
        assert not (await a.resolve("y@new.test")).found
        await a.add_alias("y@new.test", ["x@new.test"])
        assert [v.id for v in (await a.resolve("y@new.test")).users] == [u.id]  # at once
        # a lost feed connection drops the cache (changes may go unheard)
        await asyncio.sleep(0.2)  # the alias's NOTIFY, which drops b's cache
        await b.resolve("x@new.test")
        assert "x@new.test" in b._resolved
        assert b._listener is not None
        b._listener.terminate()
        await asyncio.sleep(0)
        assert b._resolved == {} and b._domains == {}
    finally:
        await a.close()
        await b.close()


async def test_deliveries_of_a_batch_go_together(pg_dsn: str) -> None:  # noqa: F811
    """Deliveries to one mailbox each in one batch: their statements pipelined
    (one round trip), their rows read back in one; UIDs in order, each caller
    its own result, the feed told of each. One that finds no mailbox (its user
    deleted since) fails alone: the batch runs again job by job."""
    store = await opened(pg_dsn, readers=1)
    try:
        await store.add_domain("example.test")
        a = await store.add_user("a@example.test", "h")
        b = await store.add_user("b@example.test", "h")
        sub = store.subscribe(a.id)
        db = store._db
        assert db is not None
        sent: list[str] = []
        (await db._connection()).add_query_logger(lambda q: sent.append(q.query))
        for n in (2, 20):  # the first prepares the statements
            sent.clear()
            before = db.commits
            results = await asyncio.gather(
                *(store.deliver(new_message(MSG), [DeliveryTarget(a.id)]) for _ in range(n))
            )
            assert db.commits - before == 1
        assert [r.delivered[0].uid for r in results] == list(range(3, 23))
        assert len({r.blob_id for r in results}) == 20
        # BEGIN, the 20 statements (one pipeline), their rows, NOTIFY and COMMIT
        assert len(sent) == 4, sent
        assert "pg_notify" in sent[3] and sent[3].endswith("COMMIT")
        changes = [await asyncio.wait_for(sub.get(), 1) for _ in range(22)]
        assert [c.uid for c in changes] == list(range(1, 23))
        gone = await store.add_user("gone@example.test", "h")
        await store.delete_user("gone@example.test")
        got = await asyncio.gather(
            store.deliver(new_message(MSG), [DeliveryTarget(b.id)]),
            store.deliver(new_message(MSG), [DeliveryTarget(gone.id)]),
            store.deliver(new_message(MSG), [DeliveryTarget(b.id)]),
            return_exceptions=True,
        )
        assert isinstance(got[1], NotFound)
        assert [r.delivered[0].uid for r in got[0::2]] == [1, 2]  # type: ignore[union-attr]
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM blobs") == 24  # none left over
    finally:
        await store.close()


async def test_v6_counts_the_messages_of_an_existing_database(pg_dsn: str) -> None:  # noqa: F811
    """A database of version 5 gets every mailbox's messages, unseen messages and
    octets counted by the migration, and the triggers keep them from then on."""
    store = await opened(pg_dsn)
    try:
        inbox, sent = await inbox_and_sent(store)
        for i in range(5):
            flags = frozenset({"\\Seen"}) if i % 2 else frozenset()
            await store.append(inbox.id if i < 4 else sent.id, new_message(b"x" * (10 + i)), flags)
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_dsn)
    try:  # back to version 5
        await postgres_drop(conn, POSTGRES_10, POSTGRES_9, POSTGRES_8, POSTGRES_7, POSTGRES_6)
        await conn.execute("UPDATE schema_version SET version = 5")
    finally:
        await conn.close()
    store = await opened(pg_dsn)
    try:
        boxes = await store.list_mailboxes(inbox.user_id)
        counts = {m.name: (m.messages, m.unseen, m.size) for m in boxes}
        assert counts["INBOX"] == (4, 2, 10 + 11 + 12 + 13)
        assert counts["Sent"] == (1, 1, 14)
        assert counts["Trash"] == (0, 0, 0)
        await store.store_flags(inbox.id, [1], frozenset({"\\Seen"}), "add")
        again = await store.get_mailbox_by_id(inbox.id)
        assert again is not None and (again.messages, again.unseen) == (4, 1)
    finally:
        await store.close()


async def test_message_lists_are_made_in_a_thread(pg_dsn: str, monkeypatch) -> None:  # noqa: F811
    """changed_since, list_messages, get_messages and store_flags's answer may
    be a whole mailbox (50,000 Messages held the loop 480 ms in one step): past
    `_MAKE_INLINE` rows each Message is made in a thread; a few on the loop."""
    import threading

    from postier.store.postgres import store as pg_store

    s = await opened(pg_dsn)
    try:
        inbox, _sent = await inbox_and_sent(s)
        for _ in range(3):
            await s.append(inbox.id, new_message(MSG))
        made_on_loop: list[bool] = []
        for name in ("_message_of", "_text_message_of", "_light_message_of"):
            real = getattr(pg_store, name)

            def spy(row: Any, real: Any = real) -> Any:
                made_on_loop.append(threading.current_thread() is threading.main_thread())
                return real(row)

            monkeypatch.setattr(pg_store, name, spy)

        async def calls() -> None:
            assert len(await s.changed_since(inbox.id, 0)) == 3
            assert len(await s.list_messages(inbox.id)) == 3
            assert len(await s.list_messages(inbox.id, structures=False)) == 3
            assert len(await s.list_messages(inbox.id, summaries=False)) == 3
            assert len(await s.get_messages(inbox.id, [1, 3])) == 2
            changed, _ = await s.store_flags(inbox.id, [1, 2, 3], frozenset({"\\Seen"}), "add")
            assert len(changed) == 3

        await calls()
        assert made_on_loop == [True] * 17  # a few rows: not worth a thread
        monkeypatch.setattr(pg_store, "_MAKE_INLINE", 0)  # every list past it
        await s.store_flags(inbox.id, [1, 2, 3], frozenset({"\\Seen"}), "remove")
        made_on_loop.clear()
        await calls()
        assert made_on_loop == [False] * 17
    finally:
        await s.close()


async def test_flag_changes_are_worked_out_in_a_thread(pg_dsn: str, monkeypatch) -> None:  # noqa: F811
    """store_flags works out the new flags of its locked rows and makes its
    changes in a thread past `_MAKE_INLINE` rows (50,000 held the loop 100 ms
    and 50 ms); a few on the loop; the subscribers get them all the same."""
    import threading

    from postier.store.postgres import store as pg_store

    s = await opened(pg_dsn)
    try:
        inbox, _sent = await inbox_and_sent(s)
        for _ in range(3):
            await s.append(inbox.id, new_message(MSG))
        sub = s.subscribe(inbox.user_id)
        on_loop: list[tuple[str, bool]] = []
        for name in ("_flag_updates", "_flag_changes"):
            real = getattr(pg_store, name)

            def spy(*args: Any, real: Any = real, name: str = name) -> Any:
                on_loop.append((name, threading.current_thread() is threading.main_thread()))
                return real(*args)

            monkeypatch.setattr(pg_store, name, spy)
        await s.store_flags(inbox.id, [1, 2, 3], frozenset({"\\Seen"}), "add")
        assert on_loop == [("_flag_updates", True), ("_flag_changes", True)]
        on_loop.clear()
        b = (await s.list_flags(inbox.id))[0][1]  # the first MODSEQ of the three
        monkeypatch.setattr(pg_store, "_MAKE_INLINE", 0)
        changed, refused = await s.store_flags(
            inbox.id, [1, 2, 3], frozenset({"\\Seen", "$x"}), "replace", unchanged_since=b + 1
        )
        assert on_loop == [("_flag_updates", False), ("_flag_changes", False)]
        assert [m.uid for m in changed] == [1, 2] and refused == [3]
        assert all(m.flags == frozenset({"\\Seen", "$x"}) for m in changed)
        got = [sub.get_nowait() for _ in range(6)]
        assert [(c.uid, c.modseq - b) for c in got if c is not None] == [
            (1, 0),
            (2, 1),
            (3, 2),
            (1, 3),
            (2, 4),
        ]
    finally:
        await s.close()


async def test_store_flags_sends_its_uids_once_and_notifies_from_a_thread(
    pg_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncpg encodes a statement's arrays item by item on the loop: a STORE
    sends its UIDs to lock the rows and, with their new flags, to update them —
    the MODSEQs are counted by the server and the answer's rows found by them
    (50,000 UIDs in five arrays held the loop 26 ms in one step). A batch of many
    changes makes its NOTIFY payloads in a thread (~20 ms for 50,000)."""
    import threading

    from postier.store.postgres import db as pg_db
    from postier.store.postgres.db import Tx

    s = await opened(pg_dsn)
    try:
        inbox, _sent = await inbox_and_sent(s)
        for _ in range(3):
            await s.append(inbox.id, new_message(MSG))
        arrays: list[int] = []
        for name in ("fetch", "execute"):
            real = getattr(Tx, name)

            async def spy(self: Tx, sql: str, *args: Any, real: Any = real) -> Any:
                arrays.extend(len(a) for a in args if isinstance(a, list))
                return await real(self, sql, *args)

            monkeypatch.setattr(Tx, name, spy)
        assert s._db is not None
        notify = s._db.before_commit
        assert notify is not None
        on_loop: list[bool] = []

        def notify_spy(txs: list[Tx]) -> str:
            on_loop.append(threading.current_thread() is threading.main_thread())
            return notify(txs)

        s._db.before_commit = notify_spy
        changed, _ = await s.store_flags(inbox.id, [1, 2, 3], frozenset({"\\Seen"}), "add")
        assert [m.uid for m in changed] == [1, 2, 3]
        assert all("\\Seen" in m.flags for m in changed)
        assert arrays == [3, 3, 3]  # the UIDs to lock; the UIDs and their flags
        assert on_loop == [True]  # a few changes
        monkeypatch.setattr(pg_db, "_BEFORE_COMMIT_INLINE", 2)
        await s.store_flags(inbox.id, [1, 2, 3], frozenset({"\\Seen"}), "remove")
        assert on_loop == [True, False]
        assert [m.flags for m in await s.list_messages(inbox.id)] == [frozenset()] * 3
    finally:
        await s.close()


async def test_notifications_make_changes_only_for_users_subscribed_here(
    pg_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every process of every node hears every NOTIFY payload: changes are
    made only for users subscribed in this one (another node's STORE on 50,000
    messages cost each process ~40 ms in one turn of its loop)."""
    import json

    from postier.store.models import Change, ChangeKind
    from postier.store.postgres import store as pg_store

    s = await opened(pg_dsn)
    try:
        inbox, _sent = await inbox_and_sent(s)
        made: list[int] = []

        def counted(*args: Any) -> Change:
            made.append(args[3])
            return Change(*args)

        monkeypatch.setattr(pg_store, "Change", counted)
        u, m = inbox.user_id, inbox.id
        payload = json.dumps(
            {"o": "elsewhere", "n": 1, "c": [[u, m, "flags", 1, 7], [u, m, "flags", 2, 8]]}
        )
        s._on_notify(None, 0, "", payload)
        assert made == []  # nobody subscribed
        sub = s.subscribe(inbox.user_id)
        s._on_notify(None, 0, "", payload)
        assert made == [1, 2]
        assert [sub.get_nowait(), sub.get_nowait()] == [
            Change(inbox.user_id, inbox.id, ChangeKind.FLAGS, 1, 7),
            Change(inbox.user_id, inbox.id, ChangeKind.FLAGS, 2, 8),
        ]
        sub.close()
    finally:
        await s.close()
