"""Header work done at intake: reading the few fields policy needs, and the
trace and completion fields the server adds.

Rules:
- Only the header block is looked at; the body is never parsed or copied here.
- The header ends at the first line that is neither a header field nor the
  continuation of one (RFC 5322 §2.1, §2.2; a field name may be followed by
  white space before its colon, §4.5.3): an empty line, or the first line of
  a body whose sender forgot the empty line. In the second case
  `HeaderScanner` inserts the empty line, as Postfix's cleanup does, so every
  later reader (DKIM, the MIME parser, IMAP clients) sees a well-formed
  message and the text is the body it was meant to be.
- Added fields are prepended (Received:, Return-Path:) or appended at the end
  of the header block (Date:, Message-ID:), never rewritten in place: the
  bytes the client sent stay byte-identical below what we add.
- Field lines we write are folded to stay under 998 octets (RFC 5322 §2.1.1).
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time

from postier.mail.headers import HeaderView

# RFC 5322 §3.6.8: field-name = 1*ftext (%d33-57 / %d59-126); §4.5.3: WSP before ":".
# Anchored matches on at most MAX_FIELD_PREFIX octets: linear, the classes are disjoint.
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
_MAYBE_FIELD = re.compile(rb"[!-9;-~]*[ \t]*")
MAX_FIELD_PREFIX = 998  # RFC 5322 §2.1.1: no line (so no name and colon) is longer
#: fields that count as a hop (Postfix's hopcount_limit counts Received:; Delivered-To:
#: marks a local loop)
HOP_FIELDS = frozenset({b"received", b"delivered-to"})


class HeaderScanner:
    """Client bytes in, message bytes out: finds where the header ends while the
    message streams in, counts hops, and adds the empty line a body needs.

    `feed` returns the bytes to store, holding back only the start of a line not
    yet known to be a field (at most `MAX_FIELD_PREFIX` octets), so the empty
    line can be inserted before it. `close` returns what is held back at the end
    of the data. Cost: one `find` per header line plus an anchored match of the
    line's start; after the header, `feed` returns its input untouched.
    """

    def __init__(self) -> None:
        self.done = False  # the end of the header has been seen
        self.inserted = False  # we added the empty line between header and body
        self.header_length = 0  # output octets of the header fields, line ends included
        self.body_offset = 0  # output octets before the body (after the empty line)
        self.hops = 0  # Received: and Delivered-To: fields in the header
        self._emitted = 0  # output octets returned so far
        self._pending = b""  # the start of a line not classified yet
        self._in_field = False  # inside a field's line: the rest of it is skipped
        self._any_field = False  # a continuation line needs a field before it

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        buf = self._pending + data if self._pending else data
        self._pending = b""
        pos, n = 0, len(buf)
        while pos < n:
            if self._in_field:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    pos = n
                    break
                pos = nl + 1
                self._in_field = False
                continue
            c = buf[pos]
            if c == 0x0A:  # an empty line (LF alone: BDAT is raw) ends the header
                return self._end(buf, pos, pos + 1)
            if c == 0x0D:
                if pos + 1 == n:
                    self._pending = buf[pos:]  # CR: an empty line, or not
                    break
                if buf[pos + 1] == 0x0A:
                    return self._end(buf, pos, pos + 2)
                return self._body_starts(buf, pos)
            if c in (0x20, 0x09):  # RFC 5322 §2.2.3: folded, continues the field above
                if not self._any_field:
                    return self._body_starts(buf, pos)
                self._in_field = True
                continue
            limit = pos + MAX_FIELD_PREFIX  # matched in place: no copy of the line
            m = _FIELD_NAME.match(buf, pos, limit)
            if m is not None:
                if m.group(1).lower() in HOP_FIELDS:
                    self.hops += 1
                self._any_field = self._in_field = True
                pos = m.end()
                continue
            if n < limit and _MAYBE_FIELD.fullmatch(buf, pos):
                self._pending = buf[pos:]  # may still become a field name: wait for more
                break
            return self._body_starts(buf, pos)
        out = buf[: n - len(self._pending)]
        self._emitted += len(out)
        return out

    def close(self) -> bytes:
        """The end of the data: classify what is held back and return it."""
        if self.done:
            return b""
        rest, self._pending = self._pending, b""
        if rest and rest != b"\r" and _FIELD_NAME.match(rest) is None:
            return self._body_starts(rest, 0)  # a last line that is no field is body
        self.done = True
        self.header_length = self.body_offset = self._emitted + len(rest)
        self._emitted += len(rest)
        return rest

    def _end(self, buf: bytes, blank: int, body: int) -> bytes:
        self.done = True
        self.header_length = self._emitted + blank
        self.body_offset = self._emitted + body
        self._emitted += len(buf)
        return buf

    def _body_starts(self, buf: bytes, pos: int) -> bytes:
        """The line at `pos` is the body's first: the header had no empty line."""
        self.done = self.inserted = True
        self.header_length = self._emitted + pos
        self.body_offset = self.header_length + 2
        out = buf[:pos] + b"\r\n" + buf[pos:]
        self._emitted += len(out)
        return out


