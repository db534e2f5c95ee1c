"""The storage interface every backend implements (`sqlite`, later `postgres`).

Rules:
- Every method is async and safe to call from many tasks at once.
- A method that returns has made its change durable (committed, fsynced): callers
  reply "OK"/"250" only after it returns.
- Names and addresses are validated by callers (`postier.mail.address`); the store
  normalises case and raises `errors.NotFound` / `errors.Conflict` / `errors.Invalid`.
- Message bytes are immutable blobs; metadata (flags, mailbox, UID) is the index.
- UIDs in a mailbox strictly increase and are never reused; every change to a
  mailbox takes a new MODSEQ greater than any before it in that mailbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from postier.mail.queueid import QueueId
from postier.store.models import (
    Alias,
    BayesCounts,
    BlobId,
    Change,
    DeliveryResult,
    DeliveryTarget,
    Domain,
    GreylistDecision,
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
    Resolution,
    SortRow,
    TraceEvent,
    Uid,
    User,
    UserId,
    WebSession,
)

FlagMode = Literal["add", "remove", "replace"]
#: the summary fields `Store.search_headers` answers from its index
SearchField = Literal["from", "to", "cc", "bcc", "subject"]
SEARCH_FIELDS: tuple[SearchField, ...] = ("from", "to", "cc", "bcc", "subject")


class Subscription(Protocol):
    """A live feed of changes for one user; close it when the session ends."""

    def __aiter__(self) -> AsyncIterator[Change]: ...

    async def get(self) -> Change: ...

    def get_nowait(self) -> Change | None: ...

    def on_change(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` once, on the loop, when a change is pending or the feed
        closes (at once if so already); None forgets it."""

    def close(self) -> None: ...


