"""The sans-IO SMTP client core: replies in, events out; calls in, command bytes out.

`ClientConnection` owns the client side of one SMTP session (RFC 5321 and the
extensions the queue needs): the greeting, EHLO with the HELO fallback, the STARTTLS
step (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954), mail transactions with PIPELINING
(RFC 2920) and CHUNKING (RFC 3030), RSET and QUIT. It never touches sockets, clocks
or TLS; `postier.smtp.client` is the asyncio adapter around it.

How an adapter drives it (h11 style)::

    conn = ClientConnection()
    write(conn.transaction(sender, recipients, message))   # or ehlo(), auth(), ...
    while True:
        event = conn.next_event()
        write(conn.data_to_send())          # replies may make more bytes due
        if event is NEED_DATA:
            conn.receive_data(await read())  # b"" on EOF
        elif isinstance(event, TlsReady):
            await handshake(); conn.tls_started()
        elif isinstance(event, ConnectionClosed):
            close(); break
        elif isinstance(event, TransactionDone):
            ...                              # event.result: every reply, per recipient

Rules:
- One operation at a time. A method may be called only in the states `_ALLOWED`
  lists (else `LocalProtocolError`); it returns the bytes to write now. Replies may
  make more bytes due (the message after 354, the clean-up RSET): the adapter writes
  `data_to_send()` after every `next_event()`.
- Replies are parsed by `ReplyParser`: a line longer than ``max_line_length`` or a
  reply of more than ``max_lines`` lines is a `ProtocolViolation` (raised by
  `next_event`; the connection is then closed), never unbounded buffering. So is a
  reply nothing was asked for (other than 421), and any byte after the 220 to
  STARTTLS (RFC 3207 §5, the CVE-2011-0411 injection class).
- After a 421 the connection is unusable (RFC 5321 §3.8): the 421 answers the
  operation in progress — and every reply still due in its pipeline — then the
  state is CLOSED. EOF during an operation is `ConnectionClosed` instead of the
  operation's event: whatever was in progress failed temporarily (RFC 5321 §4.5.3.2).
- A command line never contains CR or LF (`ValueError`): no command injection
  through an address or a parameter.
- Transactions (RFC 5321 §3.3): with PIPELINING, MAIL, every RCPT and (DATA mode)
  DATA go out in one write and the replies are matched in order (RFC 2920 §3.1);
  without it, one command at a time, stopping at a refused MAIL or a 421. If every
  RCPT was refused but DATA got 354 an empty message (``.``) is sent and its reply
  ignored (RFC 2920 §3.1). A transaction that MAIL opened but that did not end with
  a final reply is closed with RSET (RFC 5321 §4.1.1.5); a refused RSET closes.
- Message data: with CHUNKING offered the message goes as one ``BDAT <n> LAST``
  (RFC 3030 §2) after the envelope replies — the bytes travel unchanged and are sent
  only once a recipient was accepted (same round trips as pipelined DATA, no
  stuffing pass, no empty-message dance). Otherwise DATA with dot-stuffing
  (RFC 5321 §4.5.2). Either way the message ends in CRLF.
- Parameters are the caller's (SIZE, BODY=8BITMIME, SMTPUTF8, RET, ENVID, NOTIFY,
  ORCPT: `queue/transport.py` decides them from the EHLO keywords); the core adds none.

Hand-written: smtplib and aiosmtplib do their own IO and do not pipeline.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto
from types import MappingProxyType
from typing import NoReturn

__all__ = [
    "NEED_DATA",
    "AuthDone",
    "ClientConnection",
    "ConnectionClosed",
    "EhloDone",
    "Event",
    "Greeting",
    "LocalProtocolError",
    "NeedData",
    "ProtocolViolation",
    "Recipient",
    "RecipientResult",
    "Replied",
    "ReplyParser",
    "ServerReply",
    "SmtpClientError",
    "State",
    "TlsReady",
    "TlsRefused",
    "Transaction",
    "TransactionDone",
    "dot_stuff",
    "xtext",
]


class State(Enum):
    GREETING = auto()  # connected, the server's greeting not read yet
    HELLO = auto()  # greeted (or TLS just started): EHLO/HELO comes next
    READY = auto()  # EHLO done, nothing outstanding
    EHLO = auto()  # EHLO (or the HELO fallback) outstanding
    STARTTLS = auto()  # STARTTLS outstanding
    TLS = auto()  # 220 to STARTTLS: the adapter runs the handshake, then tls_started()
    AUTH = auto()  # an AUTH exchange outstanding
    TRANSACTION = auto()  # MAIL .. final reply (and a clean-up RSET) outstanding
    COMMAND = auto()  # RSET or a single raw command outstanding
    QUIT = auto()  # QUIT sent
    CLOSED = auto()  # 421, QUIT answered, EOF or a protocol violation


# Call → states in which it may be made. RFC 5321 §4.1.4: EHLO may come again at any
# time outside a transaction; STARTTLS and AUTH need EHLO (RFC 3207 §4, RFC 4954 §4);
# a transaction needs EHLO/HELO (RFC 5321 §3.3). RSET, QUIT and single commands
# (ops/verify's probe) need only the greeting.
_ALLOWED: dict[str, frozenset[State]] = {
    "ehlo": frozenset({State.HELLO, State.READY}),
    "starttls": frozenset({State.READY}),
    "auth": frozenset({State.READY}),
    "transaction": frozenset({State.READY}),
    "rset": frozenset({State.HELLO, State.READY}),
    "command": frozenset({State.HELLO, State.READY}),
    "quit": frozenset({State.HELLO, State.READY}),
}
# Transitions (the only assignments to _state are in the methods named here):
#   GREETING --greeting--> HELLO;  --421--> CLOSED
#   HELLO|READY --ehlo()--> EHLO --2xx (EHLO or HELO)--> READY; --other--> HELLO
#   READY --starttls()--> STARTTLS --220--> TLS --tls_started()--> HELLO; --other--> READY
#   READY --auth()--> AUTH --final reply--> READY
#   READY --transaction()--> TRANSACTION --TransactionDone--> READY (CLOSED if RSET failed)
#   HELLO|READY --rset()/command()--> COMMAND --reply--> the state it came from
#   HELLO|READY --quit()--> QUIT --reply--> CLOSED
#   any --421 / EOF / ProtocolViolation--> CLOSED

# Verbs `command()` refuses: they change framing or session state the core tracks.
_OWN_VERBS = frozenset({"EHLO", "HELO", "STARTTLS", "AUTH", "DATA", "BDAT", "QUIT"})
# RFC 5321 §3.2: a server that does not know EHLO answers 500/502 (504, 550 seen too)
_EHLO_FALLBACK = frozenset({500, 502, 504, 550})

# RFC 3463 §2: status-code = class "." subject "." detail
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class SmtpClientError(Exception):
    """Base of the client's failures; the message is fit for a log, DSN or trace."""


