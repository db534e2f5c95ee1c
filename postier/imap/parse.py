"""IMAP command parser: a framed `RawCommand` → one typed command dataclass
(RFC 9051 §9 grammar, with RFC 3501 forms IMAP4rev1 clients still send, and the
extensions postier announces: LITERAL+, UTF8=ACCEPT, ENABLE, ID, UNSELECT, MOVE,
UIDPLUS, CONDSTORE/QRESYNC, ESEARCH, SEARCHRES, LIST-EXTENDED, LIST-STATUS,
SPECIAL-USE, CREATE-SPECIAL-USE, MULTIAPPEND, CATENATE, BINARY, QUOTA, WITHIN,
SORT, THREAD, NOTIFY, URLAUTH).

Rules:
- `parse_command` either returns a command or raises `ParseError`, whose
  `response()` is the exact BAD (or, for an unknown CHARSET, NO [BADCHARSET]) to
  send; it is tagged whenever the line starts with a valid tag. Nothing else
  escapes, whatever the bytes.
- Keywords (command names, search keys, fetch items, options) are case-insensitive
  and kept upper-case; system flags are spelled canonically (``\\seen`` →
  ``\\Seen``); keywords (``$Junk``) keep the client's spelling.
- Mailbox names come out as Unicode with "/" as the hierarchy delimiter: decoded from
  modified UTF-7 (RFC 3501 §5.1.3), or taken as UTF-8 when the session enabled
  UTF8=ACCEPT or IMAP4rev2 (``utf8=True``, RFC 6855 §3). A name that is a valid
  astring but not valid modified UTF-7 (or holds control characters) is
  ``NO [CANNOT]``: the command is well-formed, the name is not one we store.
  "INBOX" in any case (also as the first level, "inbox/x") is spelled "INBOX"
  (RFC 9051 §5.1).
- Literals may appear wherever a string may; literal8 (``~{n}``) only as APPEND data
  (RFC 3516 §4.4); a literal that is not literal8 never contains NUL (CHAR8).
- Parentheses nest at most `max_depth` deep (search keys, NOT/OR chains), so a
  hostile command cannot exhaust the stack.
- Numbers: number/nz-number are 32-bit, number64 and mod-sequence values 63-bit
  (RFC 9051 §9, RFC 7162 §7).

Why hand-written: the server-side grammar with our limits, literal framing and typed
output has no Python library (imaplib/imapclient are clients; pymap's parser is
bound to its own server model).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar, Final, Literal, TypeAlias

from postier.imap import utf7
from postier.imap.errors import ParseError
from postier.imap.receiver import RawCommand
from postier.imap.responses import astring as _astring_bytes
from postier.imap.responses import code_badcharset
from postier.imap.sequence import MAX_NUMBER, SequenceSet

MAX_NUMBER64: Final = 2**63 - 1  # number64 = 1*DIGIT ; unsigned 63-bit integer
DEFAULT_MAX_DEPTH: Final = 16

_MONTHS: Final = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}

SYSTEM_FLAGS: Final = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}

#: charsets SEARCH/SORT/THREAD accept (RFC 9051 §6.4.4: US-ASCII and UTF-8 at least)
SEARCH_CHARSETS: Final = frozenset({
    "UTF-8", "US-ASCII", "ISO-8859-1", "ISO-8859-2", "ISO-8859-15", "WINDOWS-1252",
    "KOI8-R", "ISO-2022-JP", "SHIFT_JIS", "EUC-JP", "GB2312", "GBK", "BIG5", "EUC-KR",
})  # fmt: skip

STATUS_ITEMS: Final = frozenset({
    "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
    "HIGHESTMODSEQ", "APPENDLIMIT",
})  # fmt: skip
LIST_SELECT_OPTS: Final = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTS: Final = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
#: RFC 4731, RFC 5182 SAVE, RFC 5267 CONTEXT/UPDATE (PARTIAL takes a range)
SEARCH_RETURN_OPTS: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE"})
SPECIAL_USE_ATTRS: Final = {
    a.upper(): a
    for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
SORT_KEYS: Final = frozenset({
    "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO",
})  # fmt: skip

# ATOM-CHAR = <any CHAR except atom-specials>                          RFC 9051 §9
_ATOM: Final = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")
# ASTRING-CHAR = ATOM-CHAR / resp-specials
_ASTRING_ATOM: Final = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+")
# list-char = ATOM-CHAR / list-wildcards / resp-specials
_LIST_CHARS: Final = re.compile(rb"[\x21\x23-\x27\x2a-\x5b\x5d-\x7a\x7c-\x7e]+")
# quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR = <any TEXT-CHAR except
#   quoted-specials> / "\" quoted-specials / UTF8-2 / UTF8-3 / UTF8-4
_QUOTED: Final = re.compile(rb'"((?:[^"\\\x00]|\\["\\])*)"')
_LITERAL: Final = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")
_SEQSET_CHARS: Final = re.compile(rb"[0-9*:,$]+")
_DIGITS: Final = re.compile(rb"[0-9]+")
_BASE64: Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_SECTION_TEXT: Final = re.compile(rb"[A-Za-z.]+")
_FETCH_NAME: Final = re.compile(rb"[A-Za-z0-9.]+")
# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
_DATE_TIME: Final = re.compile(
    rb'"( ?[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) '
    rb'([+-])([0-9]{2})([0-9]{2})"'
)
# date-text = date-day "-" date-month "-" date-year
_DATE_TEXT: Final = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")


# --- commands ------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    tag: str
    name: ClassVar[str] = ""


@dataclass(frozen=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True)
class StartTLS(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True)
class Authenticate(Command):
    mechanism: str  # upper case
    initial_response: bytes | None = None  # decoded; "=" is b"" (RFC 4959)
    name: ClassVar[str] = "AUTHENTICATE"


@dataclass(frozen=True)
class Login(Command):
    username: str
    password: str
    name: ClassVar[str] = "LOGIN"


@dataclass(frozen=True)
class Enable(Command):
    capabilities: tuple[str, ...]  # upper case
    name: ClassVar[str] = "ENABLE"


@dataclass(frozen=True)
class QResync:
    """QRESYNC select parameter (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence: SequenceSet | None = None  # seq-match-data: sequence numbers …
    known_sequence_uids: SequenceSet | None = None  # … and their UIDs


@dataclass(frozen=True)
class Select(Command):
    mailbox: str
    readonly: bool = False  # EXAMINE
    condstore: bool = False
    qresync: QResync | None = None
    name: ClassVar[str] = "SELECT"


@dataclass(frozen=True)
class Examine(Select):
    """EXAMINE: a read-only SELECT (``case Select()`` matches both)."""

    readonly: bool = True
    name: ClassVar[str] = "EXAMINE"


@dataclass(frozen=True)
class Create(Command):
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 §3 USE (\Sent ...)
    name: ClassVar[str] = "CREATE"


@dataclass(frozen=True)
class Delete(Command):
    mailbox: str
    name: ClassVar[str] = "DELETE"


@dataclass(frozen=True)
class Rename(Command):
    old: str
    new: str
    name: ClassVar[str] = "RENAME"


@dataclass(frozen=True)
class Subscribe(Command):
    mailbox: str
    name: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True)
class Unsubscribe(Command):
    mailbox: str
    name: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True)
class List(Command):
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()  # SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
    returns: frozenset[str] = frozenset()  # SUBSCRIBED CHILDREN SPECIAL-USE STATUS
    status_items: tuple[str, ...] = ()  # RETURN (STATUS (...)), RFC 5819
    extended: bool = False  # any LIST-EXTENDED syntax was used (RFC 5258 §3)
    name: ClassVar[str] = "LIST"


@dataclass(frozen=True)
class Lsub(Command):
    reference: str
    pattern: str
    name: ClassVar[str] = "LSUB"


@dataclass(frozen=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]  # upper case, in the client's order
    name: ClassVar[str] = "STATUS"


@dataclass(frozen=True)
class CatPart:
    """One CATENATE part (RFC 4469 §5): TEXT octets, or a URL naming a message
    or a part of one."""

    text: bytes | Path | None = None  # a Path: a large TEXT the adapter spooled
    url: str | None = None
    binary: bool = False  # TEXT sent as literal8


