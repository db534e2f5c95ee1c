"""Sans-IO framing of the IMAP client stream: command lines, literals, AUTHENTICATE
continuation lines and IDLE's DONE (RFC 9051 §2.2, §4.3, §7.5; RFC 7888; RFC 3516).

`Receiver` takes bytes (`receive_data`, empty bytes = EOF) and hands out one event
per `next()` call:

- `RawCommand`: one complete command: its line segments (without CRLF) and the
  literals between them. ``segments[i]`` ends with the literal marker (``{n}``,
  ``{n+}``, ``~{n}``) of ``literals[i]``; ``len(segments) == len(literals) + 1``.
  `postier.imap.parse.parse_command` turns it into a typed command.
- `NeedLiteral`: the current line ended with a literal marker. For a synchronising
  literal the adapter writes ``+ Ready`` (or refuses: `refuse_literal()` and its own
  tagged NO); for a non-synchronising one (LITERAL+, RFC 7888) the bytes follow
  without a continuation request and the adapter writes nothing. It carries the
  command's name and the octets of the command held so far, for the adapter's
  limits; the adapter may call `stream_literal()` to have the bytes handed out
  instead of kept.
- `LiteralChunk`: bytes of a literal the adapter asked to stream, in order; the
  literal then appears in the `RawCommand` with ``streamed`` set and no data.
- `ContinuationLine`: in AUTHENTICATE mode (`expect_continuation`), the client's
  next line (a SASL response, RFC 9051 §6.2.2).
- `IdleDone`: in IDLE mode (`start_idle`), the client's ``DONE`` (RFC 9051 §6.3.13).
- `BadInput`: the peer broke the framing; `response()` is the exact reply
  (tagged when the tag is known). ``fatal`` means ``* BYE`` and close.
- `ConnectionClosed`: EOF after the last complete command (or after a fatal error).
- `NEED_DATA`: feed more bytes.

Rules:
- Memory is bounded: a command's text outside literals is at most
  `max_line_length` octets, one literal at most `max_literal_size`, a command at
  most `max_literals` literals and `max_command_size` octets in all. A streamed
  literal is never held: each read's bytes leave as one `LiteralChunk`. An overlong line
  is discarded as it arrives (never buffered) and answered with BAD at its CRLF,
  then the receiver resynchronises on the next line.
- A synchronising literal that is too large is refused before the client sends it:
  tagged ``NO [TOOBIG]`` (RFC 7889 §4, RFC 4469 §6); the command is abandoned.
- A non-synchronising literal that is too large is read and thrown away with the
  rest of its command, then answered with ``BAD [TOOBIG]``; when it is larger than
  `max_discard_size` the connection is closed with ``* BYE`` (RFC 7888 §4). With
  `literal_minus` (LITERAL-) non-synchronising literals above 4096 octets are too
  large (RFC 7888 §5).
- Lines end with CRLF; a bare LF is accepted as a line end (as Dovecot does) and the
  CR before it is dropped. Literal contents are opaque octets and never scanned.
- Modes change only when the adapter says so: it calls `start_idle` or
  `expect_continuation` right after the command that enters the mode and before
  calling `next()` again; the mode ends with the line it was waiting for.

Why hand-written: framing is tied to our limits and modes (the shape follows
Stalwart's imap-proto receiver); no Python library offers a server-side sans-IO one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from postier.imap.errors import LocalProtocolError

#: RFC 7888 §5: LITERAL- allows non-synchronising literals of at most 4096 octets
LITERAL_MINUS_MAX: Final = 4096

# literal = "{" number64 ["+"] "}" CRLF *CHAR8     RFC 9051 §9, RFC 7888 §8
# literal8 = "~{" number64 ["+"] "}" CRLF *OCTET   RFC 3516 §4.3 / RFC 9051 §9
_LITERAL_MARKER: Final = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
# tag = 1*<any ASTRING-CHAR except "+">            RFC 9051 §9
_TAG: Final = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+\Z")


#: octets of a discarded line kept to find its literal marker ("~{" 20 digits "+}" CR)
_DISCARD_TAIL: Final = 32
#: what may follow "{" in a literal marker not yet complete
_MARKER_SO_FAR: Final = re.compile(rb"([0-9]*)(\+?\}?\r?)")


class _Need(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: returned by `Receiver.next()` when more bytes are needed
NEED_DATA: Final = _Need.NEED_DATA


class Mode(enum.Enum):
    COMMAND = "command"
    CONTINUATION = "continuation"  # AUTHENTICATE: one SASL response line
    IDLE = "idle"  # waiting for DONE


@dataclass(frozen=True)
class SpooledLiteral:
    """Where the adapter put the bytes of a streamed literal."""

    path: Path
    size: int
    has_nul: bool


@dataclass(frozen=True)
class Literal:
    data: bytes
    binary: bool = False  # literal8 "~{n}" (RFC 3516): may contain NUL
    non_sync: bool = False  # "{n+}" (RFC 7888)
    streamed: bool = False  # handed out as LiteralChunk events; `data` is empty
    file: SpooledLiteral | None = None  # set by the adapter for a streamed literal


@dataclass(frozen=True)
class RawCommand:
    """One complete command as framed; `tag` is None when the line has no valid tag."""

    tag: str | None
    segments: tuple[bytes, ...]
    literals: tuple[Literal, ...] = ()


@dataclass(frozen=True)
class NeedLiteral:
    tag: str | None
    size: int
    non_sync: bool  # True: the bytes follow without "+"; write nothing
    binary: bool = False
    #: the command's name, upper case ("APPEND"; "" when the line has none)
    command: str = field(default="", compare=False)
    #: octets of this command held in memory so far: its text and unstreamed literals
    held: int = field(default=0, compare=False)


@dataclass(frozen=True)
class LiteralChunk:
    data: bytes


@dataclass(frozen=True)
class ContinuationLine:
    data: bytes  # without CRLF


@dataclass(frozen=True)
class IdleDone:
    pass


@dataclass(frozen=True)
class ConnectionClosed:
    pass


@dataclass(frozen=True)
class BadInput:
    """The peer broke the framing; send `response()`; close after it when `fatal`."""

    tag: str | None
    text: str
    code: str | None = None
    status: str = "BAD"
    fatal: bool = False

    def response(self) -> bytes:
        from postier.imap.responses import status_response

        if self.fatal:
            return status_response(None, "BYE", self.text, code=self.code)
        return status_response(self.tag, self.status, self.text, code=self.code)


Event = (
    RawCommand
    | NeedLiteral
    | LiteralChunk
    | ContinuationLine
    | IdleDone
    | BadInput
    | ConnectionClosed
    | _Need
)


class _State(enum.Enum):
    LINE = "line"
    LITERAL = "literal"
    DISCARD_LINE = "discard-line"
    DISCARD_LITERAL = "discard-literal"
    CLOSED = "closed"


def command_of(line: bytes) -> str:
    """The command name after the tag of a command's first line, upper case."""
    parts = line[:128].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isalpha():
        return ""
    return parts[1].decode("ascii").upper()


