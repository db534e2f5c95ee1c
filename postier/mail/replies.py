"""SMTP replies: `Reply` (code, enhanced status code, text) and the named replies postier sends.

In `mail` because the SMTP core, intake, every filter stage and the submission
path answer with them, and none of those may own the others' type.

Rules:
- One definition per reply: the SMTP core, intake and the adapter all take theirs
  from here (a filter stage's own refusal lives with its stage), so the text a test
  checks is the text production sends.
- Constants carry their number (``R250_OK``), as mox's smtp/codes.go does, so a reply
  is found with grep. Replies that name an address or a value are functions with the
  same naming (``R550_NO_SUCH_USER(address)``).
- Every 2xx, 4xx and 5xx reply carries an enhanced status code (RFC 3463, announced
  with ENHANCEDSTATUSCODES, RFC 2034 §3) except the 220 greeting and the replies to
  EHLO/HELO, which RFC 2034 §3 exempts; 3xx replies (354, 334) carry none.
- Reply text is ASCII printable (RFC 5321 §4.2 ``textstring``): `to_bytes` replaces
  anything else by ``?`` so an address or a client's word can never break a reply
  line or inject one. A ``\\n`` in the text makes a multi-line reply (``250-...``,
  RFC 5321 §4.2.1), each line repeating the enhanced code (RFC 2034 §3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5321 §4.2: textstring = 1*(%d09 / %d32-126); we drop the tab too.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply. ``enhanced`` is ``"x.y.z"`` or None (greeting, EHLO, 3xx)."""

    code: int
    enhanced: str | None
    text: str

    @property
    def is_positive(self) -> bool:
        """2xx or 3xx: the command succeeded or goes on (RFC 5321 §4.2.1)."""
        return self.code < 400

    @property
    def is_closing(self) -> bool:
        """421: the server closes the channel after this reply (RFC 5321 §3.8)."""
        return self.code == 421

    def to_bytes(self) -> bytes:
        """The reply on the wire, CRLF-terminated; multi-line when text has ``\\n``.
        Worked out once per reply: the named replies are sent over and over. Kept
        beside the fields by hand: `functools.cached_property` takes a lock at each
        first access (Python 3.11), and the end-of-data reply is new each message."""
        wire: bytes | None = self.__dict__.get("_wire")
        if wire is None:
            wire = self.__dict__["_wire"] = self._format()
        return wire

    def _format(self) -> bytes:
        text = self.text
        prefix = f"{self.enhanced} " if self.enhanced else ""
        if "\n" not in text and text.isascii() and text.isprintable():
            return f"{self.code} {prefix}{text}\r\n".encode("ascii")  # one clean line
        out = []
        lines = text.split("\n")
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"  # RFC 5321 §4.2.1
            clean = _UNPRINTABLE.sub("?", line.rstrip("\r"))
            out.append(f"{self.code}{sep}{prefix}{clean}\r\n")
        return "".join(out).encode("ascii")

    def __str__(self) -> str:
        return self.to_bytes().decode("ascii").rstrip("\r\n")


def _r(code: int, enhanced: str | None, text: str) -> Reply:
    return Reply(code, enhanced, text)


# --- 2xx -----------------------------------------------------------------------------
def R220_READY(hostname: str) -> Reply:
    """The greeting (RFC 5321 §4.3.1); no enhanced code (RFC 2034 §3)."""
    return _r(220, None, f"{hostname} ESMTP postier")


