"""The message summary: what intake computes once per message so IMAP, POP3, search
and webmail never parse it again. A noun here because the parser (`postier.mime`)
makes it and the store keeps it: neither may own the other's type."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class MessageSummary:
    """What intake parses once so IMAP, POP3, search and webmail never re-parse.

    `envelope` and `bodystructure` are pre-serialised IMAP syntax (RFC 9051 §7.5.2),
    computed by `postier.mime`. The text fields are decoded (encoded-words undone).
    """

    envelope: bytes = b"NIL"
    bodystructure: bytes = b"NIL"
    body: bytes = b"NIL"  # the BODY (non-extensible BODYSTRUCTURE) form
    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    date: datetime | None = None  # the Date: header, if it parses
    message_id: str = ""
    preview: str = ""  # first characters of the text, for webmail lists
    header_size: int = 0  # octets up to and including the blank line
    #: octets with every bare LF sent as CRLF and a final CRLF (POP3 sizes, RFC 1939
    #: §11); -1 when unknown (blobs stored before it was recorded)
    crlf_size: int = -1
    #: the Bcc: addresses as `cc` has Cc:'s (a copy kept in Sent or Drafts names them)
    bcc: str = ""