def tag_of(line: bytes | bytearray) -> str | None:
    """The tag at the start of a command line, or None when it is not a valid tag."""
    head = bytes(line).split(b" ", 1)[0]
    if _TAG.match(head):
        return head.decode("ascii")
    return None


class Receiver:
    #: take a command of one line without a literal in one step (`_on_line`), and
    #: starve at once when nothing is buffered (`next`); the tests turn it off to
    #: compare with the general steps
    _one_line = True

    def __init__(
        self,
        max_line_length: int = 64 * 1024,
        max_literal_size: int = 50 * 1024 * 1024,
        *,
        max_literals: int = 1000,
        max_command_size: int = 100 * 1024 * 1024,
        max_discard_size: int | None = None,
        literal_minus: bool = False,
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.max_literals = max_literals
        self.max_command_size = max_command_size
        self.max_discard_size = (
            max_discard_size if max_discard_size is not None else 2 * max_literal_size
        )
        self.literal_minus = literal_minus

        self._buf = bytearray()
        self._scan = 0  # no LF before this offset of _buf
        self._eof = False
        self._state = _State.LINE
        self._mode = Mode.COMMAND
        self._mode_tag: str | None = None
        # the command being framed
        self._tag: str | None = None
        self._segments: list[bytes] = []
        self._literals: list[Literal] = []
        self._line_total = 0
        self._cmd_total = 0
        # the literal being read or discarded
        self._lit_remaining = 0
        self._lit_size = 0  # as announced
        self._lit_data = bytearray()
        self._lit_binary = False
        self._lit_non_sync = False
        self._lit_streamed = False  # the literal being read leaves as LiteralChunks
        self._lit_held = 0  # octets of this command's literals kept in memory
        self._pending_error: BadInput | None = None  # sent when a discard ends
        self._discard_literals = True  # the discarded line is a command's (not DONE)
        self._commands_ended = 0

    # --- adapter controls ------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def between_commands(self) -> bool:
        """No command is partly received: nothing buffered, no literal awaited, no
        mode line (RFC 5465 notifications go out only then)."""
        return (
            self._state is _State.LINE
            and self._mode is Mode.COMMAND
            and not self._segments
            and not self._buf
        )

    @property
    def buffered(self) -> int:
        """Octets held (unparsed input and the literal being read): for backpressure."""
        return len(self._buf) + len(self._lit_data)

    @property
    def in_command(self) -> bool:
        """Part of a command has arrived and the rest has not (a partial line, a
        literal being read, input being thrown away), or a mode waits for its
        line: the adapter's per-command deadline runs while this holds."""
        return self._state is not _State.CLOSED and not self.between_commands

    @property
    def commands_ended(self) -> int:
        """How many commands were framed, refused or thrown away so far: when it
        changes, the command in progress (if any) is a new one."""
        return self._commands_ended

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means EOF."""
        if self._state is _State.CLOSED:
            return
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        if not data:
            self._eof = True
            return
        self._buf += data

    def start_idle(self, tag: str) -> None:
        """The adapter accepted IDLE and wrote ``+ idling``: wait for DONE."""
        self._set_mode(Mode.IDLE, tag)

    def expect_continuation(self, tag: str) -> None:
        """The adapter wrote an AUTHENTICATE challenge: the next line is the answer."""
        self._set_mode(Mode.CONTINUATION, tag)

    def stream_literal(self) -> None:
        """Hand out the literal just announced by `NeedLiteral` as `LiteralChunk`
        events instead of keeping it (the adapter spools it)."""
        self._check_just_announced("stream_literal()")
        self._lit_streamed = True

    def refuse_literal(self) -> None:
        """Refuse the literal just announced by `NeedLiteral`; the adapter sends its own
        tagged NO/BAD. A synchronising literal is never sent by the client; a
        non-synchronising one is read and discarded with the rest of its command."""
        self._check_just_announced("refuse_literal()")
        if self._lit_non_sync:
            self._discard_literals = True
            self._state = _State.DISCARD_LITERAL
            self._pending_error = None
        else:
            self._reset_command()

    def _check_just_announced(self, what: str) -> None:
        if (
            self._state is not _State.LITERAL
            or self._lit_data
            or self._lit_streamed
            or self._lit_remaining != self._lit_size
        ):
            raise LocalProtocolError(f"{what} only right after NeedLiteral")

    # --- events ----------------------------------------------------------------
    def next(self) -> Event:
        while True:
            state = self._state
            if state is _State.LINE:  # the commonest state, checked first
                if self._one_line and not self._buf:
                    # what `_take_line` does with nothing buffered in this state: a
                    # kept line is never too long (`_on_line`), so nothing to refuse
                    self._scan = 0
                    return self._starved()
            elif state is _State.CLOSED:
                return ConnectionClosed()
            elif state is _State.LITERAL or state is _State.DISCARD_LITERAL:
                if self._lit_remaining and self._buf:
                    take = min(self._lit_remaining, len(self._buf))
                    chunk = bytes(self._buf[:take]) if self._lit_streamed else b""
                    if state is _State.LITERAL and not self._lit_streamed:
                        self._lit_data += self._buf[:take]
                    del self._buf[:take]
                    self._lit_remaining -= take
                    if chunk and state is _State.LITERAL:
                        return LiteralChunk(chunk)
                if self._lit_remaining:
                    return self._starved()
                if state is _State.LITERAL:
                    self._literals.append(
                        Literal(
                            bytes(self._lit_data),
                            self._lit_binary,
                            self._lit_non_sync,
                            streamed=self._lit_streamed,
                        )
                    )
                    if not self._lit_streamed:
                        self._lit_held += len(self._lit_data)
                    self._lit_data = bytearray()
                    self._lit_streamed = False
                    self._state = _State.LINE
                else:
                    self._state = _State.DISCARD_LINE
                continue
            line = self._take_line()
            if line is None:
                return self._starved()
            event = self._on_line(line)
            if event is not None:
                return event

    # --- internals -------------------------------------------------------------
    def _set_mode(self, mode: Mode, tag: str) -> None:
        if self._state is not _State.LINE or self._segments:
            raise LocalProtocolError("mode change in the middle of a command")
        self._mode = mode
        self._mode_tag = tag

    def _starved(self) -> Event:
        if self._eof:
            self._state = _State.CLOSED
            self._buf.clear()
            return ConnectionClosed()
        return NEED_DATA

    def _take_line(self) -> bytes | None:
        """The next line without its CRLF; None when incomplete. While discarding, or
        once the line is too long, incomplete bytes are dropped instead of kept."""
        idx = self._buf.find(b"\n", self._scan)
        if idx < 0:
            if self._state is _State.LINE and (
                self._line_total + len(self._buf) > self.max_line_length + 1
            ):
                # too long already: keep only the tag for the answer, drop the rest
                text = "Command line too long"
                self._discard_literals = True
                if self._mode is not Mode.COMMAND:
                    tag, text = self._mode_tag, "Line too long"
                    self._discard_literals = False
                elif self._segments:
                    tag = self._tag
                else:
                    tag = self._tag_prefix(self._buf)
                self._pending_error = BadInput(tag, text, code="TOOBIG")
                self._state = _State.DISCARD_LINE
                self._mode = Mode.COMMAND
                self._mode_tag = None
            if self._state is _State.DISCARD_LINE and len(self._buf) > _DISCARD_TAIL:
                # keep only what a literal marker at the line's end could need
                self._buf[:] = self._discard_tail(self._buf)
            self._scan = len(self._buf)
            return None
        buf = self._buf
        end = idx - 1 if idx and buf[idx - 1] == 0x0D else idx  # without its CR
        line = bytes(buf[:end])
        if idx + 1 == len(buf):
            buf.clear()  # the line was all there was (a client awaiting each answer)
        else:
            del buf[: idx + 1]
        self._scan = 0
        return line

    @staticmethod
    def _discard_tail(buf: bytearray) -> bytes:
        """The end of a discarded line's unfinished text that decides whether it ends
        with a literal marker: its last octets, or, inside a marker, the marker so
        far with a number of more than 20 digits shortened to 21 (any such number is
        too large, `_on_line`); so a long marker split over reads is still found."""
        brace = buf.rfind(b"{")
        m = _MARKER_SO_FAR.fullmatch(buf, brace + 1) if brace >= 0 else None
        if m is None:
            return bytes(buf[-_DISCARD_TAIL:])
        tilde = b"~" if buf[brace - 1 : brace] == b"~" else b""
        return tilde + b"{" + m.group(1)[:21] + m.group(2)

    def _on_line(self, line: bytes) -> Event | None:
        if self._state is _State.DISCARD_LINE:
            return self._on_discarded_line(line)
        if self._mode is not Mode.COMMAND:
            return self._on_mode_line(line)
        if not self._segments:
            self._tag = tag_of(line)
            if self._one_line and len(line) <= self.max_line_length and not line.endswith(b"}"):
                # a whole command in one line, the commonest: what the steps below
                # make of it, without them. Until a command's first line is kept,
                # every field of the command being framed holds what
                # `_reset_command` gives it, so there is nothing to reset but the tag
                self._commands_ended += 1
                command = RawCommand(self._tag, (line,))
                self._tag = None
                return command
        self._line_total += len(line)
        self._cmd_total += len(line)
        if self._line_total > self.max_line_length:
            # the whole line arrived at once: refuse it as `_take_line` does one that
            # arrives in pieces, so a non-synchronising literal announced at its end
            # is skipped too and the answer never depends on packet boundaries
            tag = self._tag if len(self._segments) else self._tag_prefix(line)
            self._reset_command()
            self._pending_error = BadInput(tag, "Command line too long", code="TOOBIG")
            self._discard_literals = True
            self._state = _State.DISCARD_LINE
            return self._on_discarded_line(line)
        self._segments.append(line)
        marker = _LITERAL_MARKER.search(line)
        if marker is None:
            command = RawCommand(self._tag, tuple(self._segments), tuple(self._literals))
            self._reset_command()
            return command
        binary = bool(marker.group(1))
        digits = marker.group(2)
        non_sync = bool(marker.group(3))
        # number64 (RFC 9051 §9): a longer digit string is certainly too large
        size = int(digits) if len(digits) <= 20 else 1 << 64
        self._lit_binary = binary
        self._lit_non_sync = non_sync
        self._lit_remaining = size
        self._lit_size = size
        self._lit_data = bytearray()
        self._lit_streamed = False
        error = self._literal_error(size, non_sync)
        if error is None:
            self._state = _State.LITERAL
            self._cmd_total += size
            return NeedLiteral(
                self._tag,
                size,
                non_sync,
                binary,
                command=command_of(self._segments[0]),
                held=self._line_total + self._lit_held,
            )
        if not non_sync:
            # the client waits for "+": it never sends the literal; the command ends
            self._reset_command()
            return error
        if size > self.max_discard_size:
            self._state = _State.CLOSED  # RFC 7888 §4: the server MAY close it (BYE)
            self._buf.clear()
            return BadInput(None, error.text, code=error.code, fatal=True)
        # RFC 7888 §4: read the literal, throw it away, then answer BAD
        self._discard_literals = True
        self._pending_error = BadInput(self._tag, error.text, code=error.code)
        self._state = _State.DISCARD_LITERAL
        return None

    def _literal_error(self, size: int, non_sync: bool) -> BadInput | None:
        if len(self._literals) >= self.max_literals:
            status = "BAD" if non_sync else "NO"
            return BadInput(self._tag, "Too many literals in one command", "LIMIT", status)
        if non_sync and self.literal_minus and size > LITERAL_MINUS_MAX:
            # RFC 7888 §5: LITERAL- allows at most 4096 octets without "+"
            return BadInput(self._tag, "Non-synchronizing literal too large", "TOOBIG")
        if size > self.max_literal_size or self._cmd_total + size > self.max_command_size:
            status = "BAD" if non_sync else "NO"  # RFC 7888 §4 / RFC 7889 §4
            return BadInput(self._tag, "Literal too large", "TOOBIG", status)
        return None

    def _on_discarded_line(self, line: bytes) -> Event | None:
        """The tail of a refused command: skip its non-synchronising literals, answer at
        its end (a synchronising literal also ends it: we never send "+")."""
        marker = _LITERAL_MARKER.search(line) if self._discard_literals else None
        if marker is not None and marker.group(3):
            digits = marker.group(2)
            size = int(digits) if len(digits) <= 20 else 1 << 64
            if size > self.max_discard_size:
                self._state = _State.CLOSED
                self._buf.clear()
                return BadInput(None, "Literal too large", code="TOOBIG", fatal=True)
            self._lit_remaining = size
            self._state = _State.DISCARD_LITERAL
            return None
        error = self._pending_error
        self._reset_command()
        return error

    def _on_mode_line(self, line: bytes) -> Event:
        mode, tag = self._mode, self._mode_tag
        self._mode = Mode.COMMAND
        self._mode_tag = None
        if len(line) > self.max_line_length:
            return BadInput(tag, "Line too long", code="TOOBIG")
        if mode is Mode.CONTINUATION:
            return ContinuationLine(line)
        if line.upper() == b"DONE":  # RFC 9051 §6.3.13 (case-insensitive atom)
            return IdleDone()
        return BadInput(tag, "Expected DONE")

    def _reset_command(self) -> None:
        self._commands_ended += 1
        self._state = _State.LINE
        self._tag = None
        self._segments = []
        self._literals = []
        self._line_total = 0
        self._cmd_total = 0
        self._lit_remaining = 0
        self._lit_data = bytearray()
        self._lit_streamed = False
        self._lit_held = 0
        self._pending_error = None

    def _tag_prefix(self, line: bytes | bytearray) -> str | None:
        """The tag of an overlong first line: only looked for in its first octets, the
        part that is certainly buffered whatever the chunking, so the answer does not
        depend on how the bytes arrived."""
        space = line.find(b" ", 0, min(1024, self.max_line_length))
        if space < 0:
            return None
        return tag_of(line[:space])
