"""The sans-IO SMTP server core: bytes in, events and reply bytes out (RFC 5321 and friends).

`ServerConnection` owns one session's protocol state. It never touches sockets, clocks,
stores or configuration files; every limit is a constructor argument.

How an adapter drives it (h11 style)::

    conn = ServerConnection(hostname="mx.example.test", tls_available=True)
    conn.greet(R220_READY("mx.example.test"))
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            write(conn.data_to_send()); conn.receive_data(await read())   # b"" on EOF
        elif isinstance(event, MailFrom):
            conn.accept() or conn.reject(reply)         # a *decision* event
        elif isinstance(event, StartTls):
            write(conn.data_to_send()); await handshake(); conn.tls_started()
        elif isinstance(event, (Quit, Disconnect, ConnectionClosed)):
            write(conn.data_to_send()); close(); break
        ...

Rules:
- Replies leave through `data_to_send()` in command order, so pipelined commands
  (RFC 2920) are answered in order: the core stops parsing at each *decision* event
  (`events.DECISIONS`) until the adapter answers it with `accept(reply=None)` or
  `reject(reply)`; calling `next_event()` before answering is a `LocalProtocolError`.
- The core decides what the RFCs decide and queues those replies itself: syntax 501,
  sequence 503, unknown command 500, not implemented 502, line too long 500 5.5.2,
  message size 552 5.3.4, too many recipients 452 4.5.3, bare LF/CR 554 5.5.2, an
  empty message (zero octets, by DATA or BDAT) 554 5.6.0, AUTH
  framing (334 / 501 / 504 / 538). Policy (which sender, recipient, credentials,
  message) comes back through `accept`/`reject`.
- Every 4xx/5xx reply (the core's or the adapter's) counts as an error; an accepted
  message resets the count (as Postfix's smtpd_hard_error_limit). At ``max_errors``
  the core queues ``421 4.7.0`` and emits `Disconnect`. Any 421 closes (RFC 5321 §3.8).
- Buffers are bounded: a command line longer than ``max_line_length`` (CRLF included,
  RFC 5321 §4.5.3.1.4) is answered once with 500 5.5.2 and discarded up to the next LF
  without being kept; DATA keeps at most two bytes back between chunks; BDAT never
  holds more than what one `receive_data` gave. The adapter feeds bytes only after
  NEED_DATA, so the command buffer is at most one read plus one line.
- Command lines end at LF with an optional CR before it (Postfix's leniency). Inside a
  command a NUL or CR is 500 5.5.2. Message data is stricter: only ``CRLF.CRLF`` ends
  DATA (RFC 5321 §4.1.1.4); a bare LF or CR anywhere makes the message rejected at its
  end with 554 5.5.2 (``bare_lf="reject"``), or rewritten to CRLF
  (``bare_lf="normalize"``). Either way ``\\n.\\n``, ``\\r.\\n``, ``\\n.\\r\\n`` and
  ``\\r\\n.\\n`` never end the data, so no second message can be smuggled.
- BDAT chunks (RFC 3030) are raw bytes: no dot-unstuffing, no bare-LF rule. A chunk
  is always read in full, even when the command is refused, so framing never breaks.
- BURL (RFC 4468, submission only, ``burl=True``) is a chunk whose bytes the adapter
  fetches: the `Burl` decision is answered with `accept_burl(data)` (counted against
  the size limit like a chunk, then DataChunk, and DataEnd after LAST) or with
  `reject(reply)`, which fails the transaction (RFC 4468 §3.2). BURL and BDAT mix
  in one transaction; EHLO offers ``BURL imap`` once AUTH is offered or done.
- STARTTLS (RFC 3207 §4.2): every byte after the STARTTLS line that arrives before
  `tls_started()` is dropped (CVE-2011-0411 command injection); afterwards the session
  starts again from the EHLO state, unauthenticated.
- Early talkers: bytes received before `greet()` are dropped, and `greet()` then sends
  ``554 5.5.0 Error: SMTP protocol synchronization`` and `Disconnect` instead of the
  greeting (Postfix postscreen's "drop" action for PREGREET).
- A 554 greeting (RFC 5321 §3.1) leaves a session where every command but QUIT gets
  503; a 421 greeting closes.
- The adapter keeps one envelope per transaction: it starts at an accepted MailFrom
  and ends at an answered DataEnd, DataRejected, a rejected Burl, Reset (RSET, or
  EHLO/HELO inside a transaction), StartTls or ConnectionClosed. DataChunks come
  only between DataStart and one of those.

Hand-written: aiosmtpd is asyncio-bound and does its own I/O; no sans-IO SMTP server
library exists for Python.
"""

from __future__ import annotations

import re
from collections import deque
from enum import Enum, auto
from typing import Literal