R214_HELP = _r(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")
R220_TLS_READY = _r(220, "2.0.0", "Ready to start TLS")  # RFC 3207 §4
R221_BYE = _r(221, "2.0.0", "Bye")
R235_AUTH_OK = _r(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
R250_OK = _r(250, "2.0.0", "Ok")
R250_SENDER_OK = _r(250, "2.1.0", "Ok")
R250_RECIPIENT_OK = _r(250, "2.1.5", "Ok")
R252_CANNOT_VRFY = _r(
    252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"
)


def R250_QUEUED(queue_id: str) -> Reply:
    """The end-of-data reply once the message is durable (rule zero: a 250 means on disk)."""
    return _r(250, "2.0.0", f"Ok: queued as {queue_id}")


def R250_CHUNK_OK(size: int) -> Reply:
    """Reply to a BDAT chunk that is not the last one (RFC 3030 §2)."""
    return _r(250, "2.0.0", f"Ok: {size} bytes")


# --- 3xx -----------------------------------------------------------------------------
R250_BURL_OK = _r(250, "2.5.0", "Waiting for additional BURL or BDAT commands")  # RFC 4468 §6
R354_START_DATA = _r(354, None, "End data with <CR><LF>.<CR><LF>")


def R334_CHALLENGE(challenge: str) -> Reply:
    """SASL continuation (RFC 4954 §4): base64 text, empty for PLAIN's first step."""
    return _r(334, None, challenge)


# --- 4xx -----------------------------------------------------------------------------
R421_TOO_MANY_ERRORS = _r(421, "4.7.0", "Too many errors, closing connection")


def R421_TIMEOUT_EXCEEDED(hostname: str) -> Reply:
    """A client too slow (idle, or a command line or message data past its deadline);
    the domain first as RFC 5321 §4.2.3 shows for 421, Postfix's wording after it."""
    return _r(421, "4.4.2", f"{hostname} Error: timeout exceeded")


R421_SHUTTING_DOWN = _r(421, "4.3.2", "Service shutting down, try again later")
R451_LOCAL_ERROR = _r(451, "4.3.0", "Local error in processing, try again later")
R452_TOO_MANY_RECIPIENTS = _r(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
R454_TLS_NOT_AVAILABLE = _r(454, "4.7.0", "TLS not available due to temporary reason")
R454_AUTH_LOCKED = _r(454, "4.7.0", "Too many failed logins, try again later")


def R452_MAILBOX_FULL(address: str) -> Reply:
    """A recipient over quota: temporary, so the sender retries after mail is deleted."""
    return _r(452, "4.2.2", f"<{address}>: Mailbox full, try again later")


# --- 5xx: syntax and sequence (the core's own) ------------------------------------------
R500_UNKNOWN_COMMAND = _r(500, "5.5.2", "Error: command not recognized")
R500_LINE_TOO_LONG = _r(500, "5.5.2", "Line too long")  # RFC 5321 §4.5.3.1.4
R500_BAD_CHARACTER = _r(500, "5.5.2", "Error: bad character in command")
R500_BAD_UTF8 = _r(500, "5.5.2", "Error: invalid UTF-8 in command")
R501_BAD_SENDER = _r(501, "5.1.7", "Bad sender address syntax")  # RFC 3463 X.1.7
R501_BAD_RECIPIENT = _r(501, "5.1.3", "Bad recipient address syntax")  # RFC 3463 X.1.3
R501_AUTH_CANCELLED = _r(501, "5.0.0", "Authentication cancelled")  # RFC 4954 §4
R501_AUTH_BAD_ENCODING = _r(501, "5.5.2", "Cannot decode response")  # RFC 4954 §4
R502_NOT_IMPLEMENTED = _r(502, "5.5.1", "Error: command not implemented")
R503_HELLO_FIRST = _r(503, "5.5.1", "Error: send HELO/EHLO first")
R503_NESTED_MAIL = _r(503, "5.5.1", "Error: nested MAIL command")
R503_NEED_MAIL = _r(503, "5.5.1", "Error: need MAIL command")
R503_NEED_RCPT = _r(503, "5.5.1", "Error: need RCPT command")
R503_IN_TRANSACTION = _r(503, "5.5.1", "Error: MAIL transaction in progress")
R503_ALREADY_AUTHENTICATED = _r(503, "5.5.1", "Error: already authenticated")  # RFC 4954 §4
R503_AUTH_NOT_ENABLED = _r(503, "5.5.1", "Error: authentication not enabled")
R503_TLS_ACTIVE = _r(503, "5.5.1", "Error: TLS already active")
R503_BDAT_IN_PROGRESS = _r(503, "5.5.1", "Error: BDAT transfer in progress")  # RFC 3030 §2
R503_BINARYMIME_NEEDS_BDAT = _r(503, "5.5.1", "Error: BINARYMIME requires BDAT")  # RFC 3030 §3
R503_NO_SERVICE = _r(503, "5.5.1", "Error: no SMTP service here, send QUIT")  # RFC 5321 §3.1
R504_AUTH_MECHANISM = _r(504, "5.5.4", "Unrecognized authentication type")  # RFC 4954 §6


def R501_SYNTAX(usage: str) -> Reply:
    """Argument syntax error; ``usage`` shows the expected form."""
    return _r(501, "5.5.4", f"Syntax: {usage}")


def R501_BAD_PARAMETER(name: str) -> Reply:
    """A known ESMTP parameter with a bad value or given twice."""
    return _r(501, "5.5.4", f"Bad {name} parameter")


def R555_UNSUPPORTED_PARAMETER(name: str) -> Reply:
    """RFC 5321 §4.1.1.11: MAIL/RCPT parameter not recognized or not implemented."""
    return _r(555, "5.5.4", f"Unsupported option: {name}")


# --- 5xx: policy (the session's) ------------------------------------------------------
R530_AUTH_REQUIRED = _r(530, "5.7.0", "Authentication required")  # RFC 4954 §6
R530_STARTTLS_FIRST = _r(530, "5.7.0", "Must issue a STARTTLS command first")  # RFC 3207 §4
R535_AUTH_FAILED = _r(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
R538_ENCRYPTION_REQUIRED = _r(  # RFC 4954 §6
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
R552_MESSAGE_TOO_BIG = _r(  # RFC 1870 §6.1, RFC 3463 X.3.4
    552, "5.3.4", "Message size exceeds fixed maximum message size"
)
R553_NULL_SENDER = _r(553, "5.7.1", "Null sender not allowed on submission")
R553_FROM_NOT_OWNER = _r(553, "5.7.1", "From: header address not owned by user")
R550_NO_FROM = _r(550, "5.6.0", "Message has no From: header")  # RFC 5322 §3.6: From: is required
R553_NON_ASCII_ADDRESS = _r(  # RFC 6531 §3.5
    553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter"
)
# RFC 5321 §2.3.8; the text is ASCII (§4.2), so "section", not the section sign.
R554_BARE_LF = _r(
    554, "5.5.2", "Message contains bare LF/CR, rejected (see RFC 5321 section 2.3.8)"
)
# BURL (RFC 4468 §6)
R451_BURL_UNAVAILABLE = _r(451, "4.4.1", "IMAP URL resolution temporarily failed")
R554_BURL_TOO_BIG = _r(554, "5.3.4", "Message too big for system")
R554_BURL_CONVERSION = _r(554, "5.6.3", "Conversion required but not supported")
R554_BURL_NOT_RESOLVED = _r(554, "5.6.6", "IMAP URL resolution failed")
R554_BURL_AUTH_FAILED = _r(554, "5.7.0", "IMAP URL authorization failed")
R554_BURL_TRUST_REQUIRED = _r(554, "5.7.8", "URL resolution requires trust relationship")
R554_NO_VALID_RECIPIENTS = _r(554, "5.5.1", "Error: no valid recipients")
R554_TOO_MANY_HOPS = _r(554, "5.4.6", "Too many hops")  # RFC 5321 §6.3; RFC 3463 X.4.6 loop
R554_EMPTY_MESSAGE = _r(554, "5.6.0", "Message is empty")  # zero octets: nothing to deliver
R554_NO_SERVICE = _r(554, "5.3.2", "No SMTP service here")  # RFC 5321 §3.1 greeting
R554_EARLY_TALKER = _r(554, "5.5.0", "Error: SMTP protocol synchronization")


def R550_NO_SUCH_USER(address: str) -> Reply:
    return _r(550, "5.1.1", f"<{address}>: Recipient address rejected: User unknown")


def R554_RELAY_DENIED(address: str) -> Reply:
    return _r(554, "5.7.1", f"<{address}>: Relay access denied")


def R553_NOT_OWNER(address: str) -> Reply:
    """MAIL FROM on submission names an address the user does not own."""
    return _r(553, "5.7.1", f"<{address}>: Sender address rejected: not owned by user")
