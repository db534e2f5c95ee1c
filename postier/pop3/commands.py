"""POP3 wire syntax: command lines in, status lines and multi-line responses out.

Owns the byte-level grammar of RFC 1939 §3 and RFC 2449 §3-4 (command parsing,
argument parsing, `Response` lines with RFC 2449/3206 response codes) and the
formatting of a message for RETR/TOP: CRLF normalisation, the TOP cut, byte-stuffing
and the terminating ``.``. The state machine that decides *which* response is sent
lives in `postier.pop3.core`.

Rules:
- Keywords are case-insensitive (RFC 1939 §3); arguments are separated by spaces
  (runs of spaces and a trailing space are tolerated). Command lines never contain
  control characters; PASS takes the rest of the line verbatim, spaces included
  (RFC 1939 §7), and only refuses NUL and CR there.
- A number argument is ASCII digits only; values beyond 10**18 are clamped (out of
  range of any maildrop, and "all lines" for TOP) so a huge argument is never an
  exception nor a slow conversion.
- Message bytes go out with CRLF line endings and a final CRLF; a message stored with
  bare LF is converted. `pop3_size(data) == len(normalize(data))` always holds, and
  that is the size LIST, STAT and the RETR status line report (RFC 1939 §11: sizes
  count CRLF line endings, not the byte-stuffing). Both are done with `bytes.count`
  and `bytes.replace`: no per-line Python loop over a large message. A message
  over `SLICE` octets is worked on a slice at a time (each C call holds the GIL,
  so the adapter can run it in a thread while its loop serves the others), and
  TOP finds its cut in slices too (a count then a halving search per slice):
  linear in the message, never in the line count asked for.
- Every status line is ASCII without CR/LF and at most 512 octets with its CRLF
  (RFC 2449 §4); `Response` refuses anything else when it is built.

Hand-written: POP3 is a few dozen lines of grammar; the stdlib only has a client
(poplib) and no maintained server-side parser exists that is sans-IO.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from postier.mime.summary import crlf_size
from postier.pop3.errors import RemoteProtocolError

#: RFC 2449 §4: responses (status line with CRLF) are at most 512 octets
MAX_RESPONSE_LINE = 512

#: clamp for number arguments: far beyond any maildrop and any message's line count
NUMBER_CLAMP = 10**18

_TEXT = re.compile(r"[\x20-\x7e]*")
_CODE = re.compile(r"[A-Z0-9-]+(/[A-Z0-9-]+)*")  # RFC 2449 §8: resp-code hierarchy
_KEYWORD = re.compile(rb"[A-Za-z]{3,4}")  # RFC 1939 §3: keywords are 3-4 characters
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_PASS_FORBIDDEN = re.compile(rb"[\x00\r]")
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


@dataclass(frozen=True, slots=True)
class Response:
    """One status line: ``+OK`` / ``-ERR``, an optional response code, a text.

    `code` is an RFC 2449 §8 response code without brackets ("AUTH", "IN-USE",
    "SYS/TEMP", "SYS/PERM"). Construct only from trusted text: client input is
    never echoed into a response.
    """

    ok: bool
    text: str = ""
    code: str | None = None

    def __post_init__(self) -> None:
        if not _TEXT.fullmatch(self.text):
            raise ValueError(f"POP3 response text must be printable ASCII: {self.text!r}")
        if self.code is not None and not _CODE.fullmatch(self.code):
            raise ValueError(f"bad POP3 response code {self.code!r}")
        if len(self.to_bytes()) > MAX_RESPONSE_LINE:  # RFC 2449 §4
            raise ValueError("POP3 response longer than 512 octets")

    def to_bytes(self) -> bytes:
        parts = ["+OK" if self.ok else "-ERR"]  # RFC 1939 §3: status indicators
        if self.code is not None:
            parts.append(f"[{self.code}]")  # RFC 2449 §8: resp-code after the indicator
        if self.text:
            parts.append(self.text)
        return (" ".join(parts) + "\r\n").encode("ascii")


# --- responses the core and its adapter share ---------------------------------
# RFC 3206 §5: [AUTH] means the credentials (or their use here) are at fault
ERR_AUTH_FAILED = Response(False, "Authentication failed", "AUTH")
ERR_PLAINTEXT_DISALLOWED = Response(
    False, "Plaintext authentication disallowed on non-secure connections", "AUTH"
)
ERR_TOO_MANY_AUTH_FAILURES = Response(
    False, "Too many authentication failures, closing connection", "AUTH"
)
# RFC 2449 §8.1.2: the maildrop is locked by another session
ERR_IN_USE = Response(False, "Maildrop already locked by another session", "IN-USE")
# RFC 3206 §4: [SYS/TEMP] a transient system problem, [SYS/PERM] a lasting one
ERR_SYS_TEMP = Response(False, "Temporary system error, try again later", "SYS/TEMP")
ERR_SYS_PERM = Response(False, "Permanent system error, contact the administrator", "SYS/PERM")
ERR_NOT_REMOVED = Response(False, "Some deleted messages not removed", "SYS/TEMP")
ERR_UNKNOWN_COMMAND = Response(False, "Unknown command")
ERR_EMPTY_COMMAND = Response(False, "Empty command line")
ERR_BAD_CHARACTERS = Response(False, "Invalid characters in command line")
ERR_LINE_TOO_LONG = Response(False, "Line too long")
ERR_TOO_MANY_ERRORS = Response(False, "Too many errors, closing connection")
# the adapter's timers (Dovecot's wording for a client that never logs in)
ERR_LOGIN_TIMEOUT = Response(False, "Disconnected for inactivity.")
ERR_COMMAND_TIMEOUT = Response(False, "Autologout; command too slow")
ERR_BAD_NUMBER = Response(False, "Invalid message number")
ERR_BAD_LINE_COUNT = Response(False, "Invalid line count")
ERR_NO_SUCH_MESSAGE = Response(False, "No such message")


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command line: upper-case `keyword`, space-separated `args`, and
    `rest`, everything after the first space verbatim (what PASS takes)."""

    keyword: str
    args: tuple[bytes, ...]
    rest: bytes


