"""The SQLite schema and its migrations.

Rules:
- `MIGRATIONS[i]` takes the schema from version i to i+1; `schema_version` holds
  the current version (one row). `migrate()` runs inside the writer's transaction,
  so a migration applies entirely or not at all. Never edit a released migration:
  append a new one.
- Times are INTEGER microseconds since the Unix epoch, UTC (exact round trips).
- Blob rows carry the size and the parsed summary once per message bytes; every
  mailbox copy (messages) and queue entry references its blob row, and a blob row
  (and file) lives exactly as long as something references it.
- `changes` is the cross-process change feed: an append-only log with an
  increasing `seq`, trimmed by age.
- `expunged` remembers (mailbox, uid, modseq) of removed messages for QRESYNC.
- `access_keys` holds the URLAUTH secret of a mailbox; never shown to anyone.
- `header_index` (FTS5, trigram) holds, for message rows, their summary's
  SUBJECT, FROM, TO, CC and BCC casefolded (`fold`). Since schema 14 a new row's
  id goes to `header_pending` in the transaction that adds the row, and the store
  indexes the pending rows in batches soon after (`SqliteStore._index_pending`);
  a search reads both (`headers.search`), so it never disagrees with `messages`.
  Triggers empty both with the row (expunge, move, mailbox and user deletion).
- ``mailboxes.n_messages``, ``n_unseen`` and ``n_octets`` are the mailbox's counts,
  kept by triggers on ``messages`` in the transaction that inserts, deletes, moves
  or reflags a row: never computed by a read, never written by the store's code.
"""

# ruff: noqa: S608  -- the counting triggers' SQL is assembled from constants only
from __future__ import annotations

import sqlite3

from postier.mime.encoding import valid_text
from postier.mime.envelope import read_envelope
from postier.mime.summary import display_list, parse_date