@dataclass(frozen=True)
class AppendMessage:
    data: bytes | Path  # a Path: a large literal the adapter spooled to a file
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    binary: bool = False  # sent as literal8 (RFC 3516 §4.4)
    utf8: bool = False  # sent as UTF8 (~{n}) (RFC 6855 §4)
    catenate: tuple[CatPart, ...] | None = None  # CATENATE (...) instead of data


@dataclass(frozen=True)
class Append(Command):
    mailbox: str
    messages: tuple[AppendMessage, ...]  # more than one: MULTIAPPEND (RFC 3502)
    name: ClassVar[str] = "APPEND"


@dataclass(frozen=True)
class Idle(Command):
    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True)
class Expunge(Command):
    uids: SequenceSet | None = None  # UID EXPUNGE (RFC 4315 §2.1)
    name: ClassVar[str] = "EXPUNGE"


# --- search keys (RFC 9051 §6.4.4) ---
@dataclass(frozen=True)
class SearchAll:
    pass


@dataclass(frozen=True)
class SearchSet:
    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True)
class SearchFlag:
    flag: str  # "\\Seen", "\\Recent", or a keyword
    present: bool = True


@dataclass(frozen=True)
class SearchDate:
    field: Literal["internal", "sent"]
    op: Literal["before", "on", "since"]
    value: date


@dataclass(frozen=True)
class SearchHeader:
    header: str  # "From", "To", "Cc", "Bcc", "Subject", or a HEADER name as sent
    value: str


@dataclass(frozen=True)
class SearchText:
    where: Literal["body", "text"]
    value: str


@dataclass(frozen=True)
class SearchSize:
    op: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True)
class SearchModSeq:
    modseq: int  # RFC 7162 §3.1.5
    entry: str | None = None
    entry_type: str | None = None  # "priv", "shared", "all"


@dataclass(frozen=True)
class SearchAge:
    op: Literal["older", "younger"]  # RFC 5032
    seconds: int


@dataclass(frozen=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class SearchAnd:
    keys: tuple[SearchKey, ...]


SearchKey: TypeAlias = (
    SearchAll | SearchSet | SearchFlag | SearchDate | SearchHeader | SearchText | SearchSize
    | SearchModSeq | SearchAge | SearchNot | SearchOr | SearchAnd
)  # fmt: skip


@dataclass(frozen=True)
class Search(Command):
    key: SearchKey
    uid: bool = False
    charset: str | None = None
    #: None: plain SEARCH (answer ``* SEARCH``); otherwise ESEARCH with these options
    #: (``RETURN ()`` means ALL, RFC 4731 §3.1)
    returns: tuple[str, ...] | None = None
    #: RETURN (PARTIAL lo:hi), RFC 5267 §4.4: the range as written
    partial: tuple[int, int] | None = None
    name: ClassVar[str] = "SEARCH"


@dataclass(frozen=True)
class SortCriterion:
    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True)
class Sort(Command):
    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    uid: bool = False
    #: RETURN options (ESORT, RFC 5267 §3): as for `Search`
    returns: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None
    name: ClassVar[str] = "SORT"


@dataclass(frozen=True)
class CancelUpdate(Command):
    tags: tuple[str, ...]  # RFC 5267 §4.3.5
    name: ClassVar[str] = "CANCELUPDATE"


@dataclass(frozen=True)
class Thread(Command):
    algorithm: str  # ORDEREDSUBJECT, REFERENCES, ...
    charset: str
    key: SearchKey
    uid: bool = False
    name: ClassVar[str] = "THREAD"


# --- fetch ---
@dataclass(frozen=True)
class Section:
    """section-spec (RFC 9051 §9): `part` numbers, then HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, TEXT or MIME (or nothing: the whole part)."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()  # HEADER.FIELDS names as sent; compare case-insensitively

    def __str__(self) -> str:
        out = ".".join(str(p) for p in self.part)
        if self.text is not None:
            out = f"{out}.{self.text}" if out else self.text
        if self.fields:
            names = " ".join(_astring_bytes(f).decode("utf-8", "replace") for f in self.fields)
            out += f" ({names})"
        return out


@dataclass(frozen=True)
class FetchAtt:
    """One fetch-att. `name` is ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER,
    RFC822.SIZE, RFC822.TEXT, BODY, BODYSTRUCTURE, UID, MODSEQ, BINARY, BINARY.SIZE;
    BODY with a `section` is BODY[section] (BODY.PEEK when `peek`)."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None  # (origin, length)
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """Fetching this sets \\Seen (RFC 9051 §6.4.5; RFC 3516 §4.2 for BINARY)."""
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name in ("BODY", "BINARY") and self.section is not None and not self.peek

    def response_name(self) -> str:
        """The item name in the FETCH response: ``BODY[1.TEXT]<0>`` for
        ``BODY.PEEK[1.TEXT]<0.100>`` (RFC 9051 §7.5.2: only the origin is echoed)."""
        if self.section is None:
            return self.name
        out = f"{self.name}[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out


FETCH_MACROS: Final = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_FETCH: Final = frozenset({
    "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
    "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ",
})  # fmt: skip
#: the fetch items without a section, one (immutable) instance each
SIMPLE_ATTS: Final = {name: FetchAtt(name) for name in _SIMPLE_FETCH}


@dataclass(frozen=True)
class Fetch(Command):
    set: SequenceSet
    items: tuple[FetchAtt, ...]
    uid: bool = False
    changed_since: int | None = None  # RFC 7162 §3.1.4.1
    vanished: bool = False  # RFC 7162 §3.2.6
    name: ClassVar[str] = "FETCH"


@dataclass(frozen=True)
class Store(Command):
    set: SequenceSet
    mode: Literal["add", "remove", "replace"]
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None  # RFC 7162 §3.1.3
    name: ClassVar[str] = "STORE"


@dataclass(frozen=True)
class Copy(Command):
    set: SequenceSet
    mailbox: str
    uid: bool = False
    name: ClassVar[str] = "COPY"


@dataclass(frozen=True)
class Move(Command):
    set: SequenceSet
    mailbox: str
    uid: bool = False
    name: ClassVar[str] = "MOVE"


@dataclass(frozen=True)
class Id(Command):
    params: tuple[tuple[str, str | None], ...] | None  # None: "ID NIL"
    name: ClassVar[str] = "ID"


@dataclass(frozen=True)
class GetQuota(Command):
    root: str
    name: ClassVar[str] = "GETQUOTA"


@dataclass(frozen=True)
class GetQuotaRoot(Command):
    mailbox: str
    name: ClassVar[str] = "GETQUOTAROOT"


@dataclass(frozen=True)
class SetQuota(Command):
    root: str
    limits: tuple[tuple[str, int], ...] = field(default=())  # (resource upper case, limit)
    name: ClassVar[str] = "SETQUOTA"