def parse_command(line: bytes) -> Command:
    """Split one command line (without its CRLF); raise `RemoteProtocolError`."""
    # RFC 1939 §3: keyword, then arguments, each separated by a single space
    keyword, _, rest = line.partition(b" ")
    if not line:
        raise RemoteProtocolError(ERR_EMPTY_COMMAND)
    if not _KEYWORD.fullmatch(keyword):
        raise RemoteProtocolError(ERR_UNKNOWN_COMMAND)
    upper = keyword.decode("ascii").upper()  # RFC 1939 §3: keywords are case-insensitive
    if upper == "PASS":
        # RFC 1939 §7: the password may contain spaces; the rest of the line is it
        if _PASS_FORBIDDEN.search(rest):
            raise RemoteProtocolError(ERR_BAD_CHARACTERS)
    elif _CONTROL.search(rest):
        raise RemoteProtocolError(ERR_BAD_CHARACTERS)
    args = tuple(arg for arg in rest.split(b" ") if arg)
    return Command(upper, args, rest)


def parse_number(arg: bytes, error: Response = ERR_BAD_NUMBER) -> int:
    """A non-negative decimal argument (RFC 1939 §3), clamped to `NUMBER_CLAMP`."""
    if not arg.isdigit():  # bytes.isdigit is ASCII-only: no signs, no Unicode digits
        raise RemoteProtocolError(error)
    digits = arg.lstrip(b"0") or b"0"
    if len(digits) > 18:
        return NUMBER_CLAMP
    return int(digits)


def decode_base64(data: bytes) -> bytes | None:
    """Strict RFC 4648 §4 base64 (padded, no whitespace, no excess padding), or None.

    Python's decoder accepts excess padding even with ``validate=True``; a SASL
    response is checked against the grammar first so that garbage is refused.
    """
    if not _BASE64.fullmatch(data):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:  # pragma: no cover - the grammar above already refused it
        return None


def multiline(first: Response, lines: Iterable[bytes]) -> bytes:
    """A multi-line response (RFC 1939 §3) whose lines never start with ``.``."""
    body = b"".join(line + b"\r\n" for line in lines)
    return first.to_bytes() + body + b".\r\n"


# --- message bytes ------------------------------------------------------------


def normalize(data: bytes) -> bytes:
    """`data` with CRLF line endings and, unless empty, a final CRLF.

    Bare LF becomes CRLF; a lone CR (not followed by LF) is left alone.
    """
    if data.count(b"\n") != data.count(b"\r\n"):
        # CRLF → LF first so an existing CRLF does not become CRCRLF
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def pop3_size(data: bytes) -> int:
    """The octets of `normalize(data)` without building it: the size the adapter
    gives the core for LIST/STAT, computed on the bytes it will later hand to
    `ServerConnection.send_message`. The same count is cached at delivery as
    `MessageSummary.crlf_size`."""
    return crlf_size(data)


