"""IMAP response serialiser: exact bytes for every server response (RFC 9051 §7, §9).

Every function returns complete bytes; the ones that build a whole response end
with CRLF, the helpers for parts of a response (`astring`, `flag_list`, `code_*`)
do not.

Rules:
- Strings are written as an atom when the grammar allows it and the text is all
  ASTRING-CHAR (never the atom ``NIL``, which readers confuse with nil), as a quoted
  string when it is printable 7-bit text (or UTF-8 once the client enabled
  UTF8=ACCEPT / IMAP4rev2, RFC 9051 §9 QUOTED-CHAR), and as a literal otherwise
  (CR, LF, NUL or 8-bit octets). Message contents are always literals, and a
  BINARY section containing NUL is a literal8 ``~{n}`` (RFC 3516 §4.2); a plain
  literal never carries NUL (it is sent as 0x80, as Dovecot does).
- Mailbox names are modified UTF-7 (RFC 3501 §5.1.3) unless `utf8` is set;
  "INBOX" is always written so.
- Response text (resp-text) never contains CR or LF: they are replaced by spaces,
  so a message from an exception cannot inject a response line.
- A tag we write is one the client sent; anything else is a `LocalProtocolError`.
- Pre-serialised syntax (ENVELOPE, BODYSTRUCTURE from `postier.mime`) is wrapped in
  `Raw` and passed through verbatim.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from postier.imap import utf7
from postier.imap.errors import LocalProtocolError
from postier.imap.sequence import format_ids

CRLF: Final = b"\r\n"

# ASTRING-CHAR = ATOM-CHAR / resp-specials; ATOM-CHAR = <any CHAR except atom-specials>
# atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
#                 resp-specials                                       RFC 9051 §9
_ASTRING_CHARS: Final = re.compile(rb"[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+\Z")
_TAG: Final = re.compile(r"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+\Z")
# TEXT-CHAR = <any CHAR except CR and LF>; quoted strings also exclude NUL (CHAR)
_QUOTABLE_ASCII: Final = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")
_STATUSES: Final = frozenset({"OK", "NO", "BAD", "PREAUTH", "BYE"})
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec")  # fmt: skip

_SYSTEM_FLAG_ORDER: Final = {
    "\\Answered": 0,
    "\\Flagged": 1,
    "\\Deleted": 2,
    "\\Seen": 3,
    "\\Draft": 4,
    "\\Recent": 5,
}

# --- response codes (RFC 9051 §7.1, with the RFC that defines each) -------------------
ALERT: Final = "ALERT"
ALREADYEXISTS: Final = "ALREADYEXISTS"
AUTHENTICATIONFAILED: Final = "AUTHENTICATIONFAILED"
AUTHORIZATIONFAILED: Final = "AUTHORIZATIONFAILED"
CANNOT: Final = "CANNOT"
CLIENTBUG: Final = "CLIENTBUG"
CLOSED: Final = "CLOSED"  # RFC 7162 §3.2.11
CONTACTADMIN: Final = "CONTACTADMIN"
CORRUPTION: Final = "CORRUPTION"
EXPIRED: Final = "EXPIRED"
EXPUNGEISSUED: Final = "EXPUNGEISSUED"
HASCHILDREN: Final = "HASCHILDREN"
INUSE: Final = "INUSE"
LIMIT: Final = "LIMIT"
NOMODSEQ: Final = "NOMODSEQ"  # RFC 7162 §3.1.2.2
NONEXISTENT: Final = "NONEXISTENT"
NOPERM: Final = "NOPERM"
NOTSAVED: Final = "NOTSAVED"  # RFC 5182 §2.1
OVERQUOTA: Final = "OVERQUOTA"
PARSE: Final = "PARSE"
PRIVACYREQUIRED: Final = "PRIVACYREQUIRED"
READ_ONLY: Final = "READ-ONLY"
READ_WRITE: Final = "READ-WRITE"
SERVERBUG: Final = "SERVERBUG"
TOOBIG: Final = "TOOBIG"  # RFC 4469 §6, RFC 7889
BADURL: Final = "BADURL"  # RFC 4469 §5
TRYCREATE: Final = "TRYCREATE"
UIDNOTSTICKY: Final = "UIDNOTSTICKY"  # RFC 4315 §3
UNAVAILABLE: Final = "UNAVAILABLE"
UNKNOWN_CTE: Final = "UNKNOWN-CTE"  # RFC 3516 §4.3
USEATTR: Final = "USEATTR"  # RFC 6154 §6


@dataclass(frozen=True)
class Raw:
    """Bytes already in IMAP syntax (e.g. ENVELOPE, BODYSTRUCTURE): written verbatim."""

    data: bytes


@dataclass(frozen=True)
class Binary:
    """A BINARY[...] section's decoded content: a literal8 when it contains NUL."""

    data: bytes