from postier.mail.address import Address, AddressError, Domain
from postier.mail.replies import (
    R214_HELP,
    R220_TLS_READY,
    R221_BYE,
    R235_AUTH_OK,
    R250_BURL_OK,
    R250_CHUNK_OK,
    R250_OK,
    R250_RECIPIENT_OK,
    R250_SENDER_OK,
    R252_CANNOT_VRFY,
    R334_CHALLENGE,
    R354_START_DATA,
    R421_TOO_MANY_ERRORS,
    R452_TOO_MANY_RECIPIENTS,
    R500_BAD_CHARACTER,
    R500_BAD_UTF8,
    R500_LINE_TOO_LONG,
    R500_UNKNOWN_COMMAND,
    R501_AUTH_BAD_ENCODING,
    R501_AUTH_CANCELLED,
    R501_BAD_PARAMETER,
    R501_BAD_RECIPIENT,
    R501_BAD_SENDER,
    R501_SYNTAX,
    R502_NOT_IMPLEMENTED,
    R503_ALREADY_AUTHENTICATED,
    R503_AUTH_NOT_ENABLED,
    R503_BDAT_IN_PROGRESS,
    R503_BINARYMIME_NEEDS_BDAT,
    R503_HELLO_FIRST,
    R503_IN_TRANSACTION,
    R503_NEED_MAIL,
    R503_NEED_RCPT,
    R503_NESTED_MAIL,
    R503_NO_SERVICE,
    R503_TLS_ACTIVE,
    R504_AUTH_MECHANISM,
    R538_ENCRYPTION_REQUIRED,
    R552_MESSAGE_TOO_BIG,
    R553_NON_ASCII_ADDRESS,
    R554_BARE_LF,
    R554_BURL_TOO_BIG,
    R554_EARLY_TALKER,
    R554_EMPTY_MESSAGE,
    R554_NO_VALID_RECIPIENTS,
    R555_UNSUPPORTED_PARAMETER,
    Reply,
)
from postier.smtp import sasl
from postier.smtp.events import (
    DECISIONS,
    NEED_DATA,
    Authenticate,
    Burl,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataRejected,
    DataStart,
    Disconnect,
    Event,
    Hello,
    MailFrom,
    MailParams,
    NeedData,
    Quit,
    RcptParams,
    RcptTo,
    Reset,
    StartTls,
)

__all__ = ["LocalProtocolError", "ProtocolError", "ServerConnection", "State"]


class ProtocolError(Exception):
    """Base of the core's errors. Peer mistakes never raise: they become replies."""


class LocalProtocolError(ProtocolError):
    """The adapter used the core wrongly (a bug on our side, never the peer's)."""


class State(Enum):
    GREETING = auto()  # connected; greet() not called yet
    NO_SERVICE = auto()  # greeted with 554: only QUIT (RFC 5321 §3.1)
    HELLO = auto()  # waiting for EHLO/HELO
    READY = auto()  # greeted, no mail transaction
    MAIL = auto()  # MAIL accepted, no recipient accepted yet
    RCPT = auto()  # at least one recipient accepted
    CHUNKING = auto()  # between BDAT chunks of one transaction (RFC 3030)
    DATA = auto()  # framing: message lines until CRLF.CRLF
    BDAT = auto()  # framing: the bytes of one BDAT chunk
    AUTH = auto()  # framing: SASL response lines (RFC 4954 §4)
    TLS = auto()  # STARTTLS accepted; bytes dropped until tls_started()
    CLOSED = auto()

    # Identity hash: every command looks its state up in the sets below, and
    # Enum's own __hash__ (hash of the name) is Python code run at each look-up.
    # Members are singletons compared by identity, so this hash agrees with ==.
    __hash__ = object.__hash__


# The command states: the ones in which a line is an SMTP command.
_SESSION = frozenset({State.HELLO, State.READY, State.MAIL, State.RCPT, State.CHUNKING})
_TRANSACTION = frozenset({State.MAIL, State.RCPT, State.CHUNKING})

# Verb → states where it is in sequence. RFC 5321 §4.1.4: RSET, NOOP, QUIT, VRFY, EXPN
# and HELP may come at any time; EHLO/HELO too (and abandon a transaction).
# STARTTLS and AUTH need EHLO and no transaction (RFC 3207 §4, RFC 4954 §4).
# DATA needs a recipient (RFC 5321 §3.3); BDAT is handled apart as its chunk must be
# read even when out of sequence (RFC 3030 §2).
_ALLOWED: dict[str, frozenset[State]] = {
    "EHLO": _SESSION,
    "HELO": _SESSION,
    "MAIL": frozenset({State.READY}),
    "RCPT": frozenset({State.MAIL, State.RCPT}),
    "DATA": frozenset({State.RCPT}),
    "BDAT": frozenset({State.RCPT, State.CHUNKING}),
    "BURL": frozenset({State.RCPT, State.CHUNKING}),  # RFC 4468 §3.1: after a good RCPT
    "RSET": _SESSION,
    "NOOP": _SESSION,
    "QUIT": _SESSION | {State.NO_SERVICE},
    "VRFY": _SESSION,
    "EXPN": _SESSION,
    "HELP": _SESSION,
    "STARTTLS": frozenset({State.READY}),
    "AUTH": frozenset({State.READY}),
}
# Commands of RFC 821/5321 and extensions postier knows and does not offer.
_NOT_IMPLEMENTED = frozenset({"TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML"})

# Transitions (the only assignments to _state are in the methods named here):
#   GREETING  --greet(2xx)--> HELLO;  --greet(554)--> NO_SERVICE;  --early/421--> CLOSED
#   HELLO|READY|MAIL|RCPT|CHUNKING --EHLO accepted--> READY   (Reset first if in a transaction)
#   READY --MAIL accepted--> MAIL --RCPT accepted--> RCPT --DATA--> DATA --end--> READY
#   MAIL|RCPT|CHUNKING --BDAT n--> BDAT --chunk read--> CHUNKING, or READY after LAST/error
#   RCPT|CHUNKING --BURL accepted--> CHUNKING, or READY after LAST; rejected --> READY
#   MAIL|RCPT|CHUNKING --RSET--> READY
#   READY --AUTH--> AUTH --credentials/cancel--> READY
#   READY --STARTTLS--> TLS --tls_started()--> HELLO
#   any --QUIT / 421 / EOF--> CLOSED


def _sequence_reply(verb: str, state: State, rcpt_attempted: bool) -> Reply:
    """The 503/554 for a command given in the wrong state."""
    if state is State.NO_SERVICE:
        return R503_NO_SERVICE
    if state is State.HELLO:
        return R503_HELLO_FIRST
    if state is State.CHUNKING:
        return R503_BDAT_IN_PROGRESS
    if verb == "MAIL":
        return R503_NESTED_MAIL
    if verb in ("STARTTLS", "AUTH"):
        return R503_IN_TRANSACTION
    if state is State.MAIL:  # DATA/BDAT before an accepted RCPT (RFC 5321 §3.3)
        return R554_NO_VALID_RECIPIENTS if rcpt_attempted else R503_NEED_RCPT
    return R503_NEED_MAIL


# RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
#                  esmtp-value = 1*(%d33-60 / %d62-126)  (+ UTF-8 with SMTPUTF8, RFC 6531 §3.3)
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\x80-\U0010ffff]+")
# RFC 3461 §4: xtext = *( xchar / hexchar ); xchar = "!".."~" except "+" and "=".
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-F]{2})")
# RFC 1870 §3: size-value = 1*20DIGIT
_SIZE = re.compile(r"[0-9]{1,20}")
# RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]; chunk-size = 1*DIGIT
_BDAT = re.compile(r"([0-9]{1,20})(?: +(LAST))? *", re.IGNORECASE)
# RFC 3461 §4.2: addr-type = atom
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")

_AUTH_LINE_LENGTH = 12288  # RFC 4954 §4: AUTH lines may be this long

# Parameters of a command that gave none (the common case), made once: frozen, so shared
_NO_MAIL_PARAMS = MailParams()
_NO_RCPT_PARAMS = RcptParams()


class _Line(Enum):
    SKIPPED = auto()  # an over-long line was answered and dropped


class _ParamError(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


def _xtext_decode(value: str, name: str) -> str:
    if not _XTEXT.fullmatch(value):
        raise _ParamError(R501_BAD_PARAMETER(name))
    return _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), value)


def _split_path(text: str) -> tuple[str, str] | None:
    """``<...>`` at the start of ``text`` → (inside, rest). Quoted strings may hold
    ``>`` (RFC 5321 §4.1.2 Quoted-string). None when there is no closed path."""
    if not text.startswith("<"):
        return None
    close = text.find(">")
    if close > 0 and text.find('"', 0, close) < 0:
        return text[1:close], text[close + 1 :]  # no quoted string before the first ">"
    return _split_path_scan(text)


def _split_path_scan(text: str) -> tuple[str, str] | None:
    """`_split_path` one character at a time, for a path that holds a quoted string
    (and the reference its shortcut is tested against)."""
    if not text.startswith("<"):
        return None
    in_quote = False
    i = 1
    while i < len(text):
        c = text[i]
        if in_quote:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == ">":
            return text[1:i], text[i + 1 :]
        i += 1
    return None


def _strip_source_route(path: str) -> str:
    """RFC 5321 §4.1.1.3, Appendix C: ``@a,@b:user@c`` → ``user@c`` (routes are
    accepted and ignored). Raises AddressError on a malformed route."""
    if not path.startswith("@"):
        return path
    colon = path.find(":")
    if colon < 0:
        raise AddressError("source route without ':'")
    for hop in path[:colon].split(","):  # A-d-l = At-domain *( "," At-domain )
        if not hop.startswith("@"):
            raise AddressError("bad source route")
        Domain.parse(hop[1:])
    return path[colon + 1 :]