_V1 = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    """CREATE TABLE domains (
        name TEXT PRIMARY KEY,
        created INTEGER NOT NULL,
        dkim_selector TEXT NOT NULL DEFAULT ''
    )""",
    # AUTOINCREMENT: a user id is never reused, so a stale session never sees a new user
    """CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL REFERENCES domains(name),
        password_hash TEXT NOT NULL,
        quota_bytes INTEGER NOT NULL,
        created INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX users_domain ON users(domain)",
    """CREATE TABLE aliases (
        source TEXT PRIMARY KEY,
        domain TEXT NOT NULL REFERENCES domains(name),
        targets TEXT NOT NULL
    )""",
    "CREATE INDEX aliases_domain ON aliases(domain)",
    """CREATE TABLE mailboxes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        special_use TEXT,
        subscribed INTEGER NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uidnext INTEGER NOT NULL,
        highestmodseq INTEGER NOT NULL,
        UNIQUE (user_id, name)
    )""",
    """CREATE TABLE blobs (
        id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        envelope BLOB NOT NULL,
        bodystructure BLOB NOT NULL,
        body BLOB NOT NULL,
        subject TEXT NOT NULL,
        from_addr TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        cc TEXT NOT NULL,
        date INTEGER,
        message_id TEXT NOT NULL,
        preview TEXT NOT NULL,
        header_size INTEGER NOT NULL
    )""",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        modseq INTEGER NOT NULL,
        flags TEXT NOT NULL,
        internal_date INTEGER NOT NULL,
        size INTEGER NOT NULL,
        blob_id TEXT NOT NULL REFERENCES blobs(id),
        UNIQUE (mailbox_id, uid)
    )""",
    "CREATE INDEX messages_modseq ON messages(mailbox_id, modseq)",
    "CREATE INDEX messages_blob ON messages(blob_id)",
    """CREATE TABLE expunged (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        modseq INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID""",
    "CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq)",
    """CREATE TABLE queue (
        id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        blob_id TEXT NOT NULL REFERENCES blobs(id),
        size INTEGER NOT NULL,
        created INTEGER NOT NULL,
        next_attempt INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        held INTEGER NOT NULL DEFAULT 0,
        envid TEXT NOT NULL,
        ret TEXT NOT NULL,
        smtputf8 INTEGER NOT NULL,
        body_8bit INTEGER NOT NULL,
        auth_user TEXT NOT NULL,
        is_bounce INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        claimed_until INTEGER
    )""",
    "CREATE INDEX queue_due ON queue(held, next_attempt)",
    "CREATE INDEX queue_blob ON queue(blob_id)",
    """CREATE TABLE queue_recipients (
        qid TEXT NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL,
        last_reply TEXT NOT NULL,
        notify TEXT NOT NULL,
        orcpt TEXT NOT NULL,
        PRIMARY KEY (qid, position)
    ) WITHOUT ROWID""",
    """CREATE TABLE trace (
        id INTEGER PRIMARY KEY,
        qid TEXT NOT NULL,
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX trace_qid ON trace(qid, id)",
    """CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        at INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        mailbox_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        uid INTEGER,
        modseq INTEGER
    )""",
)

# issue 7: greylisting state and Bayes token counts
_V2 = (
    # a (network, sender, recipient) triplet seen and not yet passed
    """CREATE TABLE greylist (
        network TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (network, sender, recipient)
    ) WITHOUT ROWID""",
    "CREATE INDEX greylist_first_seen ON greylist(first_seen)",
    # networks ("net") and SPF-pass sender domains ("domain") that passed once
    """CREATE TABLE greylist_pass (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (kind, value)
    ) WITHOUT ROWID""",
    "CREATE INDEX greylist_pass_expires ON greylist_pass(expires)",
    # model 0 is the global model; others are user ids
    """CREATE TABLE bayes_tokens (
        model INTEGER NOT NULL,
        token TEXT NOT NULL,
        spam INTEGER NOT NULL,
        ham INTEGER NOT NULL,
        PRIMARY KEY (model, token)
    ) WITHOUT ROWID""",
    """CREATE TABLE bayes_totals (
        model INTEGER PRIMARY KEY,
        spam INTEGER NOT NULL,
        ham INTEGER NOT NULL
    )""",
    # messages learned, by digest, so a message moved back and forth counts once
    """CREATE TABLE bayes_seen (
        model INTEGER NOT NULL,
        digest TEXT NOT NULL,
        is_spam INTEGER NOT NULL,
        PRIMARY KEY (model, digest)
    ) WITHOUT ROWID""",
)

_V3 = (
    # POP3 octet counts without reading the blob (MessageSummary.crlf_size)
    "ALTER TABLE blobs ADD COLUMN crlf_size INTEGER NOT NULL DEFAULT -1",
)

_V4 = (
    # the bytes of small messages, committed with their index rows (blobs.py)
    """CREATE TABLE blob_data (
        id TEXT PRIMARY KEY REFERENCES blobs(id),
        data BLOB NOT NULL
    )""",
)

_V5 = (
    # the Date: header's own zone in seconds east of UTC, so SEARCH SENTON/SENTBEFORE/
    # SENTSINCE see the date as written (RFC 9051 §6.4.4); older rows are filled from
    # their stored ENVELOPE (`migrate` provides the function)
    "ALTER TABLE blobs ADD COLUMN date_zone INTEGER",
    "UPDATE blobs SET date_zone = postier_date_zone(envelope) WHERE date IS NOT NULL",
)

_V6 = (
    # URLAUTH mailbox access keys (RFC 4467 §3, RFC 5092 §6.1.1.2): one random secret
    # per mailbox, signing its authorized URLs; gone with the mailbox
    """CREATE TABLE access_keys (
        mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        key BLOB NOT NULL
    )""",
)

_V7 = (
    # subscriptions are names, not mailboxes: one survives DELETE of its mailbox
    # (RFC 9051 §6.3.7) and LIST (SUBSCRIBED) shows it \NonExistent (RFC 5258 §3.1).
    # mailboxes.subscribed is no longer read or written.
    """CREATE TABLE IF NOT EXISTS subscriptions (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        PRIMARY KEY (user_id, name)
    ) WITHOUT ROWID""",
    "INSERT OR IGNORE INTO subscriptions (user_id, name) SELECT user_id, name FROM mailboxes "
    "WHERE subscribed = 1",
)

_V8 = (
    # what comes before a blob file's content: a spool file becomes the blob as it
    # is, and the fields intake adds on top (trace, results, X-Spam-*) live here;
    # the message is head + file[skip:] (`models.NewMessage`)
    """CREATE TABLE IF NOT EXISTS blob_heads (
        id TEXT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
        head BLOB NOT NULL,
        skip INTEGER NOT NULL
    )""",
)

_V9 = (
    # issue 12: what a queue entry's attempts reuse instead of redoing each time: the
    # length of the Return-Path: field intake wrote (never transmitted) and the
    # DKIM-Signature field(s) computed once when it was queued. NULL (entries queued
    # before): stripped and signed at each attempt, as before.
    "ALTER TABLE queue ADD COLUMN return_path_size INTEGER",
    "ALTER TABLE queue ADD COLUMN dkim_signature BLOB",
)

_V10 = (
    # issue 15: the admin role (the web admin at /admin); `postier user admin`
    "ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0",
)

_V11 = (
    # issue 14: IMAP SEARCH FROM/TO/CC/BCC/SUBJECT and the webmail's search from an
    # index, not a scan of summaries (`sqlite/headers.py` queries it). Trigrams match
    # any substring of 3 characters or more (RFC 9051 §6.4.4 is substring matching);
    # the text is casefolded before it is indexed, and so is the needle, so the
    # tokenizer folds nothing itself (case_sensitive 1): a phrase match is then
    # exactly "casefolded needle in casefolded value". One row per message row
    # (rowid = messages.id, which never changes), text copied per mailbox copy.
    # The Bcc: addresses join the summary (`MessageSummary.bcc`); older rows get
    # them from their stored ENVELOPE (`migrate` provides the function).
    "ALTER TABLE blobs ADD COLUMN bcc TEXT NOT NULL DEFAULT ''",
    "UPDATE blobs SET bcc = postier_envelope_bcc(envelope)",
    """CREATE VIRTUAL TABLE header_index USING fts5(
        subject, from_addr, to_addr, cc, bcc, tokenize = 'trigram case_sensitive 1'
    )""",
    """CREATE TRIGGER header_index_add AFTER INSERT ON messages BEGIN
        INSERT INTO header_index (rowid, subject, from_addr, to_addr, cc, bcc)
        SELECT new.id, postier_fold(b.subject), postier_fold(b.from_addr),
            postier_fold(b.to_addr), postier_fold(b.cc), postier_fold(b.bcc)
        FROM blobs b WHERE b.id = new.blob_id;
    END""",
    # also fired by the ON DELETE CASCADE of a mailbox or user (foreign_keys = ON)
    """CREATE TRIGGER header_index_remove AFTER DELETE ON messages BEGIN
        DELETE FROM header_index WHERE rowid = old.id;
    END""",
    # the messages already there (a database from before this version)
    """INSERT INTO header_index (rowid, subject, from_addr, to_addr, cc, bcc)
        SELECT m.id, postier_fold(b.subject), postier_fold(b.from_addr),
            postier_fold(b.to_addr), postier_fold(b.cc), postier_fold(b.bcc)
        FROM messages m JOIN blobs b ON b.id = m.blob_id""",
)

_UNSEEN_OLD = "(instr(' ' || old.flags || ' ', ' \\Seen ') = 0)"
_UNSEEN_NEW = "(instr(' ' || new.flags || ' ', ' \\Seen ') = 0)"
_V12 = (
    # issue 15: each mailbox's counts (messages, those without \Seen, octets) kept
    # with it, so LIST/STATUS, SELECT, quota checks and every webmail page read one
    # row instead of counting the mailbox's messages. Triggers keep them in the
    # transaction of every write that adds, removes, moves or reflags a message row
    # (deliver, append, copy, move, expunge, STORE, RENAME INBOX, and the cascades of
    # a mailbox or user deleted: those update a row already gone). "Unseen" is the
    # test the counting queries used: no "\Seen" word in the space-separated flags.
    "ALTER TABLE mailboxes ADD COLUMN n_messages INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE mailboxes ADD COLUMN n_unseen INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE mailboxes ADD COLUMN n_octets INTEGER NOT NULL DEFAULT 0",
    f"""CREATE TRIGGER mailbox_counts_add AFTER INSERT ON messages BEGIN
        UPDATE mailboxes SET n_messages = n_messages + 1,
            n_unseen = n_unseen + {_UNSEEN_NEW}, n_octets = n_octets + new.size
        WHERE id = new.mailbox_id;
    END""",
    f"""CREATE TRIGGER mailbox_counts_remove AFTER DELETE ON messages BEGIN
        UPDATE mailboxes SET n_messages = n_messages - 1,
            n_unseen = n_unseen - {_UNSEEN_OLD}, n_octets = n_octets - old.size
        WHERE id = old.mailbox_id;
    END""",
    # a row that moved to another mailbox (or changed size): out of one, into the other
    f"""CREATE TRIGGER mailbox_counts_move AFTER UPDATE OF mailbox_id, size, flags ON messages
    WHEN old.mailbox_id != new.mailbox_id OR old.size != new.size BEGIN
        UPDATE mailboxes SET n_messages = n_messages - 1,
            n_unseen = n_unseen - {_UNSEEN_OLD}, n_octets = n_octets - old.size
        WHERE id = old.mailbox_id;
        UPDATE mailboxes SET n_messages = n_messages + 1,
            n_unseen = n_unseen + {_UNSEEN_NEW}, n_octets = n_octets + new.size
        WHERE id = new.mailbox_id;
    END""",
    # flags changed in place: only the unseen count, and only when \Seen came or went
    f"""CREATE TRIGGER mailbox_counts_flags AFTER UPDATE OF flags ON messages
    WHEN old.mailbox_id = new.mailbox_id AND old.size = new.size
        AND {_UNSEEN_OLD} != {_UNSEEN_NEW} BEGIN
        UPDATE mailboxes SET n_unseen = n_unseen + {_UNSEEN_NEW} - {_UNSEEN_OLD}
        WHERE id = new.mailbox_id;
    END""",
    # the mailboxes already there (a database from before this version)
    f"""UPDATE mailboxes SET
        n_messages = (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = mailboxes.id),
        n_unseen = (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = mailboxes.id
            AND {_UNSEEN_OLD.replace("old.", "m.")}),
        n_octets = (SELECT COALESCE(SUM(m.size), 0) FROM messages m
            WHERE m.mailbox_id = mailboxes.id)""",
)

_V13 = (
    # issue 15: webmail sessions shared by every worker process (`web.webmail.
    # sessions`): one row per logged-in session, keyed by the SHA-256 of its id (the
    # id itself is never stored), gone with its user
    """CREATE TABLE web_sessions (
        key BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX web_sessions_user ON web_sessions(user_id, last_seen)",
    "CREATE INDEX web_sessions_last_seen ON web_sessions(last_seen)",
    # random secrets every process signs with (`Store.server_secret`): the webmail's
    # login-form tokens and image URLs
    """CREATE TABLE server_secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID""",
    # the admin Status page's counts of the day (`Store.trace_count`)
    "CREATE INDEX trace_event_at ON trace(event, at)",
)