# --- the reader ----------------------------------------------------------------------
class _Reader:
    """A cursor over the segments and literals of one command."""

    def __init__(self, raw: RawCommand, utf8: bool, max_depth: int) -> None:
        self.segments = raw.segments
        self.literals = raw.literals
        self.index = 0
        self.data = raw.segments[0] if raw.segments else b""
        self.pos = 0
        self.tag: str | None = None
        self.utf8 = utf8
        self.max_depth = max_depth

    def error(self, text: str, code: str | None = None, status: str = "BAD") -> ParseError:
        return ParseError(text, tag=self.tag, code=code, status=status)

    # low level
    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.data) and self.index == len(self.segments) - 1

    def end(self) -> None:
        if not self.at_end():
            raise self.error("Unexpected extra arguments")

    def sp(self) -> None:
        if self.peek() != 0x20:
            if self.pos >= len(self.data):
                raise self.error("Missing argument")
            raise self.error("Expected space")
        self.pos += 1

    def try_char(self, char: bytes) -> bool:
        if self.data[self.pos : self.pos + 1] == char:
            self.pos += 1
            return True
        return False

    def char(self, char: bytes) -> None:
        if not self.try_char(char):
            if self.pos >= len(self.data):
                raise self.error("Missing argument")
            raise self.error(f"Expected {char.decode()}")

    def match(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        m = pattern.match(self.data, self.pos)
        if m is not None:
            self.pos = m.end()
        return m

    # atoms, numbers
    def atom(self, what: str = "atom") -> str:
        m = self.match(_ATOM)
        if m is None:
            raise self.error(f"Expected {what}")
        return m.group().decode("ascii")

    def keyword(self, what: str = "keyword") -> str:
        return self.atom(what).upper()

    def number(self, *, nz: bool = False, limit: int = MAX_NUMBER, what: str = "number") -> int:
        # number = 1*DIGIT; nz-number = digit-nz *DIGIT; number64 (RFC 9051 §9)
        m = self.match(_DIGITS)
        if m is None:
            raise self.error(f"Expected {what}")
        digits = m.group()
        if len(digits) > 20 or int(digits) > limit:
            raise self.error(f"{what[0].upper()}{what[1:]} out of range")
        if nz and int(digits) == 0:
            raise self.error(f"{what[0].upper()}{what[1:]} must not be zero")
        return int(digits)

    def number64(self, what: str = "number") -> int:
        return self.number(limit=MAX_NUMBER64, what=what)

    def sequence_set(self) -> SequenceSet:
        m = self.match(_SEQSET_CHARS)
        if m is None:
            raise self.error("Expected sequence set")
        try:
            return SequenceSet.parse(m.group().decode("ascii"))
        except ValueError:
            raise self.error("Invalid sequence set") from None

    # strings
    def literal(self, *, allow_binary: bool = False) -> tuple[bytes, bool]:
        data, binary = self.message_literal(allow_binary=allow_binary)
        if isinstance(data, Path):  # the adapter spools only APPEND message data
            raise self.error("Literal too large", "TOOBIG")
        return data, binary

    def message_literal(self, *, allow_binary: bool = False) -> tuple[bytes | Path, bool]:
        """A literal that may have been spooled to a file (APPEND message data)."""
        # literal = "{" number64 ["+"] "}" CRLF *CHAR8 ; literal8 = "~{" ...
        m = _LITERAL.match(self.data, self.pos)
        if m is None or m.end() != len(self.data) or self.index >= len(self.literals):
            raise self.error("Invalid literal")
        binary = bool(m.group(1))
        if binary and not allow_binary:
            raise self.error("literal8 is only allowed for APPEND data")
        lit = self.literals[self.index]
        nul = lit.file.has_nul if lit.file is not None else b"\x00" in lit.data
        if not binary and nul:
            raise self.error("NUL in literal (use literal8)")  # CHAR8 = %x01-ff
        if lit.streamed and lit.file is None:
            raise self.error("Literal too large", "TOOBIG")  # pragma: no cover - adapter bug
        self.index += 1
        self.data = self.segments[self.index]
        self.pos = 0
        return (lit.file.path if lit.file is not None else lit.data), binary

    def quoted(self) -> bytes:
        m = self.match(_QUOTED)
        if m is None:
            rest = self.data[self.pos :]
            if b"\x00" in rest:
                raise self.error("NUL in quoted string")
            if re.match(rb'"(?:[^"\\]|\\["\\])*\\(?:[^"\\]|$)', rest):
                raise self.error("Invalid escape in quoted string")
            raise self.error("Unterminated quoted string")
        return re.sub(rb'\\(["\\])', rb"\1", m.group(1))

    def string(self, what: str = "string") -> bytes:
        c = self.peek()
        if c == 0x22:  # DQUOTE
            return self.quoted()
        if c == 0x7B or (c == 0x7E and self.data[self.pos + 1 : self.pos + 2] == b"{"):
            return self.literal()[0]  # "~{" is refused there: only APPEND takes literal8
        raise self.error(f"Expected {what}")

    def astring(self, what: str = "string") -> bytes:
        # astring = 1*ASTRING-CHAR / string
        c = self.peek()
        if c == 0x22 or c == 0x7B or (c == 0x7E and self.data[self.pos + 1 : self.pos + 2] == b"{"):
            return self.string(what)
        m = self.match(_ASTRING_ATOM)
        if m is None:
            raise self.error(f"Expected {what}")
        return m.group()

    def nstring(self) -> bytes | None:
        # nstring = string / nil
        if self.peek() in (0x4E, 0x6E):  # N/n
            save = self.pos
            word = self.match(_ATOM)
            if word is not None and word.group().upper() == b"NIL":
                return None
            self.pos = save
        return self.string()

    def text(self, data: bytes, what: str) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"{what} is not valid UTF-8") from None

    def mailbox_name(self, data: bytes) -> str:
        # mailbox = "INBOX" / astring ; INBOX is case-insensitive (RFC 9051 §5.1)
        if self.utf8:
            name = self.text(data, "Mailbox name")  # RFC 6855 §3
        else:
            try:
                name = utf7.decode(data.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                # a well-formed astring naming no valid mailbox: NO, not BAD
                raise self.error(
                    "Mailbox name is not valid modified UTF-7", code="CANNOT", status="NO"
                ) from None
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            raise self.error("Mailbox name contains control characters", code="CANNOT", status="NO")
        if name.upper() == "INBOX":
            return "INBOX"
        if name[:6].upper() == "INBOX/":
            return "INBOX" + name[5:]
        return name

    def mailbox(self) -> str:
        return self.mailbox_name(self.astring("mailbox name"))

    def list_mailbox(self) -> str:
        # list-mailbox = 1*list-char / string
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            data = self.string()
        else:
            m = self.match(_LIST_CHARS)
            if m is None:
                raise self.error("Expected mailbox pattern")
            data = m.group()
        return self.mailbox_name(data)

    # flags
    def flag(self) -> str:
        # flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" /
        #        flag-keyword / flag-extension ; flag-extension = "\" atom
        if self.try_char(b"\\"):
            atom = self.atom("flag")
            return SYSTEM_FLAGS.get("\\" + atom.upper(), "\\" + atom)
        return self.atom("flag")

    def flag_list(self) -> tuple[str, ...]:
        # flag-list = "(" [flag *(SP flag)] ")"
        self.char(b"(")
        flags: list[str] = []
        if not self.try_char(b")"):
            while True:
                flags.append(self.flag())
                if self.try_char(b")"):
                    break
                self.sp()
        return tuple(flags)

    def paren_atoms(self, what: str) -> list[str]:
        """ "(" [atom *(SP atom)] ")", upper-cased."""
        self.char(b"(")
        out: list[str] = []
        if self.try_char(b")"):
            return out
        while True:
            out.append(self.keyword(what))
            if self.try_char(b")"):
                return out
            self.sp()

    # dates
    def date(self) -> date:
        # date = date-text / DQUOTE date-text DQUOTE
        quoted = self.try_char(b'"')
        m = self.match(_DATE_TEXT)
        if m is None or (quoted and not self.try_char(b'"')):
            raise self.error("Invalid date")
        month = _MONTHS.get(m.group(2).decode("ascii").upper())
        try:
            if month is None:
                raise ValueError
            return date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise self.error("Invalid date") from None

    def date_time(self) -> datetime:
        m = self.match(_DATE_TIME)
        if m is None:
            raise self.error("Invalid date-time")
        day, mon, year, hh, mm, ss, sign, zh, zm = (g.decode("ascii") for g in m.groups())
        month = _MONTHS.get(mon.upper())
        try:
            if month is None or int(zm) > 59:
                raise ValueError
            offset = timedelta(hours=int(zh), minutes=int(zm))
            tz = timezone(-offset if sign == "-" else offset)
            return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
        except ValueError:
            raise self.error("Invalid date-time") from None


# --- the parser ----------------------------------------------------------------------
def parse_command(
    raw: RawCommand, *, utf8: bool = False, max_depth: int = DEFAULT_MAX_DEPTH
) -> Command:
    """Parse one framed command; `ParseError` (with the reply) when it is not valid.

    `utf8`: the session enabled UTF8=ACCEPT or IMAP4rev2 (mailbox names are UTF-8).
    `max_depth`: the deepest nesting of parentheses / NOT / OR accepted."""
    if raw.tag is not None and len(raw.segments) == 1:
        cmd = _short_command(raw.tag, raw.segments[0])
        if cmd is not None:
            return cmd
    return _parse(raw, utf8, max_depth)


def _parse(raw: RawCommand, utf8: bool, max_depth: int) -> Command:
    """`parse_command` by the whole grammar."""
    r = _Reader(raw, utf8, max_depth)
    # command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF
    if raw.tag is None or not r.data.startswith(raw.tag.encode("ascii")):
        raise r.error("Missing or invalid tag" if r.data.strip() else "Empty command")
    r.tag = raw.tag
    r.pos = len(raw.tag)
    if r.peek() is None:
        raise r.error("Missing command")
    r.sp()
    word = r.match(_ATOM)
    if word is None:
        raise r.error("Missing command")
    name = word.group().decode("ascii").upper()
    uid = False
    if name == "UID":
        # uid = "UID" SP (copy / move / fetch / search / store / uid-expunge)
        r.sp()
        word = r.match(_ATOM)
        name = word.group().decode("ascii").upper() if word else ""
        if name not in _UID_COMMANDS:
            raise r.error("Unknown UID command")
        uid = True
    handler = _COMMANDS.get(name)
    if handler is None:
        raise r.error("Unknown command")
    try:
        return handler(r, r.tag, uid)
    except RecursionError:  # pragma: no cover - max_depth keeps far below the limit
        raise r.error("Command nested too deeply") from None


# The commonest command shapes, read by one regex rather than the whole parser: a
# command without arguments (NOOP, CHECK, …), and [UID] FETCH of a sequence set and
# one fetch item without section (``a UID FETCH 12 FLAGS``), on one line. What
# `_short_command` returns is what the full parser returns for the same line; it
# returns None for anything else, and the full parser decides (every error too).
# The keywords are matched case-insensitively (ASCII only: a bytes pattern), as
# `_Reader.keyword` upper-cases them.
_SHORT: Final = re.compile(rb" (?:(UID) )?([A-Z]+)(?: ([0-9*:,$]+) ([A-Z0-9.]+))?", re.I)


def _short_command(tag: str, line: bytes) -> Command | None:
    """`parse_command` of a one-line command of the shapes above (`_SHORT`), else None."""
    head = tag.encode("ascii")
    if not line.startswith(head):
        return None
    m = _SHORT.fullmatch(line, len(head))
    if m is None:
        return None
    uid, word, seq_text, item = m.groups()
    name = word.decode("ascii").upper()
    if seq_text is None:  # tag SP atom: a command without arguments, not "UID x"
        cls = _NO_ARGS.get(name)
        return cls(tag) if cls is not None and uid is None else None
    if name != "FETCH":
        return None
    try:
        seq = SequenceSet.parse(seq_text.decode("ascii"))
    except ValueError:
        return None  # the full parser words the error
    att = item.decode("ascii").upper()
    macro = FETCH_MACROS.get(att)
    if macro is not None:
        items = [SIMPLE_ATTS[n] for n in macro]
    elif att in SIMPLE_ATTS:
        items = [SIMPLE_ATTS[att]]
    else:
        return None
    return Fetch(tag, seq, _implied_items(items, uid is not None, None), uid is not None)


def _no_args(cls: type[Command]) -> Callable[[_Reader, str, bool], Command]:
    def parse(r: _Reader, tag: str, uid: bool) -> Command:
        r.end()
        return cls(tag)

    return parse


# authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]
# initial-resp = (base64 / "=")                                   RFC 9051 §9, RFC 4959
def _authenticate(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    mechanism = r.keyword("mechanism")
    initial: bytes | None = None
    if not r.at_end():
        r.sp()
        m = r.match(_BASE64)
        token = m.group() if m else b""
        if token == b"=":
            initial = b""
        elif token:
            try:
                initial = base64.b64decode(token, validate=True)
            except binascii.Error:
                raise r.error("Invalid base64 in initial response") from None
        else:
            raise r.error("Invalid base64 in initial response")
    r.end()
    return Authenticate(tag, mechanism, initial)


# login = "LOGIN" SP userid SP password ; userid = astring ; password = astring
def _login(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    user = r.text(r.astring("user name"), "User name")
    r.sp()
    password = r.text(r.astring("password"), "Password")
    r.end()
    return Login(tag, user, password)


# enable = "ENABLE" 1*(SP capability)                                 RFC 5161 §4
def _enable(r: _Reader, tag: str, uid: bool) -> Command:
    caps: list[str] = []
    while not r.at_end():
        r.sp()
        caps.append(r.keyword("capability"))
    if not caps:
        raise r.error("Missing argument")
    return Enable(tag, tuple(caps))


# select = "SELECT" SP mailbox [select-params]
# select-params = SP "(" select-param *(SP select-param) ")"
# select-param = "CONDSTORE" / "QRESYNC" SP "(" uidvalidity SP mod-sequence-value
#                [SP known-uids] [SP seq-match-data] ")"           RFC 7162 §7
# seq-match-data = "(" known-sequence-set SP known-uid-set ")"
def _select(readonly: bool) -> Callable[[_Reader, str, bool], Command]:
    def parse(r: _Reader, tag: str, uid: bool) -> Command:
        r.sp()
        name = r.mailbox()
        condstore = False
        qresync: QResync | None = None
        if not r.at_end():
            r.sp()
            r.char(b"(")
            while True:
                param = r.keyword("select parameter")
                if param == "CONDSTORE" and not condstore:
                    condstore = True
                elif param == "QRESYNC" and qresync is None:
                    r.sp()
                    qresync = _qresync(r)
                else:
                    raise r.error(f"Unknown or repeated select parameter {param}")
                if r.try_char(b")"):
                    break
                r.sp()
        r.end()
        cls = Examine if readonly else Select
        return cls(tag, name, readonly, condstore, qresync)

    return parse


def _qresync(r: _Reader) -> QResync:
    r.char(b"(")
    uidvalidity = r.number(nz=True, what="UIDVALIDITY")
    r.sp()
    modseq = r.number(nz=True, limit=MAX_NUMBER64, what="mod-sequence")
    known_uids = seq = seq_uids = None
    if r.try_char(b" "):
        more = True
        if r.peek() != 0x28:
            known_uids = r.sequence_set()
            if known_uids.saved or known_uids.has_star:
                raise r.error("Invalid known-uids")
            more = r.try_char(b" ")
        if more:
            r.char(b"(")
            seq = r.sequence_set()
            r.sp()
            seq_uids = r.sequence_set()
            r.char(b")")
    r.char(b")")
    return QResync(uidvalidity, modseq, known_uids, seq, seq_uids)


# create = "CREATE" SP mailbox [create-params]
# create-params = SP "(" create-param *(SP create-param) ")"          RFC 4466
# create-param = "USE" SP "(" [use-attr *(SP use-attr)] ")"           RFC 6154 §6
def _create(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    name = r.mailbox()
    uses: list[str] = []
    if not r.at_end():
        r.sp()
        r.char(b"(")
        while True:
            param = r.keyword("create parameter")
            if param != "USE":
                raise r.error(f"Unknown create parameter {param}")
            r.sp()
            r.char(b"(")
            if not r.try_char(b")"):
                while True:
                    r.char(b"\\")
                    attr = "\\" + r.atom("special-use attribute")
                    uses.append(SPECIAL_USE_ATTRS.get(attr.upper(), attr))
                    if r.try_char(b")"):
                        break
                    r.sp()
            if r.try_char(b")"):
                break
            r.sp()
    r.end()
    return Create(tag, name, tuple(uses))


def _one_mailbox(cls: type[Delete | Subscribe | Unsubscribe | GetQuotaRoot]
                 ) -> Callable[[_Reader, str, bool], Command]:  # fmt: skip
    def parse(r: _Reader, tag: str, uid: bool) -> Command:
        r.sp()
        name = r.mailbox()
        r.end()
        return cls(tag, name)

    return parse


# rename = "RENAME" SP mailbox SP mailbox
def _rename(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    new = r.mailbox()
    r.end()
    return Rename(tag, old, new)


# list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
# list-select-opts = "(" [...] ")" ; mbox-or-pat = list-mailbox / patterns
# patterns = "(" list-mailbox *(SP list-mailbox) ")"
# list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
#                                                   RFC 5258 §6, RFC 5819, RFC 6154
def _list(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    extended = False
    selection: set[str] = set()
    if r.peek() == 0x28:
        extended = True
        for opt in r.paren_atoms("selection option"):
            if opt not in LIST_SELECT_OPTS:
                raise r.error(f"Unknown LIST selection option {opt}")  # RFC 5258 §3
            selection.add(opt)
        # RFC 5258 §3: RECURSIVEMATCH needs another selection option
        if "RECURSIVEMATCH" in selection and selection <= {"RECURSIVEMATCH", "REMOTE"}:
            raise r.error("RECURSIVEMATCH requires another selection option")
        r.sp()
    reference = r.mailbox()
    r.sp()
    patterns: list[str] = []
    if r.try_char(b"("):
        extended = True
        while True:
            patterns.append(r.list_mailbox())
            if r.try_char(b")"):
                break
            r.sp()
    else:
        patterns.append(r.list_mailbox())
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if not r.at_end():
        r.sp()
        if r.keyword("RETURN") != "RETURN":
            raise r.error("Expected RETURN")
        extended = True
        r.sp()
        r.char(b"(")
        if not r.try_char(b")"):
            while True:
                opt = r.keyword("return option")
                if opt not in LIST_RETURN_OPTS:
                    raise r.error(f"Unknown LIST return option {opt}")
                returns.add(opt)
                if opt == "STATUS":
                    r.sp()
                    status_items = _status_items(r)  # RFC 5819 §2
                if r.try_char(b")"):
                    break
                r.sp()
    r.end()
    return List(
        tag, reference, tuple(patterns), frozenset(selection), frozenset(returns),
        status_items, extended,
    )  # fmt: skip


# lsub = "LSUB" SP mailbox SP list-mailbox
def _lsub(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    reference = r.mailbox()
    r.sp()
    pattern = r.list_mailbox()
    r.end()
    return Lsub(tag, reference, pattern)


# status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"
def _status(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    name = r.mailbox()
    r.sp()
    items = _status_items(r)
    r.end()
    return Status(tag, name, items)


def _status_items(r: _Reader) -> tuple[str, ...]:
    items = r.paren_atoms("status item")
    if not items:
        raise r.error("Missing status item")
    for item in items:
        if item not in STATUS_ITEMS:
            raise r.error(f"Unknown status item {item}")
    return tuple(items)


# append = "APPEND" SP mailbox 1*append-message                      RFC 3502
# append-message = append-opts SP append-data
# append-opts = [SP flag-list] [SP date-time] *(SP append-ext)
# append-data = literal / literal8 / append-data-ext
# append-data-ext =/ "UTF8" SP "(" literal8 ")"                     RFC 6855 §4
def _append(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    name = r.mailbox()
    messages: list[AppendMessage] = []
    while not r.at_end() or not messages:
        r.sp()
        flags: tuple[str, ...] = ()
        when: datetime | None = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            r.sp()
        if r.peek() == 0x22:
            when = r.date_time()
            r.sp()
        if r.peek() in (0x43, 0x63):  # "CATENATE"
            messages.append(AppendMessage(b"", flags, when, catenate=_catenate(r)))
            continue
        utf8 = False
        if r.peek() in (0x55, 0x75):  # "UTF8"
            if r.keyword("append data") != "UTF8":
                raise r.error("Expected message literal")
            r.sp()
            r.char(b"(")
            utf8 = True
        if r.peek() not in (0x7B, 0x7E):
            raise r.error("Expected message literal")
        data, binary = r.message_literal(allow_binary=True)
        if utf8:
            if not binary:
                raise r.error("UTF8 data must be a literal8")
            r.char(b")")
        messages.append(AppendMessage(data, flags, when, binary, utf8))
    return Append(tag, name, tuple(messages))


# append-data =/ "CATENATE" SP "(" cat-part *(SP cat-part) ")"     RFC 4469 §5
# cat-part = text-literal / url ; text-literal = "TEXT" SP literal ; url = "URL" SP astring
# (TEXT may be a literal8 with BINARY, RFC 4469 §5 / RFC 3516 §4.4)
def _catenate(r: _Reader) -> tuple[CatPart, ...]:
    if r.keyword("append data") != "CATENATE":
        raise r.error("Expected message literal")
    r.sp()
    r.char(b"(")
    parts: list[CatPart] = []
    while True:
        kind = r.keyword("CATENATE part")
        r.sp()
        if kind == "TEXT":
            if r.peek() not in (0x7B, 0x7E):
                raise r.error("Expected TEXT literal")
            data, binary = r.message_literal(allow_binary=True)
            parts.append(CatPart(text=data, binary=binary))
        elif kind == "URL":
            parts.append(CatPart(url=r.text(r.astring("URL"), "URL")))
        else:
            raise r.error(f"Unknown CATENATE part {kind}")
        if r.try_char(b")"):
            return tuple(parts)
        r.sp()


# search = "SEARCH" [search-return-opts] SP search-program
# search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)
def _search(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    returns, partial = _search_return_opts(r)
    charset: str | None = None
    save = r.pos
    if r.match(_ATOM) is not None and r.data[save : r.pos].upper() == b"CHARSET":
        r.sp()
        charset = _charset(r)
        r.sp()
    else:
        r.pos = save
    key = _search_program(r, charset)
    return Search(tag, key, uid, charset, returns, partial)


# search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"
# search-return-opt  = "MIN" / "MAX" / "ALL" / "COUNT" / "SAVE"          RFC 4731, 5182
# search-return-opt  =/ "CONTEXT" / "UPDATE" / "PARTIAL" SP partial-range  RFC 5267 §5
# partial-range      = nz-number ":" nz-number
def _search_return_opts(r: _Reader) -> tuple[tuple[str, ...] | None, tuple[int, int] | None]:
    """The RETURN options and the PARTIAL range, then the space after them; (None,
    None) when there is no RETURN."""
    save = r.pos
    if r.match(_ATOM) is None or r.data[save : r.pos].upper() != b"RETURN":
        r.pos = save
        return None, None
    r.sp()
    r.char(b"(")
    opts: list[str] = []
    partial: tuple[int, int] | None = None
    while not r.try_char(b")"):
        if opts:
            r.sp()
        opt = r.keyword("search return option")
        if opt == "PARTIAL":
            if partial is not None:
                raise r.error("PARTIAL can be used only once")  # RFC 5267 §4.4
            r.sp()
            lo = r.number(nz=True, what="partial range")
            r.char(b":")
            partial = (lo, r.number(nz=True, what="partial range"))
        elif opt not in SEARCH_RETURN_OPTS:
            raise r.error(f"Unknown search return option {opt}")
        opts.append(opt)
    if partial is not None and "ALL" in opts:
        raise r.error("PARTIAL conflicts with ALL")  # RFC 5267 §4.4
    r.sp()
    return tuple(dict.fromkeys(opts)), partial


def _charset(r: _Reader) -> str:
    # charset = atom / quoted
    raw = r.quoted() if r.peek() == 0x22 else r.atom("charset").encode("ascii")
    name = raw.decode("ascii", "replace").upper()
    if name not in SEARCH_CHARSETS:
        # RFC 9051 §6.4.4: an unsupported charset is a tagged NO with BADCHARSET
        raise r.error("Unsupported charset", code=code_badcharset(), status="NO")
    return name


def _search_program(r: _Reader, charset: str | None) -> SearchKey:
    keys = [_search_key(r, charset, 0)]
    while not r.at_end():
        r.sp()
        keys.append(_search_key(r, charset, 0))
    return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))


_FLAG_KEYS: Final = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True), "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False), "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "RECENT": ("\\Recent", True), "OLD": ("\\Recent", False),  # IMAP4rev1
}  # fmt: skip
_HEADER_KEYS: Final = {"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc",
                       "SUBJECT": "Subject"}  # fmt: skip
_ARG_KEYS: Final = frozenset({
    "FROM", "TO", "CC", "BCC", "SUBJECT", "BODY", "TEXT", "BEFORE", "ON", "SINCE",
    "SENTBEFORE", "SENTON", "SENTSINCE", "KEYWORD", "UNKEYWORD", "HEADER", "LARGER",
    "SMALLER", "NOT", "OR", "UID", "MODSEQ", "OLDER", "YOUNGER",
})  # fmt: skip
_DateKey: TypeAlias = tuple[Literal["internal", "sent"], Literal["before", "on", "since"]]
_DATE_KEYS: Final[dict[str, _DateKey]] = {
    "BEFORE": ("internal", "before"), "ON": ("internal", "on"), "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"), "SENTON": ("sent", "on"), "SENTSINCE": ("sent", "since"),
}  # fmt: skip


# search-key = "ALL" / "ANSWERED" / "BCC" SP astring / "BEFORE" SP date / ... /
#              "NOT" SP search-key / "OR" SP search-key SP search-key / ... /
#              sequence-set / "(" search-key *(SP search-key) ")"   RFC 9051 §9
# search-key =/ "MODSEQ" [search-modsequence-ext] SP mod-sequence-valzer  RFC 7162
# search-key =/ ( "OLDER" / "YOUNGER" ) SP nz-number                    RFC 5032
def _search_key(r: _Reader, charset: str | None, depth: int) -> SearchKey:
    if depth >= r.max_depth:
        raise r.error("Search key nested too deeply")
    c = r.peek()
    if c == 0x28:  # "("
        r.pos += 1
        keys = [_search_key(r, charset, depth + 1)]
        while not r.try_char(b")"):
            r.sp()
            keys.append(_search_key(r, charset, depth + 1))
        return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
    if c is not None and (0x30 <= c <= 0x39 or c in (0x2A, 0x24)):  # digit, "*", "$"
        return SearchSet(r.sequence_set())
    word = r.keyword("search key")
    if word == "ALL":
        return SearchAll()
    if word in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[word]
        return SearchFlag(flag, present)
    if word == "NEW":  # IMAP4rev1: RECENT UNSEEN
        return SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False)))
    if word not in _ARG_KEYS:
        raise r.error(f"Unknown search key {word}")
    r.sp()
    if word in _HEADER_KEYS:
        return SearchHeader(_HEADER_KEYS[word], _search_string(r, charset))
    if word in ("BODY", "TEXT"):
        return SearchText("body" if word == "BODY" else "text", _search_string(r, charset))
    if word in _DATE_KEYS:
        which, op = _DATE_KEYS[word]
        return SearchDate(which, op, r.date())
    if word in ("KEYWORD", "UNKEYWORD"):
        flag = r.flag()  # flag-keyword = atom (a "\" flag is accepted like Dovecot)
        return SearchFlag(flag, word == "KEYWORD")
    if word == "HEADER":
        name = r.text(r.astring("header name"), "Header name")
        if not name or any(ord(ch) <= 0x20 or ord(ch) > 0x7E or ch == ":" for ch in name):
            raise r.error("Invalid header name")  # RFC 5322 §3.6.8 ftext
        r.sp()
        return SearchHeader(name, _search_string(r, charset))
    if word in ("LARGER", "SMALLER"):
        return SearchSize("larger" if word == "LARGER" else "smaller", r.number64("size"))
    if word == "NOT":
        return SearchNot(_search_key(r, charset, depth + 1))
    if word == "OR":
        left = _search_key(r, charset, depth + 1)
        r.sp()
        return SearchOr(left, _search_key(r, charset, depth + 1))
    if word == "UID":
        return SearchSet(r.sequence_set(), uid=True)
    if word == "MODSEQ":
        # search-modsequence-ext = SP entry-name SP entry-type-req
        # entry-name = entry-flag-name ; entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE
        entry = entry_type = None
        if r.peek() == 0x22:
            entry = r.text(r.quoted(), "Entry name")
            if not entry.lower().startswith("/flags/"):
                raise r.error("Invalid MODSEQ entry name")
            r.sp()
            entry_type = r.keyword("entry type").lower()
            if entry_type not in ("priv", "shared", "all"):
                raise r.error("Invalid MODSEQ entry type")
            r.sp()
        return SearchModSeq(r.number64("mod-sequence"), entry, entry_type)
    assert word in ("OLDER", "YOUNGER")
    return SearchAge("older" if word == "OLDER" else "younger", r.number(nz=True))


def _search_string(r: _Reader, charset: str | None) -> str:
    data = r.astring("search string")
    try:
        return data.decode(codecs.lookup(charset or "UTF-8").name)
    except UnicodeDecodeError:
        raise r.error(f"Search string is not valid {charset or 'UTF-8'}") from None


# sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria        RFC 5256 §5
# sort =/ ["UID" SP] "SORT" search-return-opts SP sort-criteria SP search-criteria
#                                                                     RFC 5267 §5 (ESORT)
# sort-criteria = "(" sort-criterion *(SP sort-criterion) ")"
# sort-criterion = ["REVERSE" SP] sort-key
# search-criteria = charset 1*(SP search-key)
def _sort(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    returns, partial = _search_return_opts(r)
    r.char(b"(")
    criteria: list[SortCriterion] = []
    while True:
        word = r.keyword("sort key")
        reverse = word == "REVERSE"
        if reverse:
            r.sp()
            word = r.keyword("sort key")
        if word not in SORT_KEYS:
            raise r.error(f"Unknown sort key {word}")
        criteria.append(SortCriterion(word, reverse))
        if r.try_char(b")"):
            break
        r.sp()
    r.sp()
    charset = _charset(r)
    r.sp()
    return Sort(tag, tuple(criteria), charset, _search_program(r, charset), uid, returns, partial)


# command-select =/ "CANCELUPDATE" 1*(SP quoted)                      RFC 5267 §5
def _cancelupdate(r: _Reader, tag: str, uid: bool) -> Command:
    tags: list[str] = []
    while not tags or not r.at_end():
        r.sp()
        if r.peek() != 0x22:
            raise r.error("Expected a quoted tag")
        tags.append(r.text(r.quoted(), "Tag"))
    return CancelUpdate(tag, tuple(tags))


# thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria      RFC 5256 §5
def _thread(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    algorithm = r.keyword("thread algorithm")
    r.sp()
    charset = _charset(r)
    r.sp()
    return Thread(tag, algorithm, charset, _search_program(r, charset), uid)


# fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
#         "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]
# fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")"    RFC 4466
# fetch-modifier = "CHANGEDSINCE" SP mod-sequence-valzer / "VANISHED"  RFC 7162
def _fetch(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    seq = r.sequence_set()
    r.sp()
    items: list[FetchAtt] = []
    if r.try_char(b"("):
        while True:
            items.append(_fetch_att(r))
            if r.try_char(b")"):
                break
            r.sp()
    else:
        save = r.pos
        word = r.match(_FETCH_NAME)
        macro = FETCH_MACROS.get(word.group().decode("ascii").upper()) if word else None
        if macro is not None and r.peek() in (None, 0x20):
            items.extend(SIMPLE_ATTS[n] for n in macro)
        else:
            r.pos = save
            items.append(_fetch_att(r))
    changed_since: int | None = None
    vanished = False
    if not r.at_end():
        r.sp()
        r.char(b"(")
        while True:
            modifier = r.keyword("fetch modifier")
            if modifier == "CHANGEDSINCE" and changed_since is None:
                r.sp()
                changed_since = r.number64("mod-sequence")
            elif modifier == "VANISHED" and not vanished:
                vanished = True
            else:
                raise r.error(f"Unknown or repeated fetch modifier {modifier}")
            if r.try_char(b")"):
                break
            r.sp()
    r.end()
    if vanished and (not uid or changed_since is None):
        # RFC 7162 §3.2.6: VANISHED only in UID FETCH, and only with CHANGEDSINCE
        raise r.error("VANISHED requires UID FETCH and CHANGEDSINCE")
    return Fetch(tag, seq, _implied_items(items, uid, changed_since), uid, changed_since, vanished)


def _implied_items(
    items: list[FetchAtt], uid: bool, changed_since: int | None
) -> tuple[FetchAtt, ...]:
    """The items of a FETCH with those its form implies added."""
    names = [i.name for i in items]
    if uid and "UID" not in names:
        items.append(SIMPLE_ATTS["UID"])  # RFC 9051 §6.4.9: UID FETCH always returns UID
    if changed_since is not None and "MODSEQ" not in names:
        items.append(SIMPLE_ATTS["MODSEQ"])  # RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ
    return tuple(items)


# fetch-att = "ENVELOPE" / "FLAGS" / "INTERNALDATE" / "RFC822" [".HEADER" / ".SIZE" /
#   ".TEXT"] / "BODY" ["STRUCTURE"] / "UID" / "BODY" section [partial] / "BODY.PEEK"
#   section [partial] / "BINARY" [".PEEK"] section-binary [partial] /
#   "BINARY.SIZE" section-binary / "MODSEQ"                    RFC 9051 §9, RFC 7162
def _fetch_att(r: _Reader) -> FetchAtt:
    word = r.match(_FETCH_NAME)
    if word is None:
        raise r.error("Expected fetch item")
    name = word.group().decode("ascii").upper()
    if r.peek() == 0x5B:  # "["
        if name in ("BODY", "BODY.PEEK"):
            section = _section(r)
            partial = _partial(r)
            return FetchAtt("BODY", section, partial, name == "BODY.PEEK")
        if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
            section = _section_binary(r)
            partial = _partial(r) if name != "BINARY.SIZE" else None
            base = "BINARY.SIZE" if name == "BINARY.SIZE" else "BINARY"
            return FetchAtt(base, section, partial, name == "BINARY.PEEK")
        raise r.error(f"Unknown fetch item {name}")
    att = SIMPLE_ATTS.get(name)
    if att is not None:
        return att
    if name in ("BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        raise r.error(f"{name} requires a section")
    raise r.error(f"Unknown fetch item {name}")


# section = "[" [section-spec] "]"
# section-spec = section-msgtext / (section-part ["." section-text])
# section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
# section-part = nz-number *("." nz-number) ; section-text = section-msgtext / "MIME"
# header-list = "(" header-fld-name *(SP header-fld-name) ")" ; header-fld-name = astring
def _section(r: _Reader) -> Section:
    r.char(b"[")
    part = _section_part(r)
    text: str | None = None
    fields: list[str] = []
    if r.peek() != 0x5D:  # "]"
        if part:
            r.char(b".")
        m = r.match(_SECTION_TEXT)
        text = m.group().decode("ascii").upper() if m else ""
        if text == "MIME" and not part:
            raise r.error("MIME requires a part number")  # section-text only after a part
        if text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
            raise r.error("Invalid section")
        if text.startswith("HEADER.FIELDS"):
            r.sp()
            r.char(b"(")
            while True:
                name = r.text(r.astring("header name"), "Header name")
                if not name or any(ord(c) <= 0x20 or ord(c) > 0x7E or c == ":" for c in name):
                    raise r.error("Invalid header name")
                fields.append(name)
                if r.try_char(b")"):
                    break
                r.sp()
    r.char(b"]")
    return Section(part, text, tuple(fields))


def _section_part(r: _Reader) -> tuple[int, ...]:
    part: list[int] = []
    while r.peek() is not None and 0x30 <= r.data[r.pos] <= 0x39:
        part.append(r.number(nz=True, what="section part"))
        if not (r.data[r.pos : r.pos + 1] == b"." and r.data[r.pos + 1 : r.pos + 2].isdigit()):
            break
        r.pos += 1
    return tuple(part)


# section-binary = "[" [section-part] "]"                            RFC 3516 §4.3
def _section_binary(r: _Reader) -> Section:
    r.char(b"[")
    part = _section_part(r)
    r.char(b"]")
    return Section(part)


# partial = "<" number64 "." nz-number64 ">"
def _partial(r: _Reader) -> tuple[int, int] | None:
    if not r.try_char(b"<"):
        return None
    origin = r.number64("partial origin")
    r.char(b".")
    length = r.number(nz=True, limit=MAX_NUMBER64, what="partial length")
    r.char(b">")
    return (origin, length)


# store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags
# store-modifiers = SP "(" store-modifier *(SP store-modifier) ")"   RFC 4466
# store-modifier = "UNCHANGEDSINCE" SP mod-sequence-valzer           RFC 7162
# store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))
def _store(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    seq = r.sequence_set()
    r.sp()
    unchanged_since: int | None = None
    if r.try_char(b"("):
        word = r.keyword("store modifier")
        if word != "UNCHANGEDSINCE":
            raise r.error(f"Unknown store modifier {word}")
        r.sp()
        unchanged_since = r.number64("mod-sequence")
        r.char(b")")
        r.sp()
    mode: Literal["add", "remove", "replace"] = "replace"
    if r.try_char(b"+"):
        mode = "add"
    elif r.try_char(b"-"):
        mode = "remove"
    word = r.keyword("FLAGS")
    if word not in ("FLAGS", "FLAGS.SILENT"):
        raise r.error("Expected FLAGS, FLAGS.SILENT")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        flag_items = [r.flag()]
        while not r.at_end():
            r.sp()
            flag_items.append(r.flag())
        flags = tuple(flag_items)
    r.end()
    return Store(tag, seq, mode, flags, word == "FLAGS.SILENT", uid, unchanged_since)


# copy = "COPY" SP sequence-set SP mailbox ; move = "MOVE" SP sequence-set SP mailbox
def _copy_move(cls: type[Copy | Move]) -> Callable[[_Reader, str, bool], Command]:
    def parse(r: _Reader, tag: str, uid: bool) -> Command:
        r.sp()
        seq = r.sequence_set()
        r.sp()
        name = r.mailbox()
        r.end()
        return cls(tag, seq, name, uid)

    return parse


# expunge = "EXPUNGE" ; uid-expunge = "EXPUNGE" SP sequence-set      RFC 4315 §4
def _expunge(r: _Reader, tag: str, uid: bool) -> Command:
    uids: SequenceSet | None = None
    if uid:
        r.sp()
        uids = r.sequence_set()
    r.end()
    return Expunge(tag, uids)


# id = "ID" SP id-params-list
# id-params-list = "(" *(string SP nstring) ")" / nil                RFC 2971 §4
def _id(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    if r.try_char(b"("):
        params: list[tuple[str, str | None]] = []
        if not r.try_char(b")"):
            while True:
                key = r.text(r.string("field name"), "ID field")
                r.sp()
                value = r.nstring()
                params.append((key, None if value is None else r.text(value, "ID value")))
                if len(params) > 30:
                    raise r.error("Too many ID fields")  # RFC 2971 §3.3: at most 30
                if r.try_char(b")"):
                    break
                r.sp()
        r.end()
        return Id(tag, tuple(params))
    if r.keyword("ID parameter list") != "NIL":
        raise r.error("Expected ID parameter list")
    r.end()
    return Id(tag, None)


# getquota = "GETQUOTA" SP quota-root-name ; quota-root-name = astring   RFC 9208 §7
def _getquota(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    root = r.text(r.astring("quota root"), "Quota root")
    r.end()
    return GetQuota(tag, root)


# setquota = "SETQUOTA" SP quota-root-name SP setquota-list
# setquota-list = "(" [setquota-resource *(SP setquota-resource)] ")"
# setquota-resource = resource-name SP resource-limit                RFC 9208 §7
def _setquota(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    root = r.text(r.astring("quota root"), "Quota root")
    r.sp()
    r.char(b"(")
    limits: list[tuple[str, int]] = []
    if not r.try_char(b")"):
        while True:
            resource = r.keyword("resource name")
            r.sp()
            limits.append((resource, r.number64("resource limit")))
            if r.try_char(b")"):
                break
            r.sp()
    r.end()
    return SetQuota(tag, root, tuple(limits))


# --- NOTIFY (RFC 5465) ---------------------------------------------------------------
#: event names, canonical spelling by upper case (RFC 5465 §8 event-name)
NOTIFY_EVENTS: Final = {
    e.upper(): e
    for e in (
        "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
        "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange",
    )
}  # fmt: skip
NOTIFY_MESSAGE_EVENTS: Final = frozenset(
    {"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"}
)
NOTIFY_FILTERS: Final = frozenset({
    "SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE",
    "MAILBOXES",
})  # fmt: skip


@dataclass(frozen=True)
class NotifyGroup:
    """event-group (RFC 5465 §8): a mailbox filter, its mailbox names (SUBTREE,
    MAILBOXES), its events (empty for NONE; known names spelled canonically, unknown
    event-ext atoms as sent) and, for MessageNew under SELECTED[-DELAYED], the
    fetch-atts of the unsolicited FETCH."""

    filter: str  # upper case, one of NOTIFY_FILTERS
    events: tuple[str, ...] = ()
    mailboxes: tuple[str, ...] = ()
    fetch: tuple[FetchAtt, ...] = ()


@dataclass(frozen=True)
class Notify(Command):
    groups: tuple[NotifyGroup, ...] | None  # None: NOTIFY NONE
    status: bool = False  # the STATUS indicator
    name: ClassVar[str] = "NOTIFY"


# notify = "NOTIFY" SP (notify-set / notify-none)
# notify-set = "SET" [status-indicator] SP event-groups ; status-indicator = SP "STATUS"
# event-groups = event-group *(SP event-group)                         RFC 5465 §8
def _notify(r: _Reader, tag: str, uid: bool) -> Command:
    r.sp()
    word = r.keyword("SET or NONE")
    if word == "NONE":
        r.end()
        return Notify(tag, None)
    if word != "SET":
        raise r.error("Expected SET or NONE")
    r.sp()
    status = False
    if r.peek() != 0x28:  # "("
        if r.keyword("STATUS or event group") != "STATUS":
            raise r.error("Expected STATUS or an event group")
        status = True
        r.sp()
    groups: list[NotifyGroup] = []
    while True:
        groups.append(_notify_group(r))
        if r.at_end():
            break
        r.sp()
    if sum(g.filter.startswith("SELECTED") for g in groups) > 1:
        raise r.error("Only one SELECTED or SELECTED-DELAYED group")  # RFC 5465 §6.1
    return Notify(tag, tuple(groups), status)


# event-group = "(" filter-mailboxes SP events ")"
# filter-mailboxes-other = "inboxes" / "personal" / "subscribed" /
#   ("subtree" SP one-or-more-mailbox) / ("mailboxes" SP one-or-more-mailbox)
# one-or-more-mailbox = mailbox / many-mailboxes
# many-mailboxes = "(" mailbox *(SP mailbox) ")"
def _notify_group(r: _Reader) -> NotifyGroup:
    r.char(b"(")
    filt = r.keyword("mailbox filter")
    if filt not in NOTIFY_FILTERS:
        raise r.error(f"Unknown mailbox filter {filt}")
    names: list[str] = []
    if filt in ("SUBTREE", "MAILBOXES"):
        r.sp()
        if r.try_char(b"("):
            while True:
                names.append(r.mailbox())
                if r.try_char(b")"):
                    break
                r.sp()
        else:
            names.append(r.mailbox())
    r.sp()
    selected = filt.startswith("SELECTED")
    events, fetch = _notify_events(r, selected)
    r.char(b")")
    return NotifyGroup(filt, events, tuple(names), fetch)


# events = ( "(" event *(SP event) ")" ) / "NONE"
# message-event = ("MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"]) /
#   "MessageExpunge" / "FlagChange" / "AnnotationChange"
# mailbox-event = "MailboxName" / "SubscriptionChange" / "MailboxMetadataChange"
# user-event = "ServerMetadataChange" ; event-ext = atom
def _notify_events(r: _Reader, selected: bool) -> tuple[tuple[str, ...], tuple[FetchAtt, ...]]:
    if not r.try_char(b"("):
        if r.keyword("events") != "NONE":
            raise r.error("Expected an event list or NONE")
        return (), ()
    events: list[str] = []
    fetch: list[FetchAtt] = []
    while True:
        atom = r.atom("event")
        event = NOTIFY_EVENTS.get(atom.upper(), atom)
        if event not in events:
            events.append(event)
        if event == "MessageNew" and r.data[r.pos : r.pos + 2] == b" (":
            if not selected:
                # RFC 5465 §8: fetch-atts only for SELECTED / SELECTED-DELAYED
                raise r.error("MessageNew fetch attributes need SELECTED")
            r.sp()
            r.char(b"(")
            while True:
                fetch.append(_notify_fetch_att(r))
                if r.try_char(b")"):
                    break
                r.sp()
        if r.try_char(b")"):
            break
        r.sp()
    have = set(events)
    if selected and have & (set(NOTIFY_EVENTS.values()) - NOTIFY_MESSAGE_EVENTS):
        raise r.error("Only message events apply to SELECTED")  # RFC 5465 §6.1
    if ("MessageNew" in have) != ("MessageExpunge" in have):
        raise r.error("MessageNew and MessageExpunge go together")  # RFC 5465 §5
    if have & {"FlagChange", "AnnotationChange"} and "MessageNew" not in have:
        raise r.error("FlagChange needs MessageNew and MessageExpunge")  # RFC 5465 §5
    return tuple(events), tuple(fetch)


def _notify_fetch_att(r: _Reader) -> FetchAtt:
    """A fetch-att of an unsolicited FETCH: never one that sets \\Seen (RFC 5465
    §5.2): BODY[...] and BINARY[...] are read as their .PEEK forms."""
    att = _fetch_att(r)
    if att.name in ("RFC822", "RFC822.TEXT"):
        raise r.error(f"{att.name} would set \\Seen; use BODY.PEEK")
    if att.section is not None and not att.peek:
        att = FetchAtt(att.name, att.section, att.partial, peek=True)
    return att


# --- URLAUTH (RFC 4467) --------------------------------------------------------------
@dataclass(frozen=True)
class GenUrlAuth(Command):
    urls: tuple[tuple[str, str], ...]  # (rump URL, mechanism upper case)
    name: ClassVar[str] = "GENURLAUTH"


@dataclass(frozen=True)
class ResetKey(Command):
    mailbox: str | None = None  # None: every mailbox of the user
    mechanisms: tuple[str, ...] = ()  # upper case
    name: ClassVar[str] = "RESETKEY"


@dataclass(frozen=True)
class UrlFetch(Command):
    urls: tuple[str, ...]
    name: ClassVar[str] = "URLFETCH"


# mechanism = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".")              RFC 4467 §8
_MECHANISM: Final = re.compile(rb"[A-Za-z0-9.\-]+")


def _mechanism(r: _Reader) -> str:
    m = r.match(_MECHANISM)
    if m is None or r.peek() not in (None, 0x20):
        raise r.error("Expected URLAUTH mechanism")
    return m.group().decode("ascii").upper()


def _url(r: _Reader) -> str:
    # url-rump = astring ; url-full = astring; an IMAP URL is ASCII (RFC 5092 §8):
    # other octets are kept as they are for the URL parser to refuse
    return r.astring("URL").decode("latin-1")


# genurlauth = "GENURLAUTH" 1*(SP url-rump SP mechanism)                RFC 4467 §8
def _genurlauth(r: _Reader, tag: str, uid: bool) -> Command:
    urls: list[tuple[str, str]] = []
    while True:
        r.sp()
        url = _url(r)
        r.sp()
        urls.append((url, _mechanism(r)))
        if r.at_end():
            return GenUrlAuth(tag, tuple(urls))


# resetkey = "RESETKEY" [SP mailbox *(SP mechanism)]                     RFC 4467 §8
def _resetkey(r: _Reader, tag: str, uid: bool) -> Command:
    if r.at_end():
        return ResetKey(tag)
    r.sp()
    mailbox = r.mailbox()
    mechanisms: list[str] = []
    while not r.at_end():
        r.sp()
        mechanisms.append(_mechanism(r))
    return ResetKey(tag, mailbox, tuple(mechanisms))


# urlfetch = "URLFETCH" 1*(SP url-full)                                 RFC 4467 §8
def _urlfetch(r: _Reader, tag: str, uid: bool) -> Command:
    urls: list[str] = []
    while True:
        r.sp()
        urls.append(_url(r))
        if r.at_end():
            return UrlFetch(tag, tuple(urls))


_Handler: TypeAlias = Callable[[_Reader, str, bool], Command]

#: the commands without arguments (their parser is `_no_args`; `_short_command`)
_NO_ARGS: Final[dict[str, type[Command]]] = {
    "CAPABILITY": Capability,
    "NOOP": Noop,
    "LOGOUT": Logout,
    "STARTTLS": StartTLS,
    "NAMESPACE": Namespace,
    "IDLE": Idle,
    "CHECK": Check,
    "CLOSE": Close,
    "UNSELECT": Unselect,
}

_COMMANDS: Final[dict[str, _Handler]] = {
    **{name: _no_args(cls) for name, cls in _NO_ARGS.items()},
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select(readonly=False),
    "EXAMINE": _select(readonly=True),
    "CREATE": _create,
    "DELETE": _one_mailbox(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(Subscribe),
    "UNSUBSCRIBE": _one_mailbox(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move(Copy),
    "MOVE": _copy_move(Move),
    "ID": _id,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(GetQuotaRoot),
    "SETQUOTA": _setquota,
    "SORT": _sort,
    "THREAD": _thread,
    "NOTIFY": _notify,
    "CANCELUPDATE": _cancelupdate,
    "GENURLAUTH": _genurlauth,
    "RESETKEY": _resetkey,
    "URLFETCH": _urlfetch,
}
_UID_COMMANDS: Final = frozenset(
    {"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"}
)
