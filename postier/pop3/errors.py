"""POP3 core errors, split as in h11: who broke the protocol.

Rules:
- `LocalProtocolError`: *we* broke the protocol — the adapter called a method in
  the wrong state (answered a hook that was not asked, fed bytes after EOF, gave a
  maildrop with an invalid unique-id). It is a bug in postier; never caught by the
  core, and the adapter lets it reach its boundary (log with the session id, close).
- `RemoteProtocolError`: the *peer* did; it carries the `-ERR` response to send.
  The core raises it internally while parsing a command line and always turns it
  into a reply itself, so it never escapes `ServerConnection.next_event()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postier.pop3.commands import Response


class ProtocolError(Exception):
    """Base of the POP3 core's errors."""


class LocalProtocolError(ProtocolError):
    """postier misused the core (a bug in the adapter); the message says how."""


class RemoteProtocolError(ProtocolError):
    """The client sent something invalid; `response` is the `-ERR` line to send.

    `counts` says whether the error counts towards the connection's error limit
    (syntax errors, unknown and out-of-state commands do; "no such message" does not).
    """

    def __init__(self, response: Response, *, counts: bool = True) -> None:
        super().__init__(response.text)
        self.response = response
        self.counts = counts