_V14 = (
    # issue 14: a delivery's transaction no longer indexes its message. The FTS5
    # insert, with its five casefolds called back into Python, cost ~75 µs of the
    # ~220 µs CPU of a 1 KB delivery (11 per transaction); indexed 2,000 at a time
    # later, it costs ~30 µs. The new row's id waits here; `headers.search` tests
    # the waiting rows from their blob rows, so no search misses one.
    "CREATE TABLE header_pending (id INTEGER PRIMARY KEY)",
    "DROP TRIGGER header_index_add",
    """CREATE TRIGGER header_index_add AFTER INSERT ON messages BEGIN
        INSERT INTO header_pending (id) VALUES (new.id);
    END""",
    "DROP TRIGGER header_index_remove",
    """CREATE TRIGGER header_index_remove AFTER DELETE ON messages BEGIN
        DELETE FROM header_index WHERE rowid = old.id;
        DELETE FROM header_pending WHERE id = old.id;
    END""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13, _V14,
)  # fmt: skip
VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to `VERSION` inside the caller's transaction; returns the
    version found. Refuses a database written by a newer postier."""
    register_functions(conn)
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    found = int(row[0]) if row else 0
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    if found > VERSION:
        raise RuntimeError(
            f"database schema version {found} is newer than this postier "
            f"({VERSION}); upgrade postier"
        )
    for version in range(found, VERSION):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
    return found


def register_functions(conn: sqlite3.Connection) -> None:
    """The functions the migrations and the triggers call, on a new connection."""
    conn.create_function("postier_date_zone", 1, _date_zone, deterministic=True)
    conn.create_function("postier_fold", 1, _fold, deterministic=True)
    conn.create_function("postier_envelope_bcc", 1, _envelope_bcc, deterministic=True)


def fold_text(text: str) -> str:
    """What the header index holds and is asked: IMAP SEARCH compares text
    case-insensitively (RFC 9051 §6.4.4), as Python's full case folding does
    ("Straße" contains "SS")."""
    return text.casefold()


def _fold(text: str | None) -> str | None:
    return None if text is None else fold_text(text)


def _envelope_bcc(envelope: bytes | None) -> str:
    """The Bcc: addresses of a stored ENVELOPE as `MessageSummary.bcc` holds them."""
    env = read_envelope(bytes(envelope)) if envelope is not None else None
    return "" if env is None else valid_text(display_list(env.bcc))


def _date_zone(envelope: bytes | None) -> int | None:
    """The zone of the Date: header in a stored ENVELOPE, seconds east of UTC."""
    env = read_envelope(bytes(envelope)) if envelope is not None else None
    if env is None or env.date is None:
        return None
    when = parse_date(env.date.encode("utf-8", "surrogateescape"))
    offset = when.utcoffset() if when is not None else None
    return None if offset is None else int(offset.total_seconds())