def received(
    *,
    helo: str,
    client_ip: str,
    client_name: str | None,
    hostname: str,
    protocol: str,
    qid: str,
    tls: tuple[str, str] | None,
    auth_user: str | None,
    recipient: str | None,
    when: float | None = None,
) -> bytes:
    """A Received: field in the style of RFC 5321 §4.4 / RFC 3848 (``with``)."""
    ip = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    from_part = f"from {_clean(helo) or 'unknown'} ({_clean(client_name) or 'unknown'} [{ip}])"
    lines = [f"Received: {from_part}"]
    if tls is not None:
        lines.append(f"\t(using {tls[0]} with cipher {tls[1]})")
    if auth_user:
        lines.append(f"\t(Authenticated sender: {_clean(auth_user)})")
    by = f"\tby {hostname} (postier) with {protocol} id {qid}"
    date = _now_date() if when is None else email.utils.formatdate(when, localtime=True)
    if recipient:
        lines.append(by)
        lines.append(f"\tfor <{_clean(recipient)}>; {date}")
    else:
        lines.append(f"{by}; {date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


_date_of_second: tuple[int, str] = (0, "")


def _now_date() -> str:
    """The RFC 5322 date of now, in local time: made once a second, not once
    per message (`formatdate` was 2% of SMTP intake's loop time)."""
    global _date_of_second
    now = time.time()
    second, text = _date_of_second
    if int(now) != second:
        text = email.utils.formatdate(now, localtime=True)
        _date_of_second = (int(now), text)
    return text


def protocol_name(*, esmtp: bool, tls: bool, auth: bool, smtputf8: bool) -> str:
    """RFC 3848 / RFC 6531 §3.7.3 `with` keywords."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


def return_path(sender: str) -> bytes:
    return f"Return-Path: <{_clean(sender)}>\r\n".encode()


def completion(view: HeaderView, hostname: str) -> bytes:
    """Date: and Message-ID: fields a submitted message lacks (RFC 6409 §8.2-8.3)."""
    out = b""
    if not view.has("Date"):
        out += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode()
    if not view.has("Message-ID"):
        out += f"Message-ID: <{int(time.time())}.{secrets.token_hex(8)}@{hostname}>\r\n".encode()
    return out


def _clean(text: str | None) -> str:
    """Text from a peer made safe inside a header: no CR/LF, no control bytes, at
    most 255 octets of UTF-8 (not characters: two such texts share a line, which
    must stay under 998 octets, RFC 5322 §2.1.1)."""
    if not text:
        return ""
    if len(text) <= 255 and text.isascii() and text.isprintable():
        return text  # nothing to replace or cut (ASCII: printable = no control byte)
    text = re.sub(r"[\x00-\x1f\x7f]", "?", text[:255])
    return text.encode("utf-8", "replace")[:255].decode("utf-8", "ignore")