class ProtocolViolation(SmtpClientError):
    """The peer sent something that is not an SMTP reply, or one nothing asked for."""


class LocalProtocolError(Exception):
    """The caller used the core wrongly (a bug on our side, never the peer's)."""


@dataclass(frozen=True)
class ServerReply:
    """One complete reply from the peer. `lines` are without code and separator."""

    code: int
    lines: tuple[str, ...]

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 status code of the first line, when its class matches `code`."""
        m = _ENHANCED.match(self.lines[0] if self.lines else "")
        if m and m.group(1) == str(self.code)[0]:
            return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        return None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def status(self, default: str) -> str:
        """The enhanced status, else `default` with the reply's class put in front
        (RFC 3463 §2: "4.x.x" for a 4yz reply)."""
        if self.enhanced:
            return self.enhanced
        klass = str(self.code)[0] if self.code >= 200 else "4"
        return f"{klass}{default[1:]}"

    def __str__(self) -> str:
        """The reply as one line: "550 5.1.1 <x@y>: unknown; second line"."""
        text = "; ".join(line for line in self.lines if line)
        return f"{self.code} {text}" if text else str(self.code)


class ReplyParser:
    """Sans-IO: `feed(bytes)` returns the replies completed by those bytes;
    `receive(bytes)` + `next_reply()` hand them out one at a time.

    RFC 5321 §4.2: ``Reply-line = *( Reply-code "-" [ textstring ] CRLF )
    Reply-code [ SP textstring ] CRLF``. A bare LF ends a line too (robustness);
    every line of a multi-line reply must carry the same code. Linear in the input:
    consumed lines are cut from the front of a bytearray (O(1) in CPython).
    """

    def __init__(self, *, max_line_length: int = 4096, max_lines: int = 200) -> None:
        self.max_line_length = max_line_length
        self.max_lines = max_lines
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a returned reply."""
        return len(self._buf) + sum(len(line) for line in self._lines)

    def feed(self, data: bytes) -> list[ServerReply]:
        self.receive(data)
        out: list[ServerReply] = []
        while (reply := self.next_reply()) is not None:
            out.append(reply)
        return out

    def receive(self, data: bytes) -> None:
        self._buf += data

    def next_reply(self) -> ServerReply | None:
        """The next complete reply, or None when more bytes are needed."""
        while True:
            nl = self._buf.find(b"\n", 0, self.max_line_length + 1)
            if nl < 0:
                if len(self._buf) > self.max_line_length:
                    raise ProtocolViolation(f"reply line longer than {self.max_line_length} octets")
                return None
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
                raise ProtocolViolation(f"not an SMTP reply line: {line[:80]!r}")
            code = int(line[:3])
            if not 200 <= code < 600:  # RFC 5321 §4.2.1: 2yz..5yz
                raise ProtocolViolation(f"reply code out of range: {line[:80]!r}")
            if self._code is not None and code != self._code:
                raise ProtocolViolation(
                    f"reply code changed inside a multi-line reply: {self._code} then {code}"
                )
            self._code = code
            self._lines.append(line[4:])
            if len(self._lines) > self.max_lines:
                raise ProtocolViolation(f"reply longer than {self.max_lines} lines")
            if len(line) == 3 or line[3] == " ":
                reply = ServerReply(code, tuple(self._lines))
                self._lines = []
                self._code = None
                return reply


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." gets another; the data ends in
    CRLF and is followed by the terminating ".CRLF"."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def xtext(value: str) -> str:
    """RFC 3461 §4: xtext encoding of ENVID and ORCPT values ("+" and "=" and
    anything outside "!".."~" become "+XX")."""
    out = []
    for b in value.encode("utf-8"):
        if 33 <= b <= 126 and b not in (ord("+"), ord("=")):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


