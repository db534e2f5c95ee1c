"""IMAP protocol errors: who broke the protocol, and what to answer.

Rules (after h11's `_util.py`):
- `LocalProtocolError`: postier itself tried to do something the protocol forbids
  (a bug, e.g. serialising a tag that is not an atom). Never sent to the peer.
- `RemoteProtocolError`: the client did; it carries everything needed to build the
  answer: the tag (None when it is unknown, then the answer is untagged), the status
  (`BAD`, or `NO` where an RFC asks for it, e.g. BADCHARSET), an optional response
  code and human text, and whether the connection must be closed (`BYE`).
- `ParseError` is the `RemoteProtocolError` the command parser raises.
- Texts never contain CR or LF; the serialiser strips them anyway.
"""

from __future__ import annotations


class ImapError(Exception):
    """Base class of the errors of `postier.imap`."""


class LocalProtocolError(ImapError):
    """We were about to break the protocol: a bug in postier, never the peer's fault."""


class RemoteProtocolError(ImapError):
    """The client broke the protocol; `response()` is the answer to send."""

    def __init__(
        self,
        text: str,
        *,
        tag: str | None = None,
        code: str | None = None,
        status: str = "BAD",
        fatal: bool = False,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.tag = tag
        self.code = code
        self.status = status
        #: the connection cannot be resynchronised: answer with BYE and close it
        self.fatal = fatal

    def response(self) -> bytes:
        """The exact bytes to send: tagged when the tag is known, untagged otherwise;
        `* BYE ...` when fatal (RFC 9051 §7.1.5)."""
        from postier.imap.responses import status_response  # avoid an import cycle

        if self.fatal:
            return status_response(None, "BYE", self.text, code=self.code)
        return status_response(self.tag, self.status, self.text, code=self.code)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.text!r}, tag={self.tag!r}, code={self.code!r}, "
            f"status={self.status!r}, fatal={self.fatal!r})"
        )


class ParseError(RemoteProtocolError):
    """A complete command line that does not follow the RFC 9051 §9 grammar (or a
    limit of the parser); answer with `response()`."""
