"""The sans-IO POP3 server core: one `ServerConnection` per client connection.

Bytes in (`receive_data`), events out (`next_event`), h11-style. The core holds no
socket, clock, store or config: it owns the RFC 1939 state machine and everything
the RFCs decide (syntax, sequencing, message numbers, deletion marks, CAPA, the
response texts), while the adapter (`postier.pop3.server`) moves bytes, runs the
idle timer, delays failed logins, and answers the *hook* events:

=================  ==============================================================
event              the adapter answers with (each returns the bytes to write)
=================  ==============================================================
`Reply(data)`      nothing: write `data`
`Authenticate`     verify, lock and load the maildrop, then
                   `auth_ok(maildrop)` | `auth_failed()` | `auth_in_use()` |
                   `fail(response)` (e.g. `ERR_SYS_TEMP` when the store is down)
`Retrieve`/`Top`   load the message bytes: `send_message(data)` (the full multi-line
                   response, normalised, byte-stuffed, terminated) | `fail(response)`
`StartTls`         the ``+OK`` was in the `Reply` just before: flush, handshake, then
                   `tls_started(plaintext_allowed=...)` (returns nothing: RFC 2595
                   §4 has the client speak first) | `fail()` on handshake failure
`Quit`             the UPDATE state: expunge `deletions` atomically, unlock, then
                   `update_done(ok)`; the next event is `Close`
`Close(reason)`    flush what was written, close the connection; every later call
                   to `next_event` returns `Close` again
=================  ==============================================================

A thin adapter loop::

    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            await writer.drain(); conn.receive_data(await reader.read(4096))
        elif isinstance(event, Reply): writer.write(event.data)
        elif isinstance(event, Authenticate): writer.write(await login(event))
        ...
        elif isinstance(event, Close): break

Maildrop contract: at `auth_ok` the adapter passes the maildrop as a sequence of
`MaildropEntry(size, uidl)`, message 1 first; it is fixed for the session (RFC 1939
§4: numbers are assigned when the maildrop is opened). Each `size` MUST be
`pop3_size(blob)` of the very bytes that `send_message` will later receive for that
message, so LIST and STAT announce exactly the octets RETR sends (RFC 1939 §11).

Rules:
- States (RFC 1939 §3): AUTHORIZATION → (login) → TRANSACTION → (QUIT) → UPDATE →
  closed. `ALLOWED` below is the table of commands per state; a known command in the
  wrong state gets ``-ERR`` naming the state. `_state` changes only in `auth_ok`
  (→ TRANSACTION), the QUIT handler (→ UPDATE) and `_close` (→ CLOSED).
- One command line yields exactly one response (or one hook whose answer is the
  response), in order, so PIPELINING (RFC 2449 §6.6) needs nothing from the adapter
  beyond writing replies in the order they come.
- While a hook event is unanswered, `next_event` raises `LocalProtocolError`;
  `receive_data` may still buffer bytes.
- Buffers are bounded: a line longer than `max_line` octets (with its CRLF; RFC 2449
  §4 asks for 255, the default allows 512) is answered ``-ERR Line too long`` and
  dropped up to its LF, never kept. The core only buffers what the adapter fed it
  after `NEED_DATA`, plus at most one line.
- PASS is valid only right after a successful USER (RFC 1939 §7); any other command
  in between forgets the user name.
- Deletion marks live here until QUIT: EOF, a timeout or an error close never
  deletes (RFC 1939 §6); only `Quit.deletions` reach the store.
- Limits: `max_errors` client protocol errors (syntax, unknown or out-of-state
  command, long line; *not* "no such message") and `max_auth_failures` failed logins
  close the connection; the response to the error that reaches the limit says so.
- After STLS any bytes already buffered are discarded: plaintext pipelined behind
  STLS must never be read as if it came over TLS (the CVE-2011-0411 class).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal, NamedTuple

from postier.pop3.commands import (
    ERR_AUTH_FAILED,
    ERR_BAD_LINE_COUNT,
    ERR_IN_USE,
    ERR_LINE_TOO_LONG,
    ERR_NO_SUCH_MESSAGE,
    ERR_NOT_REMOVED,
    ERR_PLAINTEXT_DISALLOWED,
    ERR_SYS_TEMP,
    ERR_TOO_MANY_AUTH_FAILURES,
    ERR_TOO_MANY_ERRORS,
    ERR_UNKNOWN_COMMAND,
    Command,
    Response,
    decode_base64,
    format_message_parts,
    multiline,
    parse_command,
    parse_number,
)
from postier.pop3.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ALLOWED",
    "NEED_DATA",
    "Authenticate",
    "Close",
    "Event",
    "MaildropEntry",
    "NeedData",
    "Quit",
    "Reply",
    "Retrieve",
    "ServerConnection",
    "StartTls",
    "State",
    "Top",
]


class State(Enum):
    AUTHORIZATION = "AUTHORIZATION"  # RFC 1939 §4
    TRANSACTION = "TRANSACTION"  # RFC 1939 §5
    UPDATE = "UPDATE"  # RFC 1939 §6: after QUIT, while the adapter expunges
    CLOSED = "CLOSED"  # a `Close` event was emitted; nothing more happens


# RFC 1939 §4-5, RFC 2449 §5 (CAPA in both), RFC 2595 §4 (STLS), RFC 5034 §4 (AUTH).
# APOP is known so that it gets "not supported" rather than "unknown command".
ALLOWED: Final[dict[State, frozenset[str]]] = {
    State.AUTHORIZATION: frozenset({"USER", "PASS", "APOP", "AUTH", "STLS", "CAPA", "QUIT"}),
    State.TRANSACTION: frozenset(
        {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT"}
    ),
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
}
_KNOWN: Final = frozenset().union(*ALLOWED.values())
_WRONG_STATE: Final = {
    State.AUTHORIZATION: "not allowed in AUTHORIZATION state, log in first",
    State.TRANSACTION: "not allowed in TRANSACTION state, already logged in",
}

# RFC 1939 §7 UIDL: unique-id = 1*70 characters in the range 0x21-0x7E
_UIDL: Final = re.compile(r"[\x21-\x7e]{1,70}")

_OK: Final = Response(True)


class NeedData:
    """`next_event` needs more bytes: read from the client, then `receive_data`."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class MaildropEntry(NamedTuple):
    """One message of the maildrop as the adapter loaded it at login."""

    size: int  # pop3_size() of the bytes later passed to send_message
    uidl: str  # RFC 1939 §7: unique and stable across sessions, 1-70 of 0x21-0x7E


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes the core decided on its own: write them."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check `password` for `username` (USER/PASS or SASL PLAIN with an empty or
    equal authzid), lock and load the maildrop. Hook: answer required."""

    username: str
    password: str = field(repr=False)
    mechanism: Literal["USER", "PLAIN"]


@dataclass(frozen=True, slots=True)
class Retrieve:
    """RETR: give the message bytes to `send_message`. Hook: answer required."""

    number: int  # 1-based message number, valid and not deleted
    uidl: str


@dataclass(frozen=True, slots=True)
class Top:
    """TOP: give the whole message bytes to `send_message`; the core cuts them."""

    number: int
    lines: int
    uidl: str


@dataclass(frozen=True, slots=True)
class StartTls:
    """STLS accepted and its ``+OK`` already emitted: handshake, then `tls_started`."""


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT in TRANSACTION: UPDATE state. Expunge these messages (ascending message
    numbers and their unique-ids), release the lock, answer `update_done`."""

    deletions: tuple[int, ...]
    uidls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection after writing everything before it."""

    reason: str


Event = Reply | Authenticate | Retrieve | Top | StartTls | Quit | Close
_Hook = Authenticate | Retrieve | Top | StartTls | Quit


class _Overflow:
    """A line that exceeded its limit (already dropped from the buffer)."""


_OVERFLOW: Final = _Overflow()


class ServerConnection:
    """The POP3 conversation of one client connection, as a state machine on bytes.

    `plaintext_allowed`: USER/PASS and AUTH PLAIN may be used now (the adapter
    decides from TLS, loopback and config; `tls_started` may change it).
    `tls_available`: STLS can be offered (a certificate is configured and the
    connection is not already TLS). `tls_active`: the connection is TLS already.
    """

    def __init__(
        self,
        *,
        plaintext_allowed: bool,
        tls_available: bool = False,
        tls_active: bool = False,
        greeting: str = "postier POP3 server ready",
        implementation: str = "postier",
        max_line: int = 512,
        max_sasl_line: int = 2048,
        max_errors: int = 10,
        max_auth_failures: int = 3,
    ) -> None:
        if max_line < 8 or max_sasl_line < 8:
            raise ValueError("max_line and max_sasl_line must be at least 8 octets")
        if max_errors < 1 or max_auth_failures < 1:
            raise ValueError("max_errors and max_auth_failures must be at least 1")
        self._plaintext_allowed = plaintext_allowed
        self._tls_available = tls_available
        self._tls_active = tls_active
        self._implementation = Response(True, f"IMPLEMENTATION {implementation}")
        self._max_line = max_line
        self._max_sasl_line = max_sasl_line
        self._max_errors = max_errors
        self._max_auth_failures = max_auth_failures

        self._state = State.AUTHORIZATION
        self._buffer = bytearray()
        self._skip_to_lf = False  # dropping the tail of an overlong line
        self._eof = False
        self._events: deque[Event] = deque()
        self._pending: _Hook | None = None
        self._close_event: Close | None = None
        self._errors = 0
        self._auth_failures = 0
        self._user: str | None = None  # name given by USER, for the next PASS only
        self._in_sasl = False  # the next line is a SASL response (RFC 5034 §4)
        self._username: str | None = None  # who logged in

        # the maildrop, numbered once at login (RFC 1939 §4)
        self._sizes: list[int] = []
        self._uidls: list[str] = []
        self._deleted: set[int] = set()
        self._live_count = 0
        self._live_octets = 0

        self._handlers: dict[str, Callable[[Command, str | None], None]] = {
            "USER": self._user_cmd,
            "PASS": self._pass_cmd,
            "APOP": self._apop_cmd,
            "AUTH": self._auth_cmd,
            "STLS": self._stls_cmd,
            "CAPA": self._capa_cmd,
            "QUIT": self._quit_cmd,
            "STAT": self._stat_cmd,
            "LIST": self._list_cmd,
            "UIDL": self._uidl_cmd,
            "RETR": self._retr_cmd,
            "TOP": self._top_cmd,
            "DELE": self._dele_cmd,
            "NOOP": self._noop_cmd,
            "RSET": self._rset_cmd,
        }
        # RFC 1939 §4: the greeting; no APOP timestamp since APOP is not offered
        self._reply(Response(True, greeting))

    # --- what the adapter reads --------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def plaintext_allowed(self) -> bool:
        """USER/PASS and AUTH PLAIN are accepted now (set at construction and by
        `tls_started`)."""
        return self._plaintext_allowed

    @property
    def username(self) -> str | None:
        """The logged-in user (None before a successful login)."""
        return self._username

    @property
    def mid_line(self) -> bool:
        """Part of a command line (or of an over-long line being dropped) has arrived
        and the rest has not: the adapter's per-command deadline is running."""
        return bool(self._buffer) or self._skip_to_lf

    # --- bytes in, events out ------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; `b""` means the client closed its side."""
        if self._state is State.CLOSED:
            return
        if self._eof:
            raise LocalProtocolError("receive_data() after EOF")
        if isinstance(self._pending, StartTls):
            raise LocalProtocolError("receive_data() between STLS and tls_started()")
        if not data:
            self._eof = True
            return
        if self._skip_to_lf:
            lf = data.find(b"\n")
            if lf < 0:
                return
            data = data[lf + 1 :]
            self._skip_to_lf = False
        self._buffer += data

    def next_event(self) -> Event | NeedData:
        """The next event, or `NEED_DATA`. Never raises for any client bytes."""
        if self._events:
            return self._events.popleft()
        if self._pending is not None:
            raise LocalProtocolError(f"{type(self._pending).__name__} is not answered yet")
        if self._close_event is not None:
            return self._close_event
        while not self._events:
            line = self._next_line()
            if line is None:
                if self._eof:
                    # RFC 1939 §6: a session ending without QUIT never enters UPDATE
                    self._close("connection closed by client")
                    break
                return NEED_DATA
            self._handle_line(line)
        return self._events.popleft()

    # --- hook answers (each returns the bytes to write) -----------------------

    def auth_ok(self, maildrop: Sequence[tuple[int, str]]) -> bytes:
        """The login succeeded and the maildrop is locked: TRANSACTION state."""
        hook = self._take(Authenticate)
        assert isinstance(hook, Authenticate)
        sizes: list[int] = []
        uidls: list[str] = []
        for size, uidl in maildrop:
            if size < 0 or not _UIDL.fullmatch(uidl):
                raise LocalProtocolError(f"invalid maildrop entry {(size, uidl)!r}")
            sizes.append(size)
            uidls.append(uidl)
        if len(set(uidls)) != len(uidls):
            raise LocalProtocolError("maildrop unique-ids are not unique")  # RFC 1939 §7
        self._sizes, self._uidls = sizes, uidls
        self._deleted = set()
        self._live_count, self._live_octets = len(sizes), sum(sizes)
        self._username = hook.username
        self._state = State.TRANSACTION  # RFC 1939 §4: maildrop locked, TRANSACTION
        return self._maildrop_response("Logged in").to_bytes()

    def auth_failed(self, response: Response = ERR_AUTH_FAILED) -> bytes:
        """Wrong credentials (RFC 3206 [AUTH]); counts towards `max_auth_failures`."""
        self._take(Authenticate)
        _check_err(response)
        self._auth_failures += 1
        if self._auth_failures >= self._max_auth_failures:
            self._close("too many authentication failures")
            return ERR_TOO_MANY_AUTH_FAILURES.to_bytes()
        return response.to_bytes()

    def auth_in_use(self) -> bytes:
        """Credentials fine but the maildrop is locked elsewhere (RFC 2449 §8.1.2)."""
        self._take(Authenticate)
        return ERR_IN_USE.to_bytes()

    def send_message(self, data: bytes) -> bytes:
        """The whole response to the pending RETR or TOP for these message bytes."""
        return b"".join(self.send_message_parts(data))

    def send_message_parts(self, data: bytes, crlf_size: int = -1) -> list[bytes]:
        """`send_message` in pieces for one ``writelines``: the message bytes are
        not copied into the response. `crlf_size`: the size LIST announced for
        these bytes, when known (see `format_message_parts`)."""
        hook = self._pending
        lines = hook.lines if isinstance(hook, Top) else None
        return self.send_formatted(format_message_parts(data, lines, crlf_size=crlf_size))

    def send_formatted(self, formatted: tuple[int, list[bytes]]) -> list[bytes]:
        """`send_message_parts` of what `format_message_parts` made of the bytes
        (with the pending TOP's line count): an adapter formats a large message
        in a thread, its loop serving the other sessions meanwhile."""
        hook = self._take(Retrieve, Top)
        size, parts = formatted
        if isinstance(hook, Top):
            return [b"+OK Top of message follows\r\n", *parts]
        # RFC 1939 §7 RETR: the status line may carry the size; it is the octets sent
        return [b"+OK %d octets\r\n" % size, *parts]

    def tls_started(self, *, plaintext_allowed: bool = True) -> None:
        """The TLS handshake after STLS succeeded; the session restarts in
        AUTHORIZATION with nothing buffered (RFC 2595 §4)."""
        self._take(StartTls)
        self._tls_active = True
        self._plaintext_allowed = plaintext_allowed
        self._buffer.clear()  # see Rules: nothing pipelined behind STLS is read
        self._skip_to_lf = False

    def update_done(self, ok: bool) -> bytes:
        """The UPDATE state's expunge finished (`ok`) or failed; the session ends."""
        self._take(Quit)
        self._close("quit")
        if not ok:
            return ERR_NOT_REMOVED.to_bytes()  # RFC 1939 §6: "-ERR some deleted ..."
        left = f"{_messages(self._live_count)} left" if self._live_count else "maildrop empty"
        return Response(True, f"postier POP3 server signing off ({left})").to_bytes()

    def fail(self, response: Response = ERR_SYS_TEMP) -> bytes:
        """Answer any pending hook with an error (our fault, not the client's).

        Authenticate: stays in AUTHORIZATION, not counted as a failed login.
        Retrieve/Top: the message could not be read; the session goes on.
        Quit: nothing was expunged; the session ends.
        StartTls: the handshake failed; returns b"" and the session ends, since
        nothing can be said on a connection in an unknown TLS state.
        """
        _check_err(response)
        hook = self._take(Authenticate, Retrieve, Top, StartTls, Quit)
        if isinstance(hook, StartTls):
            self._close("TLS handshake failed")
            return b""
        if isinstance(hook, Quit):
            self._close("expunge failed")
        return response.to_bytes()

    # --- transitions -------------------------------------------------------

    def _take(self, *kinds: type[_Hook]) -> _Hook:
        hook = self._pending
        if hook is None or not isinstance(hook, kinds):
            raise LocalProtocolError(f"no such hook pending (pending: {hook!r})")
        self._pending = None
        return hook

    def _ask(self, hook: _Hook) -> None:
        self._pending = hook
        self._events.append(hook)

    def _close(self, reason: str) -> None:
        self._state = State.CLOSED
        self._pending = None
        self._in_sasl = False
        self._buffer.clear()
        self._close_event = Close(reason)
        self._events.append(self._close_event)

    def _reply(self, response: Response) -> None:
        self._events.append(Reply(response.to_bytes()))

    def _error(self, error: RemoteProtocolError) -> None:
        if error.counts:
            self._errors += 1
            if self._errors >= self._max_errors:
                self._reply(ERR_TOO_MANY_ERRORS)
                self._close("too many errors")
                return
        self._reply(error.response)

    # --- framing -----------------------------------------------------------

    def _next_line(self) -> bytes | _Overflow | None:
        limit = self._max_sasl_line if self._in_sasl else self._max_line
        buffer = self._buffer
        lf = buffer.find(b"\n", 0, limit)  # the line with its LF fits in `limit`
        if lf >= 0:
            line = bytes(buffer[:lf])
            del buffer[: lf + 1]
            return line[:-1] if line.endswith(b"\r") else line  # bare LF tolerated
        if len(buffer) >= limit:
            lf = buffer.find(b"\n", limit)
            if lf >= 0:
                del buffer[: lf + 1]
            else:
                buffer.clear()
                self._skip_to_lf = True  # receive_data drops up to the next LF
            return _OVERFLOW
        return None

    def _handle_line(self, line: bytes | _Overflow) -> None:
        user, self._user = self._user, None  # RFC 1939 §7: PASS right after USER only
        try:
            if self._in_sasl:
                self._in_sasl = False
                self._sasl_response(line)
                return
            if isinstance(line, _Overflow):
                raise RemoteProtocolError(ERR_LINE_TOO_LONG)  # RFC 2449 §4
            command = parse_command(line)
            if command.keyword not in _KNOWN:
                raise RemoteProtocolError(ERR_UNKNOWN_COMMAND)
            if command.keyword not in ALLOWED[self._state]:
                why = _WRONG_STATE[self._state]
                raise RemoteProtocolError(Response(False, f"{command.keyword} {why}"))
            self._handlers[command.keyword](command, user)
        except RemoteProtocolError as error:
            self._error(error)

    # --- AUTHORIZATION state (RFC 1939 §4, §7; RFC 2595; RFC 5034) --------------

    def _require_plaintext(self) -> None:
        if not self._plaintext_allowed:
            raise RemoteProtocolError(ERR_PLAINTEXT_DISALLOWED)

    def _user_cmd(self, command: Command, user: str | None) -> None:
        self._require_plaintext()
        if len(command.args) != 1:
            raise _syntax("USER name")
        name = _utf8(command.args[0])
        if name is None:
            raise RemoteProtocolError(Response(False, "User name is not valid UTF-8"))
        self._user = name
        # the reply never tells whether the user exists
        self._reply(Response(True, "Send PASS"))

    def _pass_cmd(self, command: Command, user: str | None) -> None:
        self._require_plaintext()
        if user is None:
            raise RemoteProtocolError(Response(False, "PASS must follow a successful USER"))
        if not command.rest:
            raise _syntax("PASS password")
        password = _utf8(command.rest)
        if password is None:
            self._auth_rejected()
            return
        self._ask(Authenticate(user, password, "USER"))

    def _auth_rejected(self) -> None:
        """A login refused by the core itself: counted as an authentication failure."""
        self._auth_failures += 1
        if self._auth_failures >= self._max_auth_failures:
            self._reply(ERR_TOO_MANY_AUTH_FAILURES)
            self._close("too many authentication failures")
        else:
            self._reply(ERR_AUTH_FAILED)

    def _apop_cmd(self, command: Command, user: str | None) -> None:
        # RFC 1939 §7: APOP is optional; no timestamp was sent in the greeting
        raise RemoteProtocolError(Response(False, "APOP not supported"), counts=False)

    def _auth_cmd(self, command: Command, user: str | None) -> None:
        if not command.args:
            # not in RFC 5034; the RFC 1734-era listing that Outlook still sends
            mechanisms = [b"PLAIN"] if self._plaintext_allowed else []
            self._events.append(Reply(multiline(Response(True), mechanisms)))
            return
        if command.args[0].upper() != b"PLAIN":
            # RFC 5034 §4: an unsupported mechanism is rejected with -ERR
            raise RemoteProtocolError(Response(False, "Unsupported authentication mechanism"))
        self._require_plaintext()
        if len(command.args) > 2:
            raise _syntax("AUTH mechanism [initial-response]")
        if len(command.args) == 2:
            # RFC 5034 §4: initial-response = base64 / "=" ("=" is an empty response)
            initial = command.args[1]
            self._sasl_plain(b"" if initial == b"=" else initial)
            return
        self._in_sasl = True
        self._events.append(Reply(b"+ \r\n"))  # RFC 5034 §4: "+" SP [base64] CRLF

    def _sasl_response(self, line: bytes | _Overflow) -> None:
        if isinstance(line, _Overflow):
            raise RemoteProtocolError(ERR_LINE_TOO_LONG)
        if line == b"*":
            # RFC 5034 §4: "*" cancels; the server MUST reject AUTH with -ERR
            raise RemoteProtocolError(Response(False, "Authentication cancelled"), counts=False)
        self._sasl_plain(line)

    def _sasl_plain(self, encoded: bytes) -> None:
        decoded = decode_base64(encoded)
        if decoded is None:
            # RFC 5034 §4: a response that does not decode rejects the AUTH command
            raise RemoteProtocolError(Response(False, "Invalid base64 data"))
        # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        parts = decoded.split(b"\x00")
        fields = [_utf8(part) for part in parts] if len(parts) == 3 else []
        if len(fields) != 3 or None in fields or not parts[1] or not parts[2]:
            raise RemoteProtocolError(Response(False, "Malformed PLAIN response"))
        authzid, authcid, password = (text or "" for text in fields)
        if authzid and authzid != authcid:
            # RFC 4616 §2: acting as someone else is not offered
            raise RemoteProtocolError(
                Response(False, "Authorization identity must be empty or equal", "AUTH")
            )
        self._ask(Authenticate(authcid, password, "PLAIN"))

    def _stls_cmd(self, command: Command, user: str | None) -> None:
        if command.args:
            raise _syntax("STLS")
        if self._tls_active:
            raise RemoteProtocolError(Response(False, "Command not permitted when TLS active"))
        if not self._tls_available:
            raise RemoteProtocolError(Response(False, "TLS not available"))
        self._reply(Response(True, "Begin TLS negotiation"))  # RFC 2595 §4
        self._ask(StartTls())  # the buffer is dropped in tls_started

    def _capa_cmd(self, command: Command, user: str | None) -> None:
        if command.args:
            raise _syntax("CAPA")
        # RFC 2449 §5: what is usable in AUTHORIZATION is announced in both states,
        # so the list does not depend on the state. USER (§6.2) and SASL PLAIN (§6.3)
        # only when a password may be sent now; STLS (RFC 2595 §4) until TLS is on.
        lines = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self._plaintext_allowed:
            lines += [b"USER", b"SASL PLAIN"]
        if self._tls_available and not self._tls_active:
            lines.append(b"STLS")
        lines.append(self._implementation.text.encode("ascii"))  # RFC 2449 §6.9
        self._events.append(Reply(multiline(Response(True, "Capability list follows"), lines)))

    def _quit_cmd(self, command: Command, user: str | None) -> None:
        if command.args:
            raise _syntax("QUIT")
        if self._state is State.AUTHORIZATION:
            # RFC 1939 §4: QUIT in AUTHORIZATION ends the session, no UPDATE state
            self._reply(Response(True, "postier POP3 server signing off"))
            self._close("quit")
            return
        self._state = State.UPDATE  # RFC 1939 §6
        deletions = tuple(sorted(self._deleted))
        self._buffer.clear()
        self._ask(Quit(deletions, tuple(self._uidls[n - 1] for n in deletions)))

    # --- TRANSACTION state (RFC 1939 §5, §7) -----------------------------------

    def _maildrop_response(self, text: str) -> Response:
        n, octets = self._live_count, self._live_octets
        return Response(True, f"{text}, maildrop has {_messages(n)} ({octets} octets)")

    def _message(self, arg: bytes) -> int:
        """A valid, undeleted message number (RFC 1939 §5)."""
        number = parse_number(arg)
        if not 1 <= number <= len(self._sizes):
            raise RemoteProtocolError(ERR_NO_SUCH_MESSAGE, counts=False)
        if number in self._deleted:
            text = f"Message {number} already deleted"
            raise RemoteProtocolError(Response(False, text), counts=False)
        return number

    def _live(self) -> list[int]:
        return [n for n in range(1, len(self._sizes) + 1) if n not in self._deleted]

    def _stat_cmd(self, command: Command, user: str | None) -> None:
        if command.args:
            raise _syntax("STAT")
        # RFC 1939 §5 STAT: "+OK" SP count SP octets, deleted messages not counted
        self._reply(Response(True, f"{self._live_count} {self._live_octets}"))

    def _list_cmd(self, command: Command, user: str | None) -> None:
        if len(command.args) > 1:
            raise _syntax("LIST [msg]")
        if command.args:
            n = self._message(command.args[0])
            self._reply(Response(True, f"{n} {self._sizes[n - 1]}"))
            return
        first = Response(True, f"{_messages(self._live_count)} ({self._live_octets} octets)")
        lines = (b"%d %d" % (n, self._sizes[n - 1]) for n in self._live())
        self._events.append(Reply(multiline(first, lines)))

    def _uidl_cmd(self, command: Command, user: str | None) -> None:
        if len(command.args) > 1:
            raise _syntax("UIDL [msg]")
        if command.args:
            n = self._message(command.args[0])
            self._reply(Response(True, f"{n} {self._uidls[n - 1]}"))
            return
        lines = (b"%d %s" % (n, self._uidls[n - 1].encode("ascii")) for n in self._live())
        self._events.append(Reply(multiline(Response(True, "Unique-ID listing follows"), lines)))

    def _retr_cmd(self, command: Command, user: str | None) -> None:
        if len(command.args) != 1:
            raise _syntax("RETR msg")
        n = self._message(command.args[0])
        self._ask(Retrieve(n, self._uidls[n - 1]))

    def _top_cmd(self, command: Command, user: str | None) -> None:
        if len(command.args) != 2:
            raise _syntax("TOP msg lines")
        n = self._message(command.args[0])
        lines = parse_number(command.args[1], ERR_BAD_LINE_COUNT)
        self._ask(Top(n, lines, self._uidls[n - 1]))

    def _dele_cmd(self, command: Command, user: str | None) -> None:
        if len(command.args) != 1:
            raise _syntax("DELE msg")
        n = self._message(command.args[0])
        self._deleted.add(n)  # RFC 1939 §5 DELE: only marked; removed in UPDATE
        self._live_count -= 1
        self._live_octets -= self._sizes[n - 1]
        self._reply(Response(True, f"Message {n} deleted"))

    def _noop_cmd(self, command: Command, user: str | None) -> None:
        if command.args:
            raise _syntax("NOOP")
        self._reply(_OK)

    def _rset_cmd(self, command: Command, user: str | None) -> None:
        if command.args:
            raise _syntax("RSET")
        self._deleted.clear()  # RFC 1939 §5 RSET: unmark every deleted message
        self._live_count, self._live_octets = len(self._sizes), sum(self._sizes)
        self._reply(self._maildrop_response("Reset"))


def _syntax(usage: str) -> RemoteProtocolError:
    return RemoteProtocolError(Response(False, f"Syntax: {usage}"))


def _messages(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _check_err(response: Response) -> None:
    if response.ok:
        raise LocalProtocolError("a failure answer needs an -ERR response")
