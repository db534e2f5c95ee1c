"""Frozen records the store hands out; callers import only these and `api.py`.

Rules:
- Addresses are stored lower-cased in their ASCII (IDNA) domain form; the local
  part keeps its case for display but compares case-insensitively.
- Mailbox names are full hierarchical names with "/" as the delimiter, UTF-8;
  "INBOX" is always spelled so. They never become file paths.
- Flags are a frozenset of strings: system flags keep their backslash
  (``\\Seen``), keywords are atoms (``$Junk``). ``\\Recent`` is never stored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, NewType

from postier.mail.queueid import QueueId
from postier.mail.summary import MessageSummary

UserId = NewType("UserId", int)
MailboxId = NewType("MailboxId", int)
Uid = NewType("Uid", int)
ModSeq = NewType("ModSeq", int)
BlobId = NewType("BlobId", str)

SPECIAL_USE = {
    "INBOX": None,
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Trash": "\\Trash",
    "Archive": "\\Archive",
}
"""Mailboxes created for every new user, with their RFC 6154 special-use attribute."""

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


@dataclass(frozen=True)
class Domain:
    name: str  # ASCII (IDNA) form, lower case, no trailing dot
    created: datetime
    dkim_selector: str = ""


@dataclass(frozen=True)
class User:
    id: UserId
    address: str  # localpart@domain, lower case
    domain: str
    password_hash: str
    quota_bytes: int  # 0 = unlimited
    created: datetime
    disabled: bool = False  # logins refused; mail still delivered
    admin: bool = False  # may use the web admin at /admin


@dataclass(frozen=True)
class Alias:
    source: str  # "local@domain", or "@domain" for a catch-all
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Resolution:
    """Where mail for one envelope recipient goes."""

    users: tuple[User, ...] = ()  # local mailboxes
    remote: tuple[str, ...] = ()  # addresses outside our domains (alias forwards)

    @property
    def found(self) -> bool:
        return bool(self.users or self.remote)


@dataclass(frozen=True)
class Mailbox:
    id: MailboxId
    user_id: UserId
    name: str
    special_use: str | None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int = 0
    unseen: int = 0
    size: int = 0  # sum of message sizes in octets


@dataclass(frozen=True)
class Message:
    mailbox_id: MailboxId
    uid: Uid
    modseq: ModSeq
    flags: frozenset[str]
    internal_date: datetime
    size: int
    blob_id: BlobId
    summary: MessageSummary = field(default_factory=MessageSummary)


#: One message's metadata as IMAP FETCH sends it without its bytes
#: (`Store.list_meta`): (UID, size, internal date in microseconds since the epoch
#: UTC, ENVELOPE, BODYSTRUCTURE, BODY), the row as the database returns it: no
#: `Message` or summary is built (a metadata FETCH of a whole mailbox reads
#: thousands). The structures are ``b"NIL"`` when intake left no summary.
MetaRow = tuple[Uid, int, int, bytes, bytes, bytes]

#: What a folder's list sorts on (`Store.list_sort_keys`): (UID, the Date: header's
#: instant else the arrival, in microseconds since the epoch UTC, size, From,
#: Subject), a tuple of atoms as the database returns it — the cyclic GC stops
#: tracking such a tuple at its first look, where a `Message` and its summary stay
#: tracked (a folder of 50,000 listed for its order was 100,000 objects that every
#: full collection scanned while they lived).
SortRow = tuple[Uid, int, int, str, str]


class MaildropItem(NamedTuple):
    """One message as a POP3 maildrop lists it (`Store.maildrop`)."""

    uid: Uid
    blob_id: BlobId
    crlf_size: int  # MessageSummary.crlf_size: -1 when the blob predates it
    seen: bool  # has \\Seen


@dataclass(frozen=True)
class DeliveryTarget:
    """One local copy of an incoming message."""

    user_id: UserId
    mailbox: str = "INBOX"
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Delivered:
    user_id: UserId
    mailbox_id: MailboxId
    uid: Uid


class RcptState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # permanently; a DSN is due or sent


@dataclass(frozen=True)
class QueueRecipient:
    address: str
    state: RcptState = RcptState.PENDING
    last_reply: str = ""  # the remote server's reply (or our diagnosis) of the last try
    notify: str = ""  # DSN NOTIFY= (RFC 3461), "" when not given
    orcpt: str = ""  # DSN ORCPT=


@dataclass(frozen=True)
class NewQueueEntry:
    """The envelope of a message to send out, as intake hands it to the store."""

    sender: str  # "" for the null sender <>
    recipients: tuple[QueueRecipient, ...]
    envid: str = ""  # DSN ENVID=
    ret: str = ""  # DSN RET= FULL or HDRS
    smtputf8: bool = False
    body_8bit: bool = False
    auth_user: str = ""  # submitting user, for trace and policy
    is_bounce: bool = False
    #: octets at the start of the blob that are not transmitted (the Return-Path:
    #: intake wrote); None: unknown, found at each attempt (`queue.enqueue`)
    return_path_size: int | None = None
    #: DKIM-Signature field(s) computed when queued, prepended at every attempt;
    #: b"": nothing signs it; None: signed at each attempt (`queue.enqueue`)
    dkim_signature: bytes | None = None


@dataclass(frozen=True)
class QueueEntry:
    id: QueueId
    sender: str
    recipients: tuple[QueueRecipient, ...]
    blob_id: BlobId
    size: int
    created: datetime
    next_attempt: datetime
    attempts: int
    held: bool = False
    envid: str = ""
    ret: str = ""
    smtputf8: bool = False
    body_8bit: bool = False
    auth_user: str = ""
    is_bounce: bool = False
    last_error: str = ""
    return_path_size: int | None = None  # as in NewQueueEntry
    dkim_signature: bytes | None = None  # as in NewQueueEntry


@dataclass(frozen=True)
class DeliveryResult:
    """What `Store.deliver` made durable before returning."""

    qid: QueueId
    delivered: tuple[Delivered, ...] = ()
    queued: QueueId | None = None
    blob_id: BlobId | None = None


class ChangeKind(enum.StrEnum):
    EXISTS = "exists"  # a message was added (uid)
    FLAGS = "flags"  # a message's flags changed (uid, modseq)
    EXPUNGE = "expunge"  # a message was removed (uid)
    MAILBOX = "mailbox"  # a mailbox was created, renamed, deleted or (un)subscribed


@dataclass(frozen=True)
class Change:
    user_id: UserId
    mailbox_id: MailboxId
    kind: ChangeKind
    uid: Uid | None = None
    modseq: ModSeq | None = None


@dataclass(frozen=True)
class WebSession:
    """A logged-in webmail session as the store keeps it (`Store.web_session_get`):
    found by the hash of its id (the id itself is never stored), with its
    account's address and role as they are now."""

    user_id: UserId
    address: str
    admin: bool
    csrf: str
    created: datetime
    last_seen: datetime