@dataclass(frozen=True)
class Recipient:
    address: str
    params: str = ""  # already formatted: "NOTIFY=FAILURE ORCPT=rfc822;x@y"


@dataclass(frozen=True)
class Transaction:
    """The replies of one mail transaction. `rcpts` has one entry per recipient
    (None when never sent because MAIL was refused without PIPELINING); after a 421
    every reply still due is that 421. `data` is the final reply to the message
    (after the dot, or to BDAT LAST); None when no message was sent.
    `data_command` is the reply to DATA itself (354 or not), or the 421 that ended
    the session before the message could go; otherwise None with BDAT."""

    mail: ServerReply
    rcpts: tuple[ServerReply | None, ...]
    data: ServerReply | None = None
    data_command: ServerReply | None = None


# --- events ------------------------------------------------------------------------


class NeedData(Enum):
    """Every complete reply was consumed; call `receive_data`."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True)
class Greeting:
    """The server's opening reply (RFC 5321 §3.1); not 220 = no service (554) or
    closing (421). The caller judges."""

    reply: ServerReply


@dataclass(frozen=True)
class EhloDone:
    """The final reply to EHLO, or to HELO when EHLO was refused as unknown
    (``extended`` False). ``extensions``: keyword (upper case) → parameters; empty
    unless EHLO succeeded."""

    reply: ServerReply
    extensions: Mapping[str, str]
    extended: bool


@dataclass(frozen=True)
class TlsReady:
    """220 to STARTTLS: run the TLS handshake now, then call `tls_started()`."""

    reply: ServerReply


@dataclass(frozen=True)
class TlsRefused:
    """STARTTLS was refused; the session goes on in clear."""

    reply: ServerReply


@dataclass(frozen=True)
class AuthDone:
    """The final reply of an AUTH exchange (235 = logged in)."""

    reply: ServerReply


@dataclass(frozen=True)
class RecipientResult:
    """A notice during a transaction: recipient ``index`` got ``reply``."""

    index: int
    address: str
    reply: ServerReply


@dataclass(frozen=True)
class TransactionDone:
    """The transaction is over (and reset when it had to be); every reply in
    ``result``."""

    result: Transaction


@dataclass(frozen=True)
class Replied:
    """The reply to RSET, QUIT or a single command given to `command()`."""

    command: str
    reply: ServerReply


@dataclass(frozen=True)
class ConnectionClosed:
    """The session is over: the peer closed (EOF) or the state is CLOSED."""

    reason: str


Event = (
    Greeting
    | EhloDone
    | TlsReady
    | TlsRefused
    | AuthDone
    | RecipientResult
    | TransactionDone
    | Replied
    | ConnectionClosed
)


# --- the core ----------------------------------------------------------------------


class _Step(Enum):
    """What an outstanding reply answers."""

    GREETING = auto()
    EHLO = auto()
    HELO = auto()
    STARTTLS = auto()
    AUTH = auto()  # AUTH PLAIN's reply, or the last LOGIN step
    AUTH_USER = auto()  # AUTH LOGIN: 334 asks for the user name
    AUTH_PASSWORD = auto()  # AUTH LOGIN: 334 asks for the password
    AUTH_CANCEL = auto()  # the "*" sent to an unexpected challenge
    MAIL = auto()
    RCPT = auto()
    DATA = auto()
    MESSAGE = auto()  # the final reply after the dot, or to BDAT LAST
    EMPTY = auto()  # the reply to the empty message (RFC 2920 §3.1): ignored
    RESET = auto()  # the clean-up RSET of a failed transaction
    COMMAND = auto()  # rset(), command(), quit()


@dataclass
class _Tx:
    """One transaction in flight."""

    mail_line: str
    rcpt_lines: list[str]
    addresses: list[str]
    message: bytes
    chunking: bool
    pipelined: bool
    mail: ServerReply | None = None
    rcpts: list[ServerReply | None] = field(default_factory=list)
    data_command: ServerReply | None = None
    data: ServerReply | None = None

    @property
    def accepted(self) -> bool:
        """MAIL and at least one RCPT accepted: the message may go."""
        return (
            self.mail is not None
            and self.mail.is_success
            and any(r is not None and r.is_success for r in self.rcpts)
        )


class ClientConnection:
    """The client side of one SMTP session; see the module docstring for the contract.

    ``tls``: the connection is already TLS (implicit TLS, port 465).
    """

    def __init__(
        self, *, tls: bool = False, max_line_length: int = 4096, max_lines: int = 200
    ) -> None:
        self._parser = ReplyParser(max_line_length=max_line_length, max_lines=max_lines)
        self._state = State.GREETING
        self._return = State.READY  # where COMMAND goes back to
        self._tls = tls
        self._eof = False
        self._out: list[bytes] = []  # joined once by data_to_send (a message is large)
        self._events: deque[Event] = deque()
        self._due: deque[tuple[_Step, int]] = deque([(_Step.GREETING, 0)])
        self._closed_reason = ""
        self._ehlo_name = ""
        self._login: tuple[str, str] = ("", "")
        self._command = ""
        self._tx: _Tx | None = None
        self.greeting: ServerReply | None = None
        self.extensions: Mapping[str, str] = MappingProxyType({})
        self.transactions = 0  # transactions that sent their message (reuse accounting)

    # --- public API -------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def can_quit(self) -> bool:
        """QUIT may be sent now (greeted, nothing outstanding, not closed)."""
        return self._state in _ALLOWED["quit"]

    def has(self, extension: str) -> bool:
        return extension.upper() in self.extensions

    @property
    def max_size(self) -> int:
        """RFC 1870: the SIZE the peer announced (0 = no limit or not announced)."""
        value = self.extensions.get("SIZE", "")
        return int(value) if value.isdigit() else 0

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        return frozenset(self.extensions.get("AUTH", "").upper().split())

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if self._eof or self._state is State.CLOSED:
            return
        if not data:
            self._eof = True
            return
        if self._state is State.TLS:
            raise LocalProtocolError("run the TLS handshake and tls_started() first")
        self._parser.receive(data)

    def next_event(self) -> Event | NeedData:
        """The next event, or NEED_DATA. Raises `ProtocolViolation` (the state is then
        CLOSED) when the peer broke the protocol."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._state is State.CLOSED:
                return ConnectionClosed(self._closed_reason)
            if self._state is State.TLS:
                raise LocalProtocolError("run the TLS handshake and tls_started() first")
            try:
                reply = self._parser.next_reply()
            except ProtocolViolation as e:
                self._violation(str(e))
            if reply is not None:
                self._on_reply(reply)
                continue
            if self._eof:
                self._close("connection closed by the peer")
                continue
            return NEED_DATA

    def data_to_send(self) -> bytes:
        """Command bytes queued so far, in order; empties the queue."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def ehlo(self, name: str) -> bytes:
        """EHLO (RFC 5321 §4.1.1.1); HELO follows by itself when EHLO is refused as
        unknown (RFC 5321 §3.2). Ends with `EhloDone`."""
        _check_line(name)
        self._begin("ehlo", State.EHLO)
        self._ehlo_name = name
        self.extensions = MappingProxyType({})
        self._send(f"EHLO {name}", _Step.EHLO)
        return self.data_to_send()

    def starttls(self) -> bytes:
        """STARTTLS (RFC 3207 §4). Ends with `TlsReady` or `TlsRefused`."""
        if self._tls:
            raise LocalProtocolError("STARTTLS on a TLS connection")
        self._begin("starttls", State.STARTTLS)
        self._send("STARTTLS", _Step.STARTTLS)
        return self.data_to_send()

    def tls_started(self) -> None:
        """The handshake after `TlsReady` succeeded: the session starts over (RFC 3207
        §4.2: the client discards what it knew and must EHLO again)."""
        if self._state is not State.TLS:
            raise LocalProtocolError("tls_started() without TlsReady")
        self._tls = True
        self.extensions = MappingProxyType({})
        self._state = State.HELLO

    def auth(self, username: str, password: str, mechanism: str | None = None) -> bytes:
        """AUTH (RFC 4954): PLAIN (RFC 4616, as initial response) when offered or
        nothing is known, else LOGIN. Ends with `AuthDone`."""
        mechs = self.auth_mechanisms
        mech = (mechanism or ("PLAIN" if "PLAIN" in mechs or not mechs else "LOGIN")).upper()
        if mech not in ("PLAIN", "LOGIN"):
            raise LocalProtocolError(f"unsupported SASL mechanism {mech}")
        self._begin("auth", State.AUTH)
        if mech == "PLAIN":
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            self._send(f"AUTH PLAIN {token}", _Step.AUTH)  # RFC 4954 §4 initial response
        else:
            self._login = (username, password)
            self._send("AUTH LOGIN", _Step.AUTH_USER)
        return self.data_to_send()

    def transaction(
        self,
        sender: str,
        recipients: Sequence[Recipient],
        message: bytes,
        *,
        mail_params: str = "",
    ) -> bytes:
        """One mail transaction (RFC 5321 §3.3); ``message`` is the exact message, not
        dot-stuffed. Ends with `TransactionDone` (`RecipientResult` notices before)."""
        if not recipients:
            raise LocalProtocolError("a transaction needs at least one recipient")
        mail_line = f"MAIL FROM:<{sender}>" + (f" {mail_params}" if mail_params else "")
        rcpt_lines = [
            f"RCPT TO:<{r.address}>" + (f" {r.params}" if r.params else "") for r in recipients
        ]
        for line in (mail_line, *rcpt_lines):
            _check_line(line)
        self._begin("transaction", State.TRANSACTION)
        tx = _Tx(
            mail_line,
            rcpt_lines,
            [r.address for r in recipients],
            message,
            chunking=self.has("CHUNKING"),  # RFC 3030 §2
            pipelined=self.has("PIPELINING"),  # RFC 2920
            rcpts=[None] * len(recipients),
        )
        self._tx = tx
        if tx.pipelined:
            # RFC 2920 §3.1: MAIL, the RCPTs and DATA may go in one group
            self._send(mail_line, _Step.MAIL)
            for i, line in enumerate(rcpt_lines):
                self._send(line, _Step.RCPT, i)
            if not tx.chunking:
                self._send("DATA", _Step.DATA)
        else:
            self._send(mail_line, _Step.MAIL)
        return self.data_to_send()

    def rset(self) -> bytes:
        """RSET (RFC 5321 §4.1.1.5). Ends with `Replied`."""
        return self._single("rset", "RSET")

    def command(self, line: str) -> bytes:
        """One command whose reply the core does not interpret (MAIL, RCPT, NOOP, VRFY
        for a probe). Ends with `Replied`. Commands that change framing or state the
        core tracks (EHLO, STARTTLS, AUTH, DATA, BDAT, QUIT) have their own methods."""
        verb = line.split(" ", 1)[0].upper()
        if verb in _OWN_VERBS:
            raise LocalProtocolError(f"{verb} has its own method")
        return self._single("command", line)

    def quit(self) -> bytes:
        """QUIT (RFC 5321 §4.1.1.10). Ends with `Replied`; the state is then CLOSED."""
        out = self._single("quit", "QUIT")
        self._state = State.QUIT
        return out

    # --- internals --------------------------------------------------------------------

    def _begin(self, call: str, state: State) -> None:
        if self._state not in _ALLOWED[call]:
            raise LocalProtocolError(f"{call}() in state {self._state.name}")
        self._state = state

    def _single(self, call: str, line: str) -> bytes:
        _check_line(line)
        came_from = self._state
        self._begin(call, State.COMMAND)
        self._return = came_from
        self._command = line.split(" ", 1)[0].upper()
        self._send(line, _Step.COMMAND)
        return self.data_to_send()

    def _send(self, line: str, step: _Step, index: int = 0) -> None:
        self._out.append(line.encode("utf-8") + b"\r\n")
        self._due.append((step, index))

    def _close(self, reason: str) -> None:
        self._state = State.CLOSED
        self._closed_reason = reason
        self._due.clear()
        self._tx = None

    def _violation(self, what: str) -> NoReturn:
        self._close(what)
        self._events.clear()  # nothing the broken input completed is believed
        raise ProtocolViolation(what)

    def _on_reply(self, reply: ServerReply) -> None:
        if not self._due:
            if reply.code == 421:  # RFC 5321 §3.8: may come at any time (a timeout)
                self._close(f"the server closed the session: {reply}")
                return
            self._violation(f"a reply to no command: {str(reply)[:80]!r}")
        step, index = self._due.popleft()
        closing = reply.code == 421  # RFC 5321 §3.8
        if self._tx is not None:
            self._on_tx_reply(self._tx, step, index, reply)
        else:
            self._on_session_reply(step, reply)
        if closing:
            self._close(f"the server closed the session: {reply}")
        elif self._state is State.TLS and self._parser.buffered:
            # RFC 3207 §5: nothing may follow the 220 in clear (CVE-2011-0411 class)
            self._violation("data after the STARTTLS 220 reply (injection attempt?)")

    def _on_session_reply(self, step: _Step, reply: ServerReply) -> None:
        if step is _Step.GREETING:
            self.greeting = reply
            self._state = State.HELLO
            self._events.append(Greeting(reply))
        elif step is _Step.EHLO:
            if reply.code in _EHLO_FALLBACK:
                self._send(f"HELO {self._ehlo_name}", _Step.HELO)
                return
            if reply.is_success:
                # RFC 5321 §4.1.1.1: the first line greets, the rest are ehlo-lines
                exts: dict[str, str] = {}
                for line in reply.lines[1:]:
                    keyword, _, params = line.strip().partition(" ")
                    if keyword:
                        exts[keyword.upper()] = params.strip()
                self.extensions = MappingProxyType(exts)
            self._state = State.READY if reply.is_success else State.HELLO
            self._events.append(EhloDone(reply, self.extensions, True))
        elif step is _Step.HELO:
            self._state = State.READY if reply.is_success else State.HELLO
            self._events.append(EhloDone(reply, self.extensions, False))
        elif step is _Step.STARTTLS:
            if reply.code == 220:
                self._state = State.TLS
                self._events.append(TlsReady(reply))
            else:
                self._state = State.READY
                self._events.append(TlsRefused(reply))
        elif step in (_Step.AUTH_USER, _Step.AUTH_PASSWORD) and reply.code == 334:
            user, password = self._login
            value = user if step is _Step.AUTH_USER else password
            following = _Step.AUTH_PASSWORD if step is _Step.AUTH_USER else _Step.AUTH
            self._send(base64.b64encode(value.encode()).decode(), following)
        elif step is _Step.AUTH and reply.code == 334:
            # a challenge we have no answer to: cancel (RFC 4954 §4), take the answer
            self._send("*", _Step.AUTH_CANCEL)
        elif step in (_Step.AUTH, _Step.AUTH_USER, _Step.AUTH_PASSWORD, _Step.AUTH_CANCEL):
            self._login = ("", "")
            self._state = State.READY
            self._events.append(AuthDone(reply))
        elif step is _Step.COMMAND:
            self._state = State.CLOSED if self._state is State.QUIT else self._return
            if self._state is State.CLOSED:
                self._closed_reason = "QUIT"
            self._events.append(Replied(self._command, reply))

    def _on_tx_reply(self, tx: _Tx, step: _Step, index: int, reply: ServerReply) -> None:
        if reply.code == 421:
            # RFC 5321 §3.8: the 421 answers this and every reply still due
            self._fill_421(tx, step, index, reply)
            self._finish(tx)
            return
        if step is _Step.MAIL:
            tx.mail = reply
            if not tx.pipelined:
                if reply.is_success:
                    self._send(tx.rcpt_lines[0], _Step.RCPT, 0)
                else:
                    self._finish(tx)  # the RCPTs were never sent: None
        elif step is _Step.RCPT:
            tx.rcpts[index] = reply
            self._events.append(RecipientResult(index, tx.addresses[index], reply))
            last = index == len(tx.rcpt_lines) - 1
            if not tx.pipelined and not last:
                self._send(tx.rcpt_lines[index + 1], _Step.RCPT, index + 1)
            elif last and (tx.chunking or not tx.pipelined):
                if tx.accepted:
                    self._send_message(tx)
                else:
                    self._reset_or_finish(tx)
        elif step is _Step.DATA:
            tx.data_command = reply
            if reply.code != 354:
                self._reset_or_finish(tx)
            elif tx.accepted:
                self._out.append(dot_stuff(tx.message))  # RFC 5321 §4.5.2
                self._due.append((_Step.MESSAGE, 0))
            else:
                self._out.append(b".\r\n")  # RFC 2920 §3.1: DATA went through anyway; end it empty
                self._due.append((_Step.EMPTY, 0))
        elif step is _Step.MESSAGE:
            tx.data = reply
            self.transactions += 1
            self._finish(tx)
        elif step is _Step.EMPTY:
            self._reset_or_finish(tx)
        elif step is _Step.RESET:
            if not reply.is_success:
                self._finish(tx)
                self._close(f"RSET refused: {reply}")
                return
            self._finish(tx)

    def _send_message(self, tx: _Tx) -> None:
        if tx.chunking:
            body = tx.message if tx.message.endswith(b"\r\n") else tx.message + b"\r\n"
            self._out += [f"BDAT {len(body)} LAST\r\n".encode(), body]  # RFC 3030 §2
            self._due.append((_Step.MESSAGE, 0))
        else:
            self._send("DATA", _Step.DATA)

    def _reset_or_finish(self, tx: _Tx) -> None:
        """RFC 5321 §4.1.1.5: reset a transaction MAIL opened, so the connection
        can be reused."""
        if tx.mail is not None and tx.mail.is_success:
            self._send("RSET", _Step.RESET)
        else:
            self._finish(tx)

    def _fill_421(self, tx: _Tx, step: _Step, index: int, reply: ServerReply) -> None:
        if step is _Step.MAIL:
            tx.mail = reply
        if step in (_Step.MAIL, _Step.RCPT):
            first = 0 if step is _Step.MAIL else index
            for i in range(first, len(tx.rcpts)):
                tx.rcpts[i] = reply
                self._events.append(RecipientResult(i, tx.addresses[i], reply))
        if step in (_Step.MAIL, _Step.RCPT, _Step.DATA):
            tx.data_command = reply  # the message can no longer go: say why
        if step is _Step.MESSAGE:
            tx.data = reply

    def _finish(self, tx: _Tx) -> None:
        assert tx.mail is not None  # every path here has the MAIL reply
        self._tx = None
        self._due.clear()
        self._state = State.READY
        result = Transaction(tx.mail, tuple(tx.rcpts), tx.data, tx.data_command)
        self._events.append(TransactionDone(result))


def _check_line(line: str) -> None:
    if "\r" in line or "\n" in line:
        raise ValueError(f"CR or LF in an SMTP command: {line[:80]!r}")
