"""The octets an IMAP URL (RFC 5092) names in the session user's own mailboxes:
what CATENATE (RFC 4469) copies into a new message (and URLFETCH may serve).

Rules:
- A URL is resolved against the session's base URL: ``imap://user@host/`` and,
  when a mailbox is selected, that mailbox with its UIDVALIDITY (as Dovecot does),
  so ``;UID=5`` names a message of the selected mailbox and ``/Sent/;UID=3`` one
  of Sent. An absolute URL must name this server (`server.hostname`) and, if it
  names a user, the session's user: no URL reaches another user's mail, since
  every mailbox is looked up with the session's user id.
- Only message URLs (mailbox, UID, optional SECTION and PARTIAL) are accepted; a
  mailbox or search URL, a URLAUTH URL, a UIDVALIDITY that is not the mailbox's,
  a message that is gone, or a section naming nothing is `BadUrl`, which the
  caller answers ``NO [BADURL url]`` (RFC 4469 §5).
- SECTION is a section-spec as in FETCH BODY[...] (RFC 5092 §5); PARTIAL cuts
  the section's octets like BODY[...]<start.length>.
- One `PartReader` per command reads each message once and at most a budget of
  octets in all: the cost stays linear in what the command names.
"""

from __future__ import annotations

from postier import mime
from postier.imap.commands.context import Context
from postier.imap.matcher import in_search_thread
from postier.mail.imapurl import ImapUrl, UrlError, parse, quote_mailbox, quote_user
from postier.offload import INLINE_MAX
from postier.store.models import BlobId, Uid


class BadUrl(Exception):
    """The URL names nothing this session may read; `text` says why."""

    def __init__(self, url: str, text: str) -> None:
        super().__init__(text)
        self.url = url
        self.text = text


def base_url(ctx: Context) -> str:
    """The session's base for relative URLs."""
    s = ctx.session
    assert s.user is not None
    out = f"imap://{quote_user(s.user.address)}@{ctx.settings.server.hostname.lower()}/"
    if s.view is not None:
        out += f"{quote_mailbox(s.view.name)};UIDVALIDITY={s.view.uidvalidity}/"
    return out


def resolve(ctx: Context, text: str) -> ImapUrl:
    """`text` as a message URL of this session's user; `BadUrl` otherwise."""
    s = ctx.session
    assert s.user is not None
    try:
        url = parse(text, base_url(ctx))
    except UrlError as e:
        raise BadUrl(text, f"Invalid IMAP URL: {e}") from None
    if url.host != ctx.settings.server.hostname.lower() or url.port is not None:
        raise BadUrl(text, "URL names another server")
    if url.user is not None and url.user.lower() != s.user.address.lower():
        raise BadUrl(text, "URL names another user")
    if url.access is not None:
        raise BadUrl(text, "URLAUTH URLs are not accepted here")
    if not url.is_message:
        raise BadUrl(text, "URL names no message")
    return url


class PartReader:
    """Reads the parts URLs name for one command: each message's bytes are read
    (and parsed) once however often URLs name it, and at most `budget` octets of
    messages are read in all (`BadUrl` past it), so a command of a thousand URLs
    into one large message costs one read, not a thousand."""

    def __init__(self, ctx: Context, budget: int) -> None:
        self.ctx = ctx
        self.budget = budget
        self._data: dict[BlobId, bytes] = {}
        self._roots: dict[BlobId, mime.Part] = {}

    async def read(self, text: str) -> bytes:
        """The octets the message URL `text` names (`BadUrl` when none)."""
        ctx = self.ctx
        url = resolve(ctx, text)
        assert url.mailbox is not None
        assert url.uid is not None
        mbox = await ctx.mailbox(url.mailbox)
        if mbox is None:
            raise BadUrl(text, "No such mailbox")
        if url.uidvalidity is not None and url.uidvalidity != mbox.uidvalidity:
            raise BadUrl(text, "UIDVALIDITY does not match")  # RFC 5092 §6
        message = await ctx.store.get_message(mbox.id, Uid(url.uid))
        if message is None:
            raise BadUrl(text, "No such message")
        data = self._data.get(message.blob_id)
        if data is None:
            if message.size > self.budget:
                raise BadUrl(text, "Too much message data named in one command")
            self.budget -= message.size
            data = self._data[message.blob_id] = await ctx.store.read_blob(message.blob_id)
        if url.section is not None:
            try:
                section = mime.Section.parse(url.section)
            except mime.SectionError as e:
                raise BadUrl(text, f"Invalid section: {e}") from None
            known = self._roots.get(message.blob_id)
            if len(data) <= INLINE_MAX:
                root, part = _cut(data, known, section)
            else:  # off the loop, as FETCH's sections (100,000 header fields: 124 ms)
                root, part = await in_search_thread(_cut, data, known, section)
            self._roots[message.blob_id] = root
            if part is None:
                raise BadUrl(text, "No such section")
            data = part
        if url.partial is not None:
            data = mime.partial(data, url.partial[0], url.partial[1])
        return data


def _cut(
    data: bytes, root: mime.Part | None, section: mime.Section
) -> tuple[mime.Part, bytes | None]:
    """The section's octets, the message parsed first when `root` is None."""
    if root is None:
        root = mime.parse(data)
    return root, mime.extract(data, root, section)