FetchValue = int | bytes | None | Raw | Binary | datetime | frozenset[str]


# --- strings ---------------------------------------------------------------------------
def _b(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def quoted(value: str | bytes, *, utf8: bool = False) -> bytes:
    """quoted = DQUOTE *QUOTED-CHAR DQUOTE; "\\" and DQUOTE are escaped (RFC 9051 §9).
    LocalProtocolError for what a quoted string cannot carry (use `string`)."""
    data = _b(value)
    if not _is_quotable(data, utf8=utf8):
        raise LocalProtocolError("value cannot be a quoted string")
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """literal = "{" number64 "}" CRLF *CHAR8; literal8 = "~{" number64 "}" CRLF *OCTET.

    CHAR8 excludes NUL (RFC 9051 §9, RFC 3501 §4.3): a NUL in a plain literal
    (BODY[] of a message stored from a literal8) is sent as 0x80, as Dovecot
    does; only BINARY answers carry NUL, as literal8 (RFC 3516 §4.2)."""
    prefix, data = literal_parts(data, binary=binary)
    return prefix + data


def literal_parts(data: bytes, *, binary: bool = False) -> tuple[bytes, bytes]:
    """`literal` as its ``{n}`` CRLF prefix and its octets, so that a message's bytes
    reach the socket without being copied into a response first."""
    if not binary and b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    return b"%s{%d}\r\n" % (b"~" if binary else b"", len(data)), data


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """string = quoted / literal: quoted when it can be, a literal otherwise."""
    data = _b(value)
    if _is_quotable(data, utf8=utf8):
        return quoted(data, utf8=utf8)
    return literal(data)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """astring = 1*ASTRING-CHAR / string (an atom when possible, never the atom NIL)."""
    data = _b(value)
    if _ASTRING_CHARS.match(data) and data.upper() != b"NIL":
        return data
    return string(data, utf8=utf8)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """nstring = string / nil."""
    return b"NIL" if value is None else string(value, utf8=utf8)


def _is_quotable(data: bytes, *, utf8: bool) -> bool:
    if _QUOTABLE_ASCII.match(data):
        return True
    if not utf8 or b"\r" in data or b"\n" in data or b"\x00" in data:
        return False
    try:
        data.decode("utf-8")  # RFC 9051 §9 QUOTED-CHAR =/ UTF8-2 / UTF8-3 / UTF8-4
    except UnicodeDecodeError:
        return False
    return True


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """mailbox = "INBOX" / astring; modified UTF-7 unless UTF-8 was enabled."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else utf7.encode(name), utf8=utf8)


def flag_list(flags: Iterable[str]) -> bytes:
    """flag-list = "(" [flag *(SP flag)] ")": system flags first in RFC order, then
    keywords sorted (case-insensitively), so output is deterministic. Written once
    per distinct set (the views intern their flag sets, and a mailbox has few)."""
    if isinstance(flags, frozenset):
        done = _FLAG_LISTS.get(flags)
        if done is None:
            if len(_FLAG_LISTS) >= _FLAG_LISTS_MAX:
                _FLAG_LISTS.clear()
            _FLAG_LISTS[flags] = done = _flag_list(flags)
        return done
    return _flag_list(flags)


def _flag_list(flags: Iterable[str]) -> bytes:
    ordered = sorted(set(flags), key=lambda f: (_SYSTEM_FLAG_ORDER.get(f, 9), f.lower(), f))
    return b"(" + " ".join(ordered).encode("utf-8") + b")"


_FLAG_LISTS: dict[frozenset[str], bytes] = {}
_FLAG_LISTS_MAX = 4096


def date_time(value: datetime) -> bytes:
    """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
    DQUOTE (RFC 9051 §9); naive datetimes are taken as UTC."""
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{value.day:2d}-{_MONTHS[value.month - 1]}-{value.year:04d} '
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode("ascii")


_MONTHS_B: Final = tuple(m.encode("ascii") for m in _MONTHS)


def date_time_us(us: int) -> bytes:
    """`date_time` of a UTC time in microseconds since the epoch (the stores' internal
    dates), without building a datetime: a metadata FETCH renders thousands."""
    t = time.gmtime(us // 1_000_000)
    return b'"%2d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday,
        _MONTHS_B[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def _text(text: str) -> bytes:
    # resp-text: text = 1*(TEXT-CHAR / UTF8-2 / UTF8-3 / UTF8-4); never CR or LF
    if len(text) <= 80:
        return _short_text(text)
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8")


@functools.lru_cache(maxsize=512)  # most texts are a command's constant "… completed"
def _short_text(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8")


# --- status responses ------------------------------------------------------------------
def status_response(tag: str | None, status: str, text: str, code: str | None = None) -> bytes:
    """response-tagged = tag SP resp-cond-state CRLF, or the untagged ``* `` form
    (resp-cond-state / resp-cond-bye / resp-cond-auth)."""
    if status not in _STATUSES:
        raise LocalProtocolError(f"unknown status {status!r}")
    if tag is not None and not _TAG.match(tag):
        raise LocalProtocolError(f"invalid tag {tag!r}")
    head = b"*" if tag is None else tag.encode("ascii")
    if len(text) <= 80 and (code is None or len(code) <= 80):
        return head + _short_status_tail(status, text, code)
    return head + _status_tail(status, text, code)


def _status_tail(status: str, text: str, code: str | None) -> bytes:
    """What follows the tag (or "*") in `status_response`."""
    body = _text(text) or b"completed"  # rev1: text = 1*TEXT-CHAR
    if code is not None:
        # resp-text = ["[" resp-text-code "]" SP] text
        return b" %s [%s] %s\r\n" % (status.encode(), _text(code), body)
    return b" %s %s\r\n" % (status.encode(), body)


#: most are a command's constant "… completed", with no code or a constant one
_short_status_tail = functools.lru_cache(maxsize=512)(_status_tail)


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``a1 OK [code] text`` (RFC 9051 §7.1)."""
    return status_response(tag, status, text, code)


def untagged_status(status: str, text: str, code: str | None = None) -> bytes:
    """``* OK [code] text``, ``* NO``, ``* BAD``, ``* PREAUTH``, ``* BYE``."""
    return status_response(None, status, text, code)


def bye(text: str, code: str | None = None) -> bytes:
    return status_response(None, "BYE", text, code)


def untagged(*parts: str | bytes | int) -> bytes:
    """``* `` + parts joined by SP + CRLF; parts must already be IMAP syntax."""
    return b"* " + b" ".join(_part(p) for p in parts) + CRLF


def _part(value: str | bytes | int) -> bytes:
    if isinstance(value, int):
        return b"%d" % value
    return _b(value)


def continuation(text: str = "") -> bytes:
    """continue-req = "+" SP (resp-text / base64) CRLF; ``+ Ready`` for literals,
    ``+ idling`` for IDLE."""
    return b"+ " + _text(text) + CRLF


def challenge(data: bytes) -> bytes:
    """An AUTHENTICATE challenge: ``+ `` base64 CRLF (RFC 9051 §6.2.2)."""
    return b"+ " + base64.b64encode(data) + CRLF


# --- untagged data ---------------------------------------------------------------------
def exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count


def recent(count: int) -> bytes:
    return b"* %d RECENT\r\n" % count


def expunge(seq: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % seq


def capability(caps: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(caps).encode("ascii") + CRLF


def enabled(caps: Iterable[str]) -> bytes:
    """``* ENABLED ...`` (RFC 5161 §3.2); sent even when empty."""
    names = " ".join(caps)
    return b"* ENABLED" + (b" " + names.encode("ascii") if names else b"") + CRLF


def flags(flag_names: Iterable[str]) -> bytes:
    return b"* FLAGS " + flag_list(flag_names) + CRLF


def list_response(
    name: str,
    attributes: Iterable[str] = (),
    delimiter: str | None = "/",
    *,
    utf8: bool = False,
    childinfo: Sequence[str] = (),
    oldname: str | None = None,
    kind: str = "LIST",
) -> bytes:
    """mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP
    mailbox [SP mbox-list-extended] (RFC 9051 §9, RFC 5258 §9). `childinfo` gives
    ``("CHILDINFO" ("SUBSCRIBED"))`` (RFC 5258 §4), `oldname` ``("OLDNAME" (...))``
    (RFC 9051 §6.3.9.5). `kind` is "LIST" or "LSUB"."""
    delim = b"NIL" if delimiter is None else quoted(delimiter)
    out = b"* %s (%s) %s %s" % (
        kind.encode("ascii"),
        " ".join(attributes).encode("ascii"),
        delim,
        mailbox(name, utf8=utf8),
    )
    extended: list[bytes] = []
    if childinfo:
        extended.append(b'"CHILDINFO" (' + b" ".join(quoted(c) for c in childinfo) + b")")
    if oldname is not None:
        extended.append(b'"OLDNAME" (' + mailbox(oldname, utf8=utf8) + b")")
    if extended:
        out += b" (" + b" ".join(extended) + b")"
    return out + CRLF


def status(name: str, items: Sequence[tuple[str, int]], *, utf8: bool = False) -> bytes:
    """``* STATUS name (MESSAGES 231 UIDNEXT 44292)`` (RFC 9051 §7.2.4)."""
    body = " ".join(f"{k} {v}" for k, v in items).encode("ascii")
    return b"* STATUS " + mailbox(name, utf8=utf8) + b" (" + body + b")" + CRLF


def search(ids: Iterable[int], modseq: int | None = None) -> bytes:
    """``* SEARCH 2 84 882`` with the CONDSTORE ``(MODSEQ n)`` (RFC 7162 §3.1.5)."""
    out = b"* SEARCH" + b"".join(b" %d" % i for i in ids)
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + CRLF


def sort(ids: Iterable[int], modseq: int | None = None) -> bytes:
    """``* SORT 2 84 882`` (RFC 5256 §4)."""
    out = b"* SORT" + b"".join(b" %d" % i for i in ids)
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + CRLF


@dataclass(frozen=True)
class ThreadNode:
    """One message of a THREAD answer by number, or a dummy (`id` None) that only
    holds its children (RFC 5256 §3.2 step 3 keeps such a parent at the top)."""

    id: int | None
    children: tuple[ThreadNode, ...] = ()


def thread(roots: Sequence[ThreadNode]) -> bytes:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256 §4):

        thread-data    = "THREAD" [SP 1*thread-list]
        thread-list    = "(" (thread-members / thread-nested) ")"
        thread-members = nz-number *(SP nz-number) [SP thread-nested]
        thread-nested  = 2*thread-list

    A message with one child is followed by it in the same list; two or more children
    are a thread-nested of one list each. Walked with a stack, not recursion, so a
    long reply chain cannot exhaust the interpreter's stack."""
    out = bytearray(b"* THREAD")
    if roots:
        out += b" "
    stack: list[ThreadNode | bytes] = []
    for root in reversed(roots):
        stack += [b")", root, b"("]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out += item
            continue
        node = item
        ids: list[bytes] = []
        while True:
            if node.id is not None:
                ids.append(b"%d" % node.id)
            if len(node.children) != 1:
                break
            node = node.children[0]
        out += b" ".join(ids)
        if node.children:
            if ids:
                out += b" "
            for child in reversed(node.children):
                stack += [b")", child, b"("]
    return bytes(out) + CRLF


def esearch(
    tag: str | None,
    *,
    uid: bool = False,
    min: int | None = None,  # the RFC 4731 names
    max: int | None = None,
    all: Sequence[int] | None = None,
    count: int | None = None,
    modseq: int | None = None,
    partial: tuple[tuple[int, int], Sequence[int]] | None = None,
    sorted_order: bool = False,
    removefrom: Sequence[tuple[int, Sequence[int]]] = (),
    addto: Sequence[tuple[int, Sequence[int]]] = (),
) -> bytes:
    """esearch-response = "ESEARCH" [search-correlator] [SP "UID"] *(SP
    search-return-data) (RFC 4731 §3.1, RFC 9051 §7.3.4). MIN, MAX and ALL are left
    out when nothing matched (RFC 4731 §3.1); `all` is compressed (``1:3,5``), in
    the order given when `sorted_order` (ESORT: ascending runs only, RFC 5267 §3.2).
    `partial` is (the range asked, the results in it): ``PARTIAL (1:100 3:7)``, NIL
    when there are none (RFC 5267 §4.4). `removefrom` and `addto` are (context
    position, results) pairs (RFC 5267 §4.3.3, §4.3.4)."""
    out = b"* ESEARCH"
    if tag is not None:
        out += b' (TAG "' + tag.encode("ascii") + b'")'
    if uid:
        out += b" UID"
    if min is not None:
        out += b" MIN %d" % min
    if max is not None:
        out += b" MAX %d" % max
    if all is not None:
        ids = format_ids(all, sort=not sorted_order)
        if ids:
            out += b" ALL " + ids.encode("ascii")
    if partial is not None:
        (lo, hi), got = partial
        ids = format_ids(got, sort=not sorted_order) or "NIL"
        out += b" PARTIAL (%d:%d %s)" % (lo, hi, ids.encode("ascii"))
    if count is not None:
        out += b" COUNT %d" % count
    if modseq is not None:
        out += b" MODSEQ %d" % modseq  # RFC 7162 §3.1.5
    for name, pairs in ((b"REMOVEFROM", removefrom), (b"ADDTO", addto)):
        if pairs:
            out += (
                b" "
                + name
                + b" ("
                + b" ".join(
                    b"%d %s" % (pos, format_ids(ids, sort=False).encode("ascii"))
                    for pos, ids in pairs
                )
                + b")"
            )
    return out + CRLF


def vanished(uids: Iterable[int], *, earlier: bool = False) -> bytes:
    """``* VANISHED (EARLIER) 41,43:116`` (RFC 7162 §3.2.10); empty bytes when there
    is nothing to report."""
    ids = format_ids(uids)
    if not ids:
        return b""
    return b"* VANISHED " + (b"(EARLIER) " if earlier else b"") + ids.encode("ascii") + CRLF


def fetch(seq: int, items: Sequence[tuple[str, FetchValue]]) -> bytes:
    """``* 12 FETCH (FLAGS (\\Seen) UID 4 BODY[] {5}\\r\\nhello)`` (RFC 9051 §7.5.2).

    Each item is (name as it appears in the response, value): int → number,
    datetime → date-time, frozenset → flag list, bytes → literal (message data),
    None → NIL, `Raw` → verbatim, `Binary` → literal or literal8. Use
    `postier.imap.parse.FetchAtt.response_name` for section names."""
    return b"".join(fetch_parts(seq, items))


def fetch_parts(seq: int, items: Sequence[tuple[str, FetchValue]]) -> list[bytes]:
    """`fetch` in pieces: each literal's octets (message data) are a piece of their
    own, never copied into the text around them (`Context.send_parts`)."""
    out: list[bytes] = []
    text = b"* %d FETCH (" % seq
    for i, (name, value) in enumerate(items):
        text += (b" " if i else b"") + name.encode("ascii") + b" "
        if isinstance(value, bytes | Binary):
            if isinstance(value, bytes):
                prefix, data = literal_parts(value)
            else:
                prefix, data = literal_parts(value.data, binary=b"\x00" in value.data)
            out.append(text + prefix)
            out.append(data)
            text = b""
        else:
            text += _fetch_value(value)
    out.append(text + b")" + CRLF)
    return out


def _fetch_value(value: FetchValue) -> bytes:
    if isinstance(value, bool):
        raise LocalProtocolError("a FETCH value cannot be a bool")
    if isinstance(value, int):
        return b"%d" % value
    if value is None:
        return b"NIL"
    if isinstance(value, bytes):
        return literal(value)
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Binary):
        return literal(value.data, binary=b"\x00" in value.data)
    if isinstance(value, datetime):
        return date_time(value)
    return flag_list(value)


def namespace(
    personal: Sequence[tuple[str, str | None]] | None = (("", "/"),),
    other: Sequence[tuple[str, str | None]] | None = None,
    shared: Sequence[tuple[str, str | None]] | None = None,
    *,
    utf8: bool = False,
) -> bytes:
    """``* NAMESPACE (("" "/")) NIL NIL`` (RFC 9051 §7.2.5)."""

    def one(entries: Sequence[tuple[str, str | None]] | None) -> bytes:
        if not entries:
            return b"NIL"
        items = [
            b"("
            + string(utf7.encode(prefix) if not utf8 else prefix, utf8=utf8)
            + b" "
            + (b"NIL" if delim is None else quoted(delim))
            + b")"
            for prefix, delim in entries
        ]
        return b"(" + b"".join(items) + b")"

    return b"* NAMESPACE " + one(personal) + b" " + one(other) + b" " + one(shared) + CRLF


def id_response(params: Sequence[tuple[str, str | None]] | None) -> bytes:
    """``* ID ("name" "postier")`` or ``* ID NIL`` (RFC 2971 §3.2)."""
    if not params:
        return b"* ID NIL\r\n"
    body = b" ".join(string(k) + b" " + nstring(v) for k, v in params)
    return b"* ID (" + body + b")" + CRLF


def quota(root: str, resources: Sequence[tuple[str, int, int]]) -> bytes:
    """``* QUOTA "" (STORAGE 10 512)``: (name, usage, limit); STORAGE in KiB
    (RFC 9208 §5.1)."""
    body = " ".join(f"{name} {usage} {limit}" for name, usage, limit in resources)
    return b"* QUOTA " + astring(root) + b" (" + body.encode("ascii") + b")" + CRLF


def quotaroot(name: str, roots: Sequence[str], *, utf8: bool = False) -> bytes:
    """``* QUOTAROOT INBOX ""`` (RFC 9208 §5.2)."""
    return (
        b"* QUOTAROOT " + mailbox(name, utf8=utf8)
        + b"".join(b" " + astring(r) for r in roots) + CRLF
    )  # fmt: skip


# --- response codes --------------------------------------------------------------------
def code_appenduid(uidvalidity: int, uids: Iterable[int]) -> str:
    """APPENDUID uidvalidity uid-set (RFC 4315 §3; a set for MULTIAPPEND)."""
    return f"APPENDUID {uidvalidity} {format_ids(uids, sort=False)}"


def code_copyuid(uidvalidity: int, source: Sequence[int], dest: Sequence[int]) -> str:
    """COPYUID uidvalidity source-set dest-set, pairs in matching order (RFC 4315 §3)."""
    if len(source) != len(dest):
        raise LocalProtocolError("COPYUID sets differ in size")
    return f"COPYUID {uidvalidity} {format_ids(source, sort=False)} {format_ids(dest, sort=False)}"


def code_uidvalidity(value: int) -> str:
    return f"UIDVALIDITY {value}"


def code_uidnext(value: int) -> str:
    return f"UIDNEXT {value}"


def code_unseen(seq: int) -> str:
    return f"UNSEEN {seq}"


def code_highestmodseq(value: int) -> str:
    return f"HIGHESTMODSEQ {value}"  # RFC 7162 §3.1.2.1


def code_modified(ids: Iterable[int]) -> str:
    return f"MODIFIED {format_ids(ids)}"  # RFC 7162 §3.1.3


def code_permanentflags(flag_names: Iterable[str], *, new_keywords: bool = True) -> str:
    """PERMANENTFLAGS (...), with ``\\*`` when clients may create keywords."""
    names = flag_list(flag_names).decode("utf-8")[1:-1]
    if new_keywords:
        names = f"{names} \\*" if names else "\\*"
    return f"PERMANENTFLAGS ({names})"


def code_capability(caps: Iterable[str]) -> str:
    return "CAPABILITY " + " ".join(caps)


def code_badcharset(charsets: Iterable[str] = ("UTF-8", "US-ASCII")) -> str:
    return "BADCHARSET (" + " ".join(astring(c).decode("ascii") for c in charsets) + ")"


def code_badurl(url: str) -> str:
    """BADURL url-resp-text (RFC 4469 §5, erratum 4046: the bare URL); "]" (and
    anything that is no TEXT-CHAR) cannot be in it and is %-escaped."""
    text = "".join(c if 0x20 < ord(c) < 0x7F and c != "]" else f"%{ord(c):02X}" for c in url)
    return f"BADURL {text}"


def code_appendlimit(limit: int) -> str:
    return f"APPENDLIMIT {limit}"  # RFC 7889 §3


def code_noupdate(tag: str) -> str:
    return f'NOUPDATE "{tag}"'  # RFC 5267 §4.3.1: resp-text-code =/ "NOUPDATE" SP quoted