class ServerConnection:
    """One SMTP server session; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        hostname: str,
        max_line_length: int = 2048,
        max_message_size: int = 50 * 1024 * 1024,
        max_recipients: int = 1000,
        max_errors: int = 20,
        max_auth_line_length: int = _AUTH_LINE_LENGTH,
        bare_lf: Literal["reject", "normalize"] = "reject",
        tls: bool = False,
        tls_available: bool = False,
        auth_mechanisms: tuple[str, ...] = (),
        auth_requires_tls: bool = True,
        pipelining: bool = True,
        chunking: bool = True,
        binarymime: bool = False,
        smtputf8: bool = True,
        dsn: bool = True,
        expn: bool = False,
        burl: bool = False,
    ) -> None:
        """``tls``: the connection is already TLS (port 465). ``tls_available``: a
        certificate is loaded, so STARTTLS is offered. ``auth_mechanisms``: subset
        of ("PLAIN", "LOGIN") to offer, () for none; ``auth_requires_tls`` hides AUTH
        and answers it with 538 until TLS is up. ``expn``: answer EXPN with 252
        instead of 502. ``burl``: accept BURL (RFC 4468; submission listeners only)."""
        if max_line_length < 512:  # RFC 5321 §4.5.3.1.4: at least 512 octets
            raise ValueError("max_line_length must be at least 512")
        if max_errors < 1 or max_recipients < 1 or max_message_size < 0:
            raise ValueError("max_errors and max_recipients must be positive")
        if bare_lf not in ("reject", "normalize"):
            raise ValueError('bare_lf must be "reject" or "normalize"')
        unknown = set(auth_mechanisms) - {"PLAIN", "LOGIN"}
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {sorted(unknown)}")
        self.hostname = hostname
        self.max_line_length = max_line_length
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.max_errors = max_errors
        self.max_auth_line_length = max(max_auth_line_length, max_line_length)
        self.bare_lf = bare_lf
        self.tls_available = tls_available
        self.auth_mechanisms = auth_mechanisms
        self.auth_requires_tls = auth_requires_tls
        self.pipelining = pipelining
        self.chunking = chunking
        self.binarymime = binarymime and chunking
        self.smtputf8 = smtputf8
        self.dsn = dsn
        self.expn = expn
        self.burl = burl

        self._state = State.GREETING
        self._tls = tls
        self._authenticated = False
        self._extended = False
        self._early_talker = False
        self._eof = False
        self._errors = 0
        self._buf = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._pending: Event | None = None
        self._discarding_line = False
        # transaction
        self._mail_params = _NO_MAIL_PARAMS
        self._rcpt_count = 0
        self._rcpt_attempted = False
        # message data (DATA and BDAT)
        self._data_started = False  # DataStart emitted in this transaction
        self._data_size = 0
        self._data_bol = True  # DATA: the next byte starts a line
        self._data_error: Reply | None = None
        self._bdat_remaining = 0
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_return = State.READY  # state after a refused chunk
        # SASL
        self._auth_mechanism = ""
        self._auth_username: str | None = None

    # --- public API -------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def has_tls(self) -> bool:
        return self._tls

    @property
    def is_authenticated(self) -> bool:
        return self._authenticated

    @property
    def is_closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def early_talker(self) -> bool:
        """The client sent bytes before the greeting (worth a log line)."""
        return self._early_talker

    @property
    def buffered(self) -> int:
        """Received bytes not yet consumed (bounded; see Rules)."""
        return len(self._buf)

    @property
    def mid_line(self) -> bool:
        """Part of a command line (or of an over-long line being skipped) has arrived
        and the rest has not: the adapter's per-command deadline is running."""
        if self._state in (State.DATA, State.BDAT):
            return False
        return bool(self._buf) or self._discarding_line

    def greet(self, reply: Reply) -> None:
        """Queue the greeting (220, or 554 "no service", or 421)."""
        if self._state is not State.GREETING:
            raise LocalProtocolError("greet() called twice")
        if self._early_talker:
            self._close(R554_EARLY_TALKER)
            return
        if reply.code == 220:
            self._state = State.HELLO
        elif reply.code == 554:
            self._state = State.NO_SERVICE
        elif reply.code != 421:
            raise LocalProtocolError(f"a greeting is 220, 421 or 554, not {reply.code}")
        self._send(reply)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if self._eof or self._state is State.CLOSED:
            return
        if not data:
            self._eof = True
            return
        if self._state is State.GREETING:
            self._early_talker = True  # dropped; greet() answers 554
            return
        if self._state is State.TLS:
            return  # RFC 3207 §4.2 / CVE-2011-0411: plaintext after STARTTLS is dropped
        if self._discarding_line and not self._buf:
            # Rest of an over-long line: drop it here so it is never buffered whole.
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1 :]
            self._discarding_line = False
        self._buf += data

    def next_event(self) -> Event | NeedData:
        """The next event, or NEED_DATA. Raises LocalProtocolError while a decision
        event is unanswered."""
        if self._pending is not None:
            raise LocalProtocolError(f"answer {type(self._pending).__name__} first")
        while True:
            if self._events:
                event = self._events.popleft()
                if isinstance(event, DECISIONS):
                    self._pending = event
                return event
            if self._state is State.CLOSED:
                return ConnectionClosed()
            if self._step():
                continue
            if self._eof:
                self._state = State.CLOSED
                self._events.append(ConnectionClosed())
                continue
            return NEED_DATA

    def accept(self, reply: Reply | None = None) -> None:
        """Grant the pending decision; ``reply`` overrides the default positive reply
        (for DataEnd pass ``R250_QUEUED(queue_id)``)."""
        if reply is not None and not reply.is_positive:
            raise LocalProtocolError(f"accept() with a negative reply {reply}")
        if isinstance(self._pending, Burl):
            raise LocalProtocolError("answer Burl with accept_burl(data)")
        event = self._take_pending()
        if isinstance(event, Hello):
            self._extended = event.extended
            self._state = State.READY
            self._send(reply or self._hello_reply(event.extended))
        elif isinstance(event, MailFrom):
            self._mail_params = event.params
            self._rcpt_count = 0
            self._rcpt_attempted = False
            self._state = State.MAIL
            self._send(reply or R250_SENDER_OK)
        elif isinstance(event, RcptTo):
            self._rcpt_count += 1
            self._state = State.RCPT
            self._send(reply or R250_RECIPIENT_OK)
        elif isinstance(event, DataEnd):
            self._end_transaction()
            self._errors = 0  # a delivered message resets the error count
            self._send(reply or R250_OK)
        elif isinstance(event, Authenticate):
            self._authenticated = True
            self._send(reply or R235_AUTH_OK)

    def reject(self, reply: Reply) -> None:
        """Refuse the pending decision with a 4xx/5xx reply (421 also closes)."""
        if reply.is_positive:
            raise LocalProtocolError(f"reject() with a positive reply {reply}")
        event = self._take_pending()
        if isinstance(event, DataEnd | Burl):
            self._end_transaction()  # RFC 4468 §3.2: a failed fetch fails the transaction
        self._send(reply)

    def accept_burl(self, data: bytes) -> None:
        """Grant the pending `Burl` with the bytes its URL resolved to: they join the
        message (DataChunk) unless they make it too big (554 5.3.4, RFC 4468 §6);
        after LAST the message ends (DataEnd), else 250 2.5.0."""
        event = self._pending
        if not isinstance(event, Burl):
            raise LocalProtocolError("no Burl is pending")
        self._pending = None
        if self._data_size + len(data) > self.max_message_size:
            self._end_transaction()
            self._events.append(DataRejected(R554_BURL_TOO_BIG))
            self._send(R554_BURL_TOO_BIG)
            return
        self._data_size += len(data)
        if data:
            self._events.append(DataChunk(data))
        if event.last and self._data_size == 0:  # nothing fetched, nothing chunked
            self._end_transaction()
            self._events.append(DataRejected(R554_EMPTY_MESSAGE))
            self._send(R554_EMPTY_MESSAGE)
        elif event.last:
            self._state = State.READY
            self._events.append(DataEnd(self._data_size))
        else:
            self._state = State.CHUNKING
            self._send(R250_BURL_OK)

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: the session restarts (RFC 3207
        §4.2: forget everything learnt from the client; it must EHLO again)."""
        if self._state is not State.TLS:
            raise LocalProtocolError("tls_started() without STARTTLS")
        self._tls = True
        self._authenticated = False
        self._extended = False
        self._buf.clear()
        self._discarding_line = False
        self._state = State.HELLO

    def abort(self, reply: Reply) -> None:
        """Close from our side (timeout, shutdown): queue ``reply`` (a 421) and end."""
        self._pending = None
        self._events.clear()
        self._out += reply.to_bytes()
        self._state = State.CLOSED

    def data_to_send(self) -> bytes:
        """Reply bytes queued so far, in order; empties the queue."""
        out = bytes(self._out)
        self._out.clear()
        return out

    # --- replies and errors --------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        self._out += reply.to_bytes()
        if reply.code < 400:
            return
        if reply.is_closing:
            self._state = State.CLOSED
            self._events.append(Disconnect(reply))
            return
        self._errors += 1
        if self._errors >= self.max_errors:
            self._close(R421_TOO_MANY_ERRORS)

    def _close(self, reply: Reply) -> None:
        self._out += reply.to_bytes()
        self._state = State.CLOSED
        self._events.append(Disconnect(reply))

    def _take_pending(self) -> Event:
        event = self._pending
        if event is None:
            raise LocalProtocolError("no decision is pending")
        self._pending = None
        return event

    def _hello_reply(self, extended: bool) -> Reply:
        if not extended:
            return Reply(250, None, self.hostname)  # RFC 2034 §3: no enhanced code
        lines = [self.hostname]
        if self.pipelining:
            lines.append("PIPELINING")  # RFC 2920
        lines.append(f"SIZE {self.max_message_size}")  # RFC 1870
        if self.tls_available and not self._tls:
            lines.append("STARTTLS")  # RFC 3207
        if self._auth_offered():
            lines.append("AUTH " + " ".join(self.auth_mechanisms))  # RFC 4954
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME"]  # RFC 2034, RFC 6152
        if self.dsn:
            lines.append("DSN")  # RFC 3461
        if self.smtputf8:
            lines.append("SMTPUTF8")  # RFC 6531
        if self.chunking:
            lines.append("CHUNKING")  # RFC 3030
        if self.binarymime:
            lines.append("BINARYMIME")  # RFC 3030
        if self.burl and (self._authenticated or self._auth_offered()):
            lines.append("BURL imap")  # RFC 4468 §3.1, §3.3
        return Reply(250, None, "\n".join(lines))

    def _auth_offered(self) -> bool:
        return bool(self.auth_mechanisms) and (self._tls or not self.auth_requires_tls)

    # --- transaction ---------------------------------------------------------------------

    def _end_transaction(self) -> None:
        self._mail_params = _NO_MAIL_PARAMS
        self._rcpt_count = 0
        self._rcpt_attempted = False
        self._data_started = False
        self._data_size = 0
        self._data_error = None
        self._state = State.READY

    # --- input framing -------------------------------------------------------------------

    def _step(self) -> bool:
        """Consume one unit of input; False when more bytes are needed."""
        state = self._state
        if state is State.DATA:
            return self._step_data()
        if state is State.BDAT:
            return self._step_bdat()
        if state in _SESSION or state in (State.AUTH, State.NO_SERVICE):
            line = self._take_line()
            if line is None:
                return False
            if line is not _Line.SKIPPED:
                if state is State.AUTH:
                    self._auth_line(line)
                else:
                    self._command(line)
            return True
        return False  # GREETING, TLS: nothing to parse

    def _take_line(self) -> bytes | _Line | None:
        buf = self._buf
        if not buf:
            return None
        if self._discarding_line:  # RFC 5321 §4.5.3.1.4: resync at the next line
            end = buf.find(b"\n")
            if end < 0:
                buf.clear()
                return None
            del buf[: end + 1]
            self._discarding_line = False
        limit = self.max_line_length
        end = buf.find(b"\n", 0, limit)
        # SASL lines may be longer (max_auth_line_length >= max_line_length): a
        # line that ends within max_line_length is within either limit
        if end < 0 and (self._state is State.AUTH or buf[:5].upper() == b"AUTH "):
            limit = self.max_auth_line_length
            end = buf.find(b"\n", 0, limit)
        if end < 0:
            if len(buf) < limit:
                return None
            nl = buf.find(b"\n", limit)
            if nl >= 0:  # the rest of the long line is here: drop just that line
                del buf[: nl + 1]
            else:
                buf.clear()
                self._discarding_line = True
            if self._state is State.AUTH:
                self._state = State.READY  # the SASL exchange is abandoned
            self._send(R500_LINE_TOO_LONG)
            return _Line.SKIPPED
        line = bytes(buf[: end - 1 if end and buf[end - 1] == 0x0D else end])  # CR LF or LF
        del buf[: end + 1]
        return line

    # --- commands ------------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        if b"\x00" in line or b"\r" in line:
            self._send(R500_BAD_CHARACTER)
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._send(R500_BAD_UTF8)
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        allowed = _ALLOWED.get(verb)
        if (
            allowed is None
            or (verb == "BDAT" and not self.chunking)
            or (verb == "BURL" and not self.burl)
        ):
            if verb in _NOT_IMPLEMENTED or verb == "BDAT":
                self._send(R502_NOT_IMPLEMENTED)
            else:
                self._send(R500_UNKNOWN_COMMAND)
            return
        if verb == "BDAT":  # its chunk is read whatever the state (RFC 3030 §2)
            self._bdat(arg)
            return
        if self._state not in allowed:
            self._send(_sequence_reply(verb, self._state, self._rcpt_attempted))
            return
        if verb in ("EHLO", "HELO"):
            self._hello(arg, extended=verb == "EHLO")
        elif verb == "MAIL":
            self._mail(arg)
        elif verb == "RCPT":
            self._rcpt(arg)
        elif verb == "DATA":
            self._data(arg)
        elif verb == "RSET":
            self._rset(arg)
        elif verb == "NOOP":
            self._send(R250_OK)  # RFC 5321 §4.1.1.9: any argument is ignored
        elif verb == "QUIT":
            self._send(R221_BYE)
            self._state = State.CLOSED
            self._events.append(Quit())
        elif verb == "VRFY":
            self._send(R252_CANNOT_VRFY if arg.strip() else R501_SYNTAX("VRFY address"))
        elif verb == "EXPN":
            if not self.expn:
                self._send(R502_NOT_IMPLEMENTED)
            else:
                self._send(R252_CANNOT_VRFY if arg.strip() else R501_SYNTAX("EXPN list"))
        elif verb == "HELP":
            self._send(R214_HELP)
        elif verb == "STARTTLS":
            self._starttls(arg)
        elif verb == "BURL":
            self._burl(arg)
        else:
            self._auth(arg)

    def _hello(self, arg: str, *, extended: bool) -> None:
        # RFC 5321 §4.1.1.1: ehlo = "EHLO" SP ( Domain / address-literal ); the name's
        # validity is policy (the session may check it), only its presence is syntax.
        name = arg.strip(" ")
        if not name:
            self._send(R501_SYNTAX("EHLO hostname" if extended else "HELO hostname"))
            return
        if self._state in _TRANSACTION:  # RFC 5321 §4.1.4: EHLO implies RSET
            self._end_transaction()
            self._events.append(Reset())
        self._events.append(Hello(name, extended))

    def _parse_path_arg(self, arg: str, prefix: str) -> tuple[str, list[str]] | None:
        """``FROM:<path> params`` → (path inside the brackets, params); None on bad
        syntax. A space after the colon is allowed (Postfix's leniency)."""
        if arg[: len(prefix)].upper() != prefix:
            return None
        split = _split_path(arg[len(prefix) :].lstrip(" "))
        if split is None:
            return None
        path, rest = split
        if rest and not rest.startswith(" "):
            return None
        return path, rest.split()

    def _mail(self, arg: str) -> None:
        parsed = self._parse_path_arg(arg, "FROM:")
        if parsed is None:
            self._send(R501_SYNTAX("MAIL FROM:<address>"))
            return
        path, words = parsed
        try:
            params = self._mail_params_parse(words)
        except _ParamError as e:
            self._send(e.reply)
            return
        if params.size is not None and params.size > self.max_message_size:
            self._send(R552_MESSAGE_TOO_BIG)  # RFC 1870 §6.1
            return
        if not path.isascii() and not params.smtputf8:
            self._send(R553_NON_ASCII_ADDRESS)  # RFC 6531 §3.5
            return
        address: Address | None = None
        if path:  # "<>" is the null reverse-path (RFC 5321 §4.5.5)
            try:
                address = Address.parse(_strip_source_route(path), smtputf8=params.smtputf8)
            except AddressError:
                self._send(R501_BAD_SENDER)
                return
        self._events.append(MailFrom(address, params))

    def _rcpt(self, arg: str) -> None:
        parsed = self._parse_path_arg(arg, "TO:")
        if parsed is None:
            self._send(R501_SYNTAX("RCPT TO:<address>"))
            return
        path, words = parsed
        try:
            params = self._rcpt_params_parse(words)
        except _ParamError as e:
            self._send(e.reply)
            return
        self._rcpt_attempted = True
        smtputf8 = self._mail_params.smtputf8
        if not path.isascii() and not smtputf8:
            self._send(R553_NON_ASCII_ADDRESS)
            return
        try:
            if path.lower() == "postmaster":  # RFC 5321 §4.5.1: <Postmaster> without domain
                address = Address(path, Domain.parse(self.hostname))
            else:
                address = Address.parse(_strip_source_route(path), smtputf8=smtputf8)
        except AddressError:
            self._send(R501_BAD_RECIPIENT)
            return
        if self._rcpt_count >= self.max_recipients:
            self._send(R452_TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10
            return
        self._events.append(RcptTo(address, params))

    def _mail_params_parse(self, words: list[str]) -> MailParams:
        if not words:
            return _NO_MAIL_PARAMS
        seen: dict[str, str | None] = {}
        for word in words:
            key, eq, raw = word.partition("=")
            if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(raw)):
                raise _ParamError(R501_SYNTAX("MAIL FROM:<address> [parameters]"))
            key = key.upper()
            if key in seen:
                raise _ParamError(R501_BAD_PARAMETER(key))
            seen[key] = raw if eq else None
        size: int | None = None
        body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None = None
        ret: Literal["FULL", "HDRS"] | None = None
        envid: str | None = None
        auth: str | None = None
        smtputf8 = False
        for key, value in seen.items():
            if key == "SIZE":  # RFC 1870 §3
                if value is None or not _SIZE.fullmatch(value):
                    raise _ParamError(R501_BAD_PARAMETER(key))
                size = int(value)
            elif key == "BODY":  # RFC 6152 §2, RFC 3030 §3
                v = (value or "").upper()
                if v == "7BIT":
                    body = "7BIT"
                elif v == "8BITMIME":
                    body = "8BITMIME"
                elif v == "BINARYMIME" and self.binarymime:
                    body = "BINARYMIME"
                else:
                    raise _ParamError(R501_BAD_PARAMETER(key))
            elif key == "SMTPUTF8" and self.smtputf8:  # RFC 6531 §3.4: no value
                if value is not None:
                    raise _ParamError(R501_BAD_PARAMETER(key))
                smtputf8 = True
            elif key == "RET" and self.dsn:  # RFC 3461 §4.3
                v = (value or "").upper()
                if v == "FULL":
                    ret = "FULL"
                elif v == "HDRS":
                    ret = "HDRS"
                else:
                    raise _ParamError(R501_BAD_PARAMETER(key))
            elif key == "ENVID" and self.dsn:  # RFC 3461 §4.4: xtext, 100 chars at most
                if value is None or len(value) > 100:
                    raise _ParamError(R501_BAD_PARAMETER(key))
                envid = _xtext_decode(value, key)
            elif key == "AUTH" and self.auth_mechanisms:  # RFC 4954 §5
                if value is None:
                    raise _ParamError(R501_BAD_PARAMETER(key))
                auth = value if value == "<>" else _xtext_decode(value, key)
            else:
                raise _ParamError(R555_UNSUPPORTED_PARAMETER(key))
        return MailParams(size, body, smtputf8, ret, envid, auth)

    def _rcpt_params_parse(self, words: list[str]) -> RcptParams:
        if not words:
            return _NO_RCPT_PARAMS
        notify: tuple[Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"], ...] | None = None
        orcpt: tuple[str, str] | None = None
        seen: set[str] = set()
        for word in words:
            key, eq, value = word.partition("=")
            if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
                raise _ParamError(R501_SYNTAX("RCPT TO:<address> [parameters]"))
            key = key.upper()
            if key in seen:
                raise _ParamError(R501_BAD_PARAMETER(key))
            seen.add(key)
            if key == "NOTIFY" and self.dsn:  # RFC 3461 §4.1
                items = value.upper().split(",") if eq else []
                found: list[Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"]] = []
                for item in items:
                    if item == "NEVER":
                        found.append("NEVER")
                    elif item == "SUCCESS":
                        found.append("SUCCESS")
                    elif item == "FAILURE":
                        found.append("FAILURE")
                    elif item == "DELAY":
                        found.append("DELAY")
                    else:
                        raise _ParamError(R501_BAD_PARAMETER(key))
                if not found or len(set(found)) != len(found):
                    raise _ParamError(R501_BAD_PARAMETER(key))
                if "NEVER" in found and len(found) > 1:  # NEVER stands alone
                    raise _ParamError(R501_BAD_PARAMETER(key))
                notify = tuple(found)
            elif key == "ORCPT" and self.dsn:  # RFC 3461 §4.2: addr-type ";" xtext
                addr_type, semi, original = value.partition(";")
                if not semi or not _ATOM.fullmatch(addr_type) or len(value) > 500:
                    raise _ParamError(R501_BAD_PARAMETER(key))
                orcpt = (addr_type, _xtext_decode(original, key))
            else:
                raise _ParamError(R555_UNSUPPORTED_PARAMETER(key))
        return RcptParams(notify, orcpt)

    def _rset(self, arg: str) -> None:
        if arg.strip(" "):
            self._send(R501_SYNTAX("RSET"))  # RFC 5321 §4.1.1.5: no parameters
            return
        if self._state in _TRANSACTION:
            self._end_transaction()
        self._send(R250_OK)
        self._events.append(Reset())

    def _starttls(self, arg: str) -> None:
        if arg.strip(" "):
            self._send(R501_SYNTAX("STARTTLS"))  # RFC 3207 §4: no parameters
        elif self._tls:
            self._send(R503_TLS_ACTIVE)
        elif not self.tls_available:
            self._send(R502_NOT_IMPLEMENTED)
        else:
            self._send(R220_TLS_READY)
            self._state = State.TLS
            self._buf.clear()  # RFC 3207 §4.2: pipelined plaintext is dropped
            self._events.append(StartTls())

    # --- DATA ----------------------------------------------------------------------------

    def _data(self, arg: str) -> None:
        if arg.strip(" "):
            self._send(R501_SYNTAX("DATA"))  # RFC 5321 §4.1.1.4: no parameters
            return
        if self._mail_params.body == "BINARYMIME":
            self._send(R503_BINARYMIME_NEEDS_BDAT)  # RFC 3030 §3
            return
        self._send(R354_START_DATA)
        self._state = State.DATA
        self._data_bol = True
        self._data_size = 0
        self._data_error = None
        self._data_started = True
        self._events.append(DataStart(chunking=False))

    def _step_data(self) -> bool:
        """Scan the buffer for dot-lines with bytes.find; whole runs of ordinary lines
        are passed on as one slice (no per-line Python work)."""
        buf = self._buf
        n = len(buf)
        pos = 0
        pieces: list[bytes] = []
        ended = False
        while True:
            if self._data_bol:
                rest = n - pos
                if rest == 0:
                    break
                if buf[pos] == 0x2E:  # "."
                    head = bytes(buf[pos : pos + 3])
                    if head == b".\r\n":  # RFC 5321 §4.1.1.4: end of mail data
                        pos += 3
                        ended = True
                        break
                    if rest < 3 and b".\r\n".startswith(head):
                        break  # maybe the end: wait for more bytes
                    pos += 1  # RFC 5321 §4.5.2: drop the leading dot of a stuffed line
                self._data_bol = False
            found = buf.find(b"\r\n.", pos)
            if found >= 0:
                pieces.append(bytes(buf[pos : found + 2]))
                pos = found + 2
                self._data_bol = True
                continue
            if pos >= n:
                break
            end = n - 1 if buf[n - 1] == 0x0D else n  # keep a CR that may start CRLF
            if end > pos:
                pieces.append(bytes(buf[pos:end]))
                self._data_bol = buf[end - 2 : end] == b"\r\n" and end - pos >= 2
                pos = end
            break
        del buf[:pos]
        if pieces:
            self._data_pieces(pieces)
        if ended:
            self._finish_message()
        return bool(pieces) or ended or pos > 0

    def _data_pieces(self, pieces: list[bytes]) -> None:
        """Check, normalise, count and pass on unstuffed pieces (never splitting a CRLF).
        The end reply does not depend on packet boundaries: 552 when the message
        outgrew max_message_size, else 554 when it held a bare LF/CR."""
        out: list[bytes] = []
        for piece in pieces:
            if self._data_error is R552_MESSAGE_TOO_BIG:
                break
            if self._data_error is None:
                crlf = piece.count(b"\r\n")
                if piece.count(b"\n") != crlf or piece.count(b"\r") != crlf:  # RFC 5321 §2.3.8
                    if self.bare_lf == "reject":
                        self._data_error = R554_BARE_LF  # read on to the end, then reply
                    else:
                        piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                        piece = piece.replace(b"\n", b"\r\n")
            self._data_size += len(piece)
            if self._data_size > self.max_message_size:  # RFC 1870 §6.1: discard the rest
                self._data_error = R552_MESSAGE_TOO_BIG
            elif self._data_error is None:
                out.append(piece)
        if out:
            self._events.append(DataChunk(b"".join(out)))

    def _finish_message(self) -> None:
        error = self._data_error
        if error is None and self._data_size == 0:
            error = R554_EMPTY_MESSAGE  # a bare "." is no message (RFC 5322 §3.6: From:, Date:)
        if error is not None:
            self._end_transaction()
            self._events.append(DataRejected(error))
            self._send(error)
        else:
            self._events.append(DataEnd(self._data_size))

    # --- BDAT (RFC 3030) -------------------------------------------------------------------

    def _bdat(self, arg: str) -> None:
        m = _BDAT.fullmatch(arg)
        if m is None:
            # The chunk size is unknown, so the chunk cannot be skipped: its bytes will
            # be read as commands, and max_errors ends such a session.
            self._send(R501_SYNTAX("BDAT size [LAST]"))
            return
        size = int(m.group(1))
        self._bdat_remaining = size
        self._bdat_size = size
        self._bdat_last = m.group(2) is not None
        error: Reply | None = None
        state = self._state
        if state not in _ALLOWED["BDAT"]:
            error = _sequence_reply("BDAT", state, self._rcpt_attempted)
        else:
            if not self._data_started:
                self._data_started = True
                self._data_size = 0
                self._events.append(DataStart(chunking=True))
            if self._data_size + size > self.max_message_size:
                error = R552_MESSAGE_TOO_BIG  # RFC 1870 §6.1: refuse, still read the chunk
        self._data_error = error
        self._bdat_return = state
        self._state = State.BDAT

    def _step_bdat(self) -> bool:
        take = min(self._bdat_remaining, len(self._buf))
        if take:
            if self._data_error is None:
                self._data_size += take
                self._events.append(DataChunk(bytes(self._buf[:take])))
            del self._buf[:take]
            self._bdat_remaining -= take
        if self._bdat_remaining:
            return take > 0
        error = self._data_error
        if error is not None:
            self._data_error = None
            if self._bdat_return in _ALLOWED["BDAT"]:  # the transaction fails (RFC 3030 §2)
                self._end_transaction()
                self._events.append(DataRejected(error))
                self._send(error)
            else:  # out of sequence: nothing changes
                self._state = self._bdat_return
                self._send(error)
        elif self._bdat_last and self._data_size == 0:  # "BDAT 0 LAST" alone: no message
            self._end_transaction()
            self._events.append(DataRejected(R554_EMPTY_MESSAGE))
            self._send(R554_EMPTY_MESSAGE)
        elif self._bdat_last:
            self._state = State.READY
            self._events.append(DataEnd(self._data_size))
        else:
            self._state = State.CHUNKING
            self._send(R250_CHUNK_OK(self._bdat_size))
        return True

    # --- BURL (RFC 4468) -------------------------------------------------------------------

    def _burl(self, arg: str) -> None:
        # burl-cmd = "BURL" SP absolute-URI [SP end-marker] ; end-marker = "LAST"
        parts = arg.split(" ")
        if not parts[0] or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() != "LAST"):
            self._send(R501_SYNTAX("BURL imap-url [LAST]"))
            return
        if not self._data_started:
            self._data_started = True
            self._data_size = 0
            self._events.append(DataStart(chunking=True))
        self._events.append(Burl(parts[0], last=len(parts) == 2))

    # --- AUTH (RFC 4954) -------------------------------------------------------------------

    def _auth(self, arg: str) -> None:
        if not self.auth_mechanisms:
            self._send(R503_AUTH_NOT_ENABLED)
            return
        if self._authenticated:
            self._send(R503_ALREADY_AUTHENTICATED)  # RFC 4954 §4
            return
        parts = arg.split(" ")
        if not parts[0] or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
            self._send(R501_SYNTAX("AUTH mechanism [initial-response]"))
            return
        mechanism = parts[0].upper()
        if mechanism not in self.auth_mechanisms:
            self._send(R504_AUTH_MECHANISM)
            return
        if self.auth_requires_tls and not self._tls:
            self._send(R538_ENCRYPTION_REQUIRED)
            return
        self._auth_mechanism = mechanism
        self._auth_username = None
        if len(parts) == 1:  # no initial response: ask for it
            self._state = State.AUTH
            prompt = "" if mechanism == "PLAIN" else sasl.LOGIN_USERNAME_PROMPT
            self._send(R334_CHALLENGE(prompt))
            return
        self._auth_response(parts[1].encode("ascii", "replace"), initial=True)

    def _auth_line(self, line: bytes) -> None:
        self._auth_response(line, initial=False)

    def _auth_response(self, line: bytes, *, initial: bool) -> None:
        self._state = State.READY  # unless a further step is needed (below)
        login_username = self._auth_username
        try:
            data = sasl.decode_response(line, initial=initial)
            if self._auth_mechanism == "PLAIN":
                authzid, username, password = sasl.parse_plain(data)
            elif login_username is None:  # LOGIN step 1: the user name
                self._auth_username = sasl.decode_text(data)
                self._state = State.AUTH
                self._send(R334_CHALLENGE(sasl.LOGIN_PASSWORD_PROMPT))
                return
            else:  # LOGIN step 2: the password
                authzid, username = "", login_username
                password = sasl.decode_text(data)
        except sasl.SaslCancelled:
            self._send(R501_AUTH_CANCELLED)
            return
        except sasl.SaslError:
            self._send(R501_AUTH_BAD_ENCODING)
            return
        self._auth_username = None
        self._events.append(Authenticate(self._auth_mechanism, authzid, username, password))