@dataclass(frozen=True)
class TraceEvent:
    """One line of a message's timeline (`postier trace QID`)."""

    qid: QueueId
    at: datetime
    event: str  # "received", "delivered", "attempt", "deferred", "bounced", "filter", ...
    detail: str


class GreylistOutcome(enum.StrEnum):
    """Why `Store.greylist_check` let a client through or not (issue 7)."""

    WHITELISTED_NETWORK = "whitelisted-network"  # the network passed before
    WHITELISTED_DOMAIN = "whitelisted-domain"  # SPF-pass sender of a domain that passed
    RETRY_PASSED = "retry-passed"  # retried after the delay, within the window
    NEW = "new"  # first attempt of this triplet: tempfail
    TOO_EARLY = "too-early"  # retried before the delay: tempfail
    EXPIRED = "expired"  # retried after the window: counted as new, tempfail


@dataclass(frozen=True)
class GreylistDecision:
    outcome: GreylistOutcome
    retry_after: float = 0.0  # seconds until a retry will pass (tempfail only)

    @property
    def passed(self) -> bool:
        return self.outcome in (
            GreylistOutcome.WHITELISTED_NETWORK,
            GreylistOutcome.WHITELISTED_DOMAIN,
            GreylistOutcome.RETRY_PASSED,
        )


#: the Bayes model shared by all users (users whose own model is still too small)
GLOBAL_BAYES_MODEL = UserId(0)


@dataclass(frozen=True)
class BayesCounts:
    """A Bayes model's counts for the tokens asked (absent tokens are not listed)."""

    spam_messages: int
    ham_messages: int
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)  # token → (spam, ham)


@dataclass(frozen=True)
class NewMessage:
    """A message to store, with the summary its one parse gave (at intake, or
    by whoever hands it over): the store keeps both and never parses.

    `data` is the bytes, or a spool file the store takes over (renamed into
    place, never copied on the same filesystem). With a file, the message is
    ``head + file[skip:]``: fields added above the client's bytes (and the
    client's header when fields of it were removed) are kept in the index
    instead of rewriting a large file to put them on top."""

    data: bytes | Path
    summary: MessageSummary
    head: bytes = b""
    skip: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.data, bytes) and (self.head or self.skip):
            raise ValueError("head and skip go with a spool file; join bytes instead")