class Store(Protocol):
    # --- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        """Create or migrate the schema, sweep temp files and orphan blobs."""

    async def close(self) -> None:
        """Finish pending commits; after this no method may be called."""

    # --- domains -----------------------------------------------------------
    async def add_domain(self, name: str) -> Domain: ...
    async def get_domain(self, name: str) -> Domain | None: ...
    async def list_domains(self) -> list[Domain]: ...
    async def delete_domain(self, name: str) -> None:
        """Refuses (`Conflict`) while users or aliases of the domain exist."""

    async def set_dkim_selector(self, name: str, selector: str) -> None: ...
    async def dkim_keys(self, domain: str) -> dict[str, bytes]:
        """The DKIM private keys of `domain`, selector → PEM (`mailauth.dkim` makes
        and reads them). Kept whether or not the domain exists (a domain added again
        signs with its old keys): SQLite as files of the data dir
        (`sqlite.keyfiles`), PostgreSQL in the database, so every node signs with
        the same keys."""

    async def add_dkim_key(self, domain: str, selector: str, private_pem: bytes) -> bytes:
        """Keep `private_pem` as the key of `selector` unless the domain has one
        already; returns the key kept: the first writer's when processes or nodes
        race, so all of them sign with (and publish) one key."""

    # --- users -------------------------------------------------------------
    async def add_user(self, address: str, password_hash: str, quota_bytes: int = 0) -> User:
        """Creates the user and their INBOX, Sent, Drafts, Junk, Trash, Archive."""

    async def get_user(self, address: str) -> User | None: ...
    async def get_user_by_id(self, user_id: UserId) -> User | None: ...
    async def list_users(self, domain: str | None = None) -> list[User]: ...
    async def set_password(self, address: str, password_hash: str) -> None:
        """The new hash; every webmail session of the account ends with the old password."""

    async def set_quota(self, address: str, quota_bytes: int) -> None: ...
    async def set_admin(self, address: str, admin: bool) -> None:
        """Gives or takes the admin role (the web admin at /admin); NotFound if no user."""

    async def set_disabled(self, address: str, disabled: bool) -> None:
        """A disabled account cannot log in (any protocol); its mail is still
        delivered, and its webmail sessions end. NotFound if no user."""

    async def delete_user(self, address: str) -> None:
        """Removes the user, their mailboxes and messages (blobs are freed) and
        webmail sessions."""

    # --- aliases -----------------------------------------------------------
    async def add_alias(self, source: str, targets: Sequence[str]) -> Alias:
        """`source` is "local@domain" or "@domain" (catch-all) of a local domain."""

    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    async def delete_alias(self, source: str) -> None: ...
    async def resolve(self, address: str) -> Resolution:
        """Where mail for `address` goes: the user, else an alias (expanded
        recursively, loops cut), else the domain's catch-all; empty if none."""

    async def addresses_of(self, user_id: UserId) -> list[str]:
        """Every address the user may send as: their own and aliases that
        resolve to them alone (used to stop spoofing on submission)."""

    # --- mailboxes ---------------------------------------------------------
    async def list_mailboxes(self, user_id: UserId) -> list[Mailbox]:
        """All of a user's mailboxes with current counts, sorted by name."""

    async def get_mailbox(self, user_id: UserId, name: str) -> Mailbox | None:
        """`name` "inbox" in any case is INBOX."""

    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None: ...
    async def create_mailbox(
        self, user_id: UserId, name: str, special_use: str | None = None
    ) -> Mailbox:
        """Creates missing parents too (RFC 9051 §6.3.4). `Conflict` if it exists."""

    async def delete_mailbox(self, user_id: UserId, name: str) -> None:
        """Deletes the mailbox and its messages; INBOX cannot be deleted (`Invalid`)."""

    async def rename_mailbox(self, user_id: UserId, old: str, new: str) -> None:
        """Renames the mailbox and its children. Renaming INBOX moves its messages
        to the new mailbox and leaves INBOX empty (RFC 9051 §6.3.6)."""

    async def set_subscribed(self, user_id: UserId, name: str, subscribed: bool) -> None:
        """Subscribing needs the mailbox; a subscription outlives its mailbox
        (RFC 9051 §6.3.7) and follows it through RENAME. `NotFound` when there is
        neither a mailbox nor a subscription of that name."""

    async def list_subscriptions(self, user_id: UserId) -> list[str]:
        """Every subscribed name, sorted, whether its mailbox exists or not."""

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

        The message comes with its summary (`NewMessage`): the store never parses.

        `trace` (event, detail) lines are recorded for the QID in the same
        transaction, so the timeline costs no commit of its own.

        Atomic and durable: when this returns, the blob is fsynced under its
        final name and every mailbox row and queue entry is committed. Either all
        targets got the message or none did (an exception). A missing target
        mailbox falls back to INBOX. Concurrent calls are group-committed.
        """

    async def append(
        self,
        mailbox_id: MailboxId,
        message: NewMessage,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
    ) -> Message:
        """IMAP APPEND / webmail save: one message into one mailbox, durable."""

    async def list_messages(
        self,
        mailbox_id: MailboxId,
        uid_min: int = 1,
        uid_max: int | None = None,
        *,
        summaries: bool = True,
        structures: bool = True,
    ) -> list[Message]:
        """Metadata of the messages in a UID range, ascending by UID. With
        `summaries=False` each `Message.summary` is empty (a faster, lighter read
        for callers that need only UIDs, flags, MODSEQs, dates and sizes); with
        `structures=False` it holds the text fields and sizes but not the ENVELOPE,
        BODYSTRUCTURE, BODY and preview (what IMAP SEARCH reads)."""

    async def list_meta(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[MetaRow]:
        """What IMAP FETCH of metadata items (RFC822.SIZE, INTERNALDATE, ENVELOPE,
        BODYSTRUCTURE, BODY) reads of the messages in a UID range, ascending by UID,
        as plain rows (`MetaRow`): the same values `list_messages` gives, without
        building a `Message` per row."""

    async def list_sort_keys(self, mailbox_id: MailboxId) -> list[SortRow]:
        """What the webmail's list sorts a folder on, each message's `SortRow`,
        ascending by UID: the values `list_messages` gives, without a `Message`."""

    async def list_bodies(
        self, mailbox_id: MailboxId, uid_min: int, uid_max: int
    ) -> list[tuple[Uid, bytes]]:
        """(UID, message bytes) of the messages in a UID range, ascending by UID: what
        an IMAP FETCH of whole messages reads, in one round trip where the bytes are
        in the database. A message whose bytes are gone is left out. The caller
        bounds the range: every message's bytes are held at once."""

    async def maildrop(self, mailbox_id: MailboxId) -> list[MaildropItem]:
        """What a POP3 login lists, ascending by UID: each message's UID, blob,
        CRLF size and whether it is \\Seen, as plain tuples (no `Message`, no
        summary: a maildrop of thousands is listed at every login)."""

    async def list_flags(
        self, mailbox_id: MailboxId, uid_min: int = 1, uid_max: int | None = None
    ) -> list[tuple[Uid, ModSeq, frozenset[str]]]:
        """(UID, MODSEQ, flags) of the messages in a UID range, ascending by UID:
        what IMAP SELECT keeps of each message, read without building a `Message`
        (no dates, sizes or blob ids). Equal flag sets may be one shared object."""

    async def search_headers(
        self, mailbox_id: MailboxId, needle: str, fields: Sequence[SearchField]
    ) -> list[Uid]:
        """UIDs, ascending, of the messages in the mailbox one of whose `fields`
        (the decoded text of their summary: `MessageSummary.from_`, `to`, `cc`,
        `bcc`, `subject`) contains `needle`, both sides compared after `str.casefold()`:
        IMAP SEARCH FROM/TO/CC/BCC/SUBJECT (RFC 9051 §6.4.4: case-insensitive
        substring) and the webmail's search. An empty needle matches every message.
        Exact, never approximate; answered from an index kept in the transactions
        that add and remove messages, in time that follows the matches rather than
        the size of the mailbox (SQL: a trigram index; or a casefolded column and
        `strpos`)."""

    async def get_message(self, mailbox_id: MailboxId, uid: Uid) -> Message | None: ...
    async def get_messages(
        self, mailbox_id: MailboxId, uids: Sequence[Uid], *, structures: bool = True
    ) -> list[Message]:
        """The messages of these UIDs (at most a few hundred: the caller bounds them),
        ascending by UID, in one round trip; UIDs with no message are left out.
        `structures` as for `list_messages`."""

    async def read_blob(self, blob_id: BlobId) -> bytes: ...
    async def read_blobs(self, blob_ids: Sequence[BlobId]) -> dict[BlobId, bytes]:
        """Many blobs in one round trip (IMAP FETCH of a range); ids that do not
        exist are missing from the answer."""

    async def blob_path(self, blob_id: BlobId) -> Path | None:
        """The file holding the blob, when the backend keeps blobs as files and
        the file alone is the message (None when a head is kept with it)."""

    async def store_flags(
        self,
        mailbox_id: MailboxId,
        uids: Sequence[Uid],
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> tuple[list[Message], list[Uid]]:
        """Change flags; returns (messages whose flags changed, with their new
        flags and MODSEQ — their `summary` may be left empty; UIDs refused because
        their MODSEQ > unchanged_since)."""

    async def expunge(
        self, mailbox_id: MailboxId, uids: Sequence[Uid] | None = None, *, flagged_only: bool = True
    ) -> list[Uid]:
        """Remove messages flagged \\Deleted (restricted to `uids` when given);
        returns the UIDs removed, ascending. `flagged_only=False` removes the
        given `uids` whatever their flags, in one transaction (POP3 UPDATE)."""

    async def copy(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId
    ) -> list[tuple[Uid, Uid]]:
        """Copy keeping flags and internal date; returns (source uid, new uid)."""

    async def move(
        self, src: MailboxId, uids: Sequence[Uid], dst: MailboxId
    ) -> list[tuple[Uid, Uid]]:
        """Atomic copy + expunge from `src` (RFC 6851)."""

    async def changed_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Message]:
        """Messages whose MODSEQ is greater than `modseq` (CONDSTORE)."""

    async def vanished_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> list[Uid]:
        """UIDs expunged after `modseq` (QRESYNC VANISHED)."""

    async def quota_usage(self, user_id: UserId) -> tuple[int, int]:
        """(bytes used, limit in bytes; 0 = unlimited)."""

    # --- URLAUTH (RFC 4467) -------------------------------------------------
    async def access_key(self, mailbox_id: MailboxId, new: bytes | None = None) -> bytes | None:
        """The mailbox access key that signs the mailbox's URLAUTH URLs (RFC 5092
        §6.1.1.2). None when it has none, unless `new` is given: then `new` becomes
        its key and is returned (or the key another caller set first). `NotFound`
        when the mailbox does not exist. The key is gone with the mailbox."""

    async def reset_access_keys(self, user_id: UserId, mailbox_id: MailboxId | None = None) -> None:
        """RESETKEY (RFC 4467 §3.1): forget the key of one of the user's mailboxes, or
        of all of them; URLs signed with a forgotten key stop resolving."""

    # --- change feed -------------------------------------------------------
    def subscribe(self, user_id: UserId) -> Subscription:
        """Changes to the user's mailboxes from this process and, within about a
        second, from other processes sharing the store."""

    # --- outbound queue ----------------------------------------------------
    async def queue_list(self) -> list[QueueEntry]: ...
    async def queue_get(self, qid: QueueId) -> QueueEntry | None: ...
    async def queue_due(self, now: datetime, limit: int) -> list[QueueEntry]:
        """Entries not held whose next attempt is due, oldest first, claimed so
        that no other runner (process or node) takes them until released."""

    async def queue_release_claims(self) -> int:
        """Forget the claims of runners that died (a SIGKILL between claim and
        update); called once when this node's runner starts. Returns how many."""

    async def queue_next_due(self) -> datetime | None:
        """When the next entry (not held) becomes due."""

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
        """Record an attempt's outcome and release the claim, or, with
        `keep_claim`, keep holding it: the runner records its intent before it
        connects anywhere and holds the entry until its round ends, so no other
        runner (process or node) takes it meanwhile, however long the round."""

    async def queue_set_next_attempt(self, qid: QueueId, when: datetime) -> None:
        """`postier queue flush`: make an entry due at `when`."""

    async def queue_hold(self, qid: QueueId, held: bool) -> None: ...
    async def queue_delete(self, qid: QueueId) -> None:
        """Remove an entry (delivered, bounced, or deleted by the admin)."""

    # --- trace -------------------------------------------------------------
    async def trace_add(self, qid: QueueId, event: str, detail: str) -> None: ...
    async def trace_get(self, qid: QueueId) -> list[TraceEvent]: ...
    async def trace_count(self, event: str, since: datetime, detail_prefix: str = "") -> int:
        """Trace lines of `event` recorded at or after `since` whose detail starts
        with `detail_prefix` (every QID's; an index on (event, at) serves it)."""
        ...

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
        """A new logged-in session, found later by `key` (a hash of its id). The
        user's sessions beyond the `keep` most recently used go, and so do every
        user's sessions last used before `idle_before`."""
        ...

    async def web_session_get(self, key: bytes) -> WebSession | None:
        """The session of `key`; None if there is none or its account is disabled.
        One look-up by key, nothing written."""
        ...

    async def web_session_touch(self, key: bytes, now: datetime) -> None:
        """Record a use of the session at `now` (callers do it rarely)."""
        ...

    async def web_session_delete(self, key: bytes) -> None:
        """End the session (logout): every process and node stops finding it."""
        ...

    async def server_secret(self, name: str) -> bytes:
        """A random 32-octet secret named `name`, made the first time any process
        asks and the same for every process and node after; never shown."""
        ...

    # --- inbound filters (issue 7) -----------------------------------------
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
        """One greylisting decision, atomically, shared by every process and node.

        The triplet is (`network`, `sender`, `recipient`), compared as given
        (callers lower-case them). A whitelisted network (or `spf_domain`, when
        the caller saw SPF pass for it) passes and has its period refreshed. A
        triplet first seen at least `delay` and at most `window` seconds ago
        passes and whitelists the network (and `spf_domain`) for
        `whitelist_period`; a triplet older than `window` starts again. Entries
        older than their window or period are removed on the way."""

    async def bayes_learn(
        self, model: UserId, digest: str, tokens: Sequence[str], is_spam: bool
    ) -> bool:
        """Count one message (known by `digest`) as spam or ham in `model` (a user
        id, or `GLOBAL_BAYES_MODEL`). Learning the same message again as the same
        class changes nothing (False); as the other class it is moved over."""

    async def bayes_counts(self, model: UserId, tokens: Sequence[str]) -> BayesCounts:
        """Message totals of `model` and the counts of those of `tokens` it knows."""