def _top(normalized: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then `lines` lines of the body."""
    if normalized.startswith(b"\r\n"):
        body_start = 2  # no header fields: the blank line comes first
    else:
        separator = normalized.find(b"\r\n\r\n")
        if separator < 0:
            return normalized  # header only, no body
        body_start = separator + 4
    if lines >= normalized.count(b"\r\n", body_start):
        return normalized  # the whole body is asked for (and count() is C-fast)
    end = body_start
    for _ in range(lines):  # bounded by the body's line count, checked above
        end = normalized.index(b"\r\n", end) + 2
    return normalized[:end]


def format_message(data: bytes, top_lines: int | None = None) -> bytes:
    """The lines of a RETR (or, with `top_lines`, TOP) response after the status
    line: CRLF-normalised, byte-stuffed, terminated by ``.`` CRLF."""
    return b"".join(format_message_parts(data, top_lines)[1])


#: octets one C call works on in `format_message_parts` of a large message: on 40 MB,
#: a TOP held the loop 54 ms (CRLF) to 145 ms (bare LF) in a few whole-message calls,
#: and TOP n 19999999 of 20 million empty lines looped in Python once per line
SLICE = 1 << 20


def format_message_parts(
    data: bytes, top_lines: int | None = None, *, crlf_size: int = -1
) -> tuple[int, list[bytes]]:
    """`format_message` in pieces for one gathered write, with the octets of the
    whole normalised message (what RETR's status line announces, counted here
    rather than by a second `pop3_size` pass). Bytes that are already CRLF and
    have no line starting with ``.`` pass through uncopied: `normalize` and
    `bytes.replace` return their argument when they change nothing.

    `crlf_size` is `pop3_size(data)` when the caller knows it (the maildrop's
    count, cached at delivery): equal to ``len(data)``, it says the bytes are
    CRLF already (a bare LF or a missing final CRLF would add octets), and
    `normalize`'s two counts over the message are skipped."""
    if len(data) > SLICE:
        return _format_large(data, top_lines, crlf=crlf_size == len(data))
    body = data if crlf_size == len(data) else normalize(data)
    size = len(body)
    if top_lines is not None:
        body = _top(body, top_lines)
    # RFC 1939 §3: a line starting with the termination octet gets it doubled
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return size, [stuffed, b".\r\n"]


def _format_large(data: bytes, top_lines: int | None, *, crlf: bool) -> tuple[int, list[bytes]]:
    """`format_message_parts` a slice at a time: each piece ends after a LF (or,
    inside a line longer than `SLICE`, anywhere but between CR and LF), so it is
    normalised and stuffed alone. TOP cuts the raw bytes first, after a LF: a LF
    ends a line in the raw bytes exactly where a CRLF does in the normalised
    ones; past the cut the size is counted, nothing built."""
    n = len(data)
    cut = n if top_lines is None else _top_end(data, top_lines)
    size = 0
    out: list[bytes] = []
    start, line_start = 0, True
    while start < n:
        end = min(start + SLICE, n)
        if start < cut < end:
            end = cut
        elif end < n:
            nl = data.rfind(b"\n", start, end)
            if nl >= 0:
                end = nl + 1
            elif data[end - 1] == 0x0D:
                end -= 1  # never between CR and LF
        if start >= cut:  # TOP: counted only
            size += end - start
            if not crlf:
                size += data.count(b"\n", start, end) - data.count(b"\r\n", start, end)
            start = end
            continue
        piece = data[start:end]
        if not crlf and piece.count(b"\n") != piece.count(b"\r\n"):
            piece = piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        size += len(piece)
        stuffed = piece.replace(b"\r\n.", b"\r\n..")
        if line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        out.append(stuffed)
        line_start = piece.endswith(b"\n")
        start = end
    if not data.endswith(b"\n"):  # `normalize`: a final CRLF
        size += 2
        if cut == n:
            out.append(b"\r\n")
    out.append(b".\r\n")
    return size, out


_BLANK_LINE = re.compile(rb"\n\r?\n")


def _top_end(data: bytes, lines: int) -> int:
    """Where TOP's answer ends in the raw bytes: after the header, the empty line
    and `lines` body lines (the end of `data` when they are fewer). A slice at a
    time; within the slice holding the cut, halving it with counts (each count
    at most the slice) until a few KB are left, then a find per line."""
    n = len(data)
    if data.startswith(b"\r\n"):
        pos = 2
    elif data.startswith(b"\n"):
        pos = 1
    else:
        pos = -1
        for start in range(0, n, SLICE):  # the windows overlap by the separator
            m = _BLANK_LINE.search(data, start, min(start + SLICE + 2, n))
            if m is not None:
                pos = m.end()
                break
        if pos < 0:
            return n  # header only, no body
    need = lines
    while need > 0 and pos < n:
        end = min(pos + SLICE, n)
        count = data.count(b"\n", pos, end)
        if count < need:
            need -= count
            pos = end
            continue
        lo, hi = pos, end  # the need-th LF from lo lies in [lo, hi)
        while hi - lo > 4096:
            mid = (lo + hi) // 2
            c = data.count(b"\n", lo, mid)
            if c >= need:
                hi = mid
            else:
                need -= c
                lo = mid
        for _ in range(need):
            lo = data.index(b"\n", lo) + 1
        return lo
    return pos if need <= 0 else n
