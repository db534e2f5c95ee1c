"""Events the SMTP server core (`postier.smtp.core`) hands to its adapter.

Rules:
- Events are frozen dataclasses named with the protocol's words.
- Events marked *decision* wait for the adapter: before the next `next_event()` call it
  must answer with `ServerConnection.accept()` or `ServerConnection.reject(reply)`.
  All other events are notices: the core already queued whatever reply they need.
- `NEED_DATA` is not an event but the answer "feed me more bytes".
- Secrets (AUTH passwords) are kept out of ``repr`` so an event can be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from postier.mail.address import Address
from postier.mail.replies import Reply


class NeedData(Enum):
    """The core has consumed every complete unit of input; call `receive_data`."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True)
class MailParams:
    """MAIL FROM parameters, validated (RFC 5321 §4.1.1.2 ``Mail-parameters``)."""

    size: int | None = None  # RFC 1870 SIZE=
    body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None = None  # RFC 6152, RFC 3030
    smtputf8: bool = False  # RFC 6531 §3.4
    ret: Literal["FULL", "HDRS"] | None = None  # RFC 3461 §4.3
    envid: str | None = None  # RFC 3461 §4.4, xtext-decoded
    auth: str | None = None  # RFC 4954 §5 AUTH=, xtext-decoded; "<>" kept as is


@dataclass(frozen=True)
class RcptParams:
    """RCPT TO parameters (RFC 3461 §4.1, §4.2)."""

    notify: tuple[Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"], ...] | None = None
    orcpt: tuple[str, str] | None = None  # (addr-type, xtext-decoded original address)


@dataclass(frozen=True)
class Hello:
    """*decision* EHLO (``extended``) or HELO. `accept()` sends the EHLO keyword list
    (or the HELO line) and starts a fresh session state (RFC 5321 §4.1.4)."""

    name: str
    extended: bool


@dataclass(frozen=True)
class MailFrom:
    """*decision* MAIL FROM; ``address`` None is the null reverse-path ``<>``."""

    address: Address | None
    params: MailParams


@dataclass(frozen=True)
class RcptTo:
    """*decision* RCPT TO, already checked against max_recipients."""

    address: Address
    params: RcptParams


@dataclass(frozen=True)
class DataStart:
    """Message data begins: 354 sent for DATA, or the first BDAT chunk of the
    transaction (``chunking``). The adapter opens its spool."""

    chunking: bool


@dataclass(frozen=True)
class DataChunk:
    """Message bytes: dot-unstuffed (DATA) or raw (BDAT), in order, never the
    terminating ``CRLF.CRLF``."""

    data: bytes = field(repr=False)


@dataclass(frozen=True)
class DataEnd:
    """*decision* the whole message arrived intact; ``size`` bytes were in the
    DataChunks. Answer only once it is durable (a 250 means on disk)."""

    size: int


@dataclass(frozen=True)
class Burl:
    """*decision* BURL (RFC 4468 §3.2): the next piece of the message is what ``url``
    names; after `DataStart` like a BDAT chunk. Answer with
    `ServerConnection.accept_burl(data)` once resolved, or `reject(reply)`, which
    fails the whole transaction."""

    url: str
    last: bool


@dataclass(frozen=True)
class DataRejected:
    """The core refused the message it was receiving (size limit, bare LF/CR, BDAT
    error) and queued ``reply``; the adapter drops its spool. The transaction is over."""

    reply: Reply


@dataclass(frozen=True)
class Authenticate:
    """*decision* AUTH credentials, decoded. `accept()` sends 235; `reject(R535...)`."""

    mechanism: str
    authzid: str  # "" when none was asked for
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class StartTls:
    """220 is queued: the adapter flushes it, runs the TLS handshake and then calls
    `tls_started()` (or closes the connection when the handshake fails)."""


@dataclass(frozen=True)
class Reset:
    """The mail transaction was abandoned (RSET, or EHLO/HELO inside a transaction);
    the adapter drops its envelope."""


@dataclass(frozen=True)
class Quit:
    """QUIT: 221 is queued; flush it and close."""


@dataclass(frozen=True)
class Disconnect:
    """The core ends the session (``reply`` queued: 421 too many errors, an early
    talker's 554, or a 421 given to `reject`/`abort`): flush and close."""

    reply: Reply


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed its side (``receive_data(b"")``) or the session is over."""


Event = (
    Hello
    | MailFrom
    | RcptTo
    | DataStart
    | DataChunk
    | DataEnd
    | Burl
    | DataRejected
    | Authenticate
    | StartTls
    | Reset
    | Quit
    | Disconnect
    | ConnectionClosed
)
DECISIONS = (Hello, MailFrom, RcptTo, DataEnd, Burl, Authenticate)
