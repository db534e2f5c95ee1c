"""URLAUTH (RFC 4467, RFC 5092 §6.1): signing IMAP URLs with a mailbox access key,
and resolving signed URLs into message data. IMAP uses it for GENURLAUTH, URLFETCH
and RESETKEY, SMTP submission for BURL (RFC 4468); it sits below both so neither
protocol imports the other, and BURL needs no IMAP connection to ourselves.

Rules:
- One mechanism, INTERNAL: the token is HMAC-SHA256 (RFC 2104) over the rump URL
  exactly as written (everything up to and including the access identifier, RFC
  4467 §3), keyed with the mailbox access key: 32 random octets kept by the store
  (`Store.access_key`), made on first use, forgotten by RESETKEY. Hex, 64 digits
  (RFC 5092 §6.1.1.5 asks for at least 128 bits). Tokens compare in constant time.
- A URL is ours when its host is `server.hostname` (case-insensitive); the port is
  not checked (it names the same server). Its user is the mailbox owner, a full
  address (%40 for "@"), compared case-insensitively.
- GENURLAUTH signs only URLs of the session's own user, naming a message that
  exists (mailbox, UIDVALIDITY when given, UID), not yet expired, for an access
  identifier the server honours (RFC 4467 §6.2).
- Who may resolve a URL (RFC 5092 §6.1.2): ``submit+X`` only the submission server
  acting for X (BURL, where X is the authenticated SMTP user, RFC 4468 §3.3);
  ``user+X`` only an IMAP session of X; ``authuser`` any authenticated user;
  ``anonymous`` anyone, and only when `imap.urlauth_anonymous` allows it (off by
  default: such a URL is readable by whoever holds it).
- Every refusal is a `UrlAuthError` with a `Failure` kind the protocols map to
  their replies (URLFETCH: NIL; BURL: 554 5.7.0 and friends). A missing user or
  mailbox, a stale UIDVALIDITY and a wrong token look alike and cost alike: the
  HMAC is computed with a throwaway key (RFC 4467 §7: no probing of names).
- The data is BODY.PEEK[section]<partial> (RFC 5092 §6): resolving never sets
  \\Seen. A section that names no part is `Failure.MISSING`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from postier import mime
from postier.mail.imapurl import ImapUrl, UrlError, parse
from postier.mime.sections import SectionError
from postier.offload import INLINE_MAX
from postier.store.api import Store
from postier.store.errors import NotFound
from postier.store.models import Mailbox, Uid, User

#: the mechanisms GENURLAUTH and URLFETCH accept (RFC 4467 §7), upper case
MECHANISMS = ("INTERNAL",)
KEY_SIZE = 32


class Failure(enum.Enum):
    INVALID = "invalid"  # not a URLAUTH URL of the needed form, or a mechanism we lack
    UNSIGNED = "unsigned"  # a plain URL of a message, without a URLAUTH verifier
    FOREIGN = "foreign"  # the URL names another server
    DENIED = "denied"  # access identifier, token or expiry does not allow it
    MISSING = "missing"  # the message or part is not there (any more)


class UrlAuthError(Exception):
    """A URL refused; `failure` says why in a form a protocol maps to a reply."""

    def __init__(self, failure: Failure, text: str) -> None:
        super().__init__(text)
        self.failure = failure
        self.text = text


@dataclass(frozen=True)
class Requester:
    """Who resolves a URL: an authenticated `user` (None: anonymous), acting as the
    submission server for that user when `submit` (BURL)."""

    user: User | None
    submit: bool = False


def token(key: bytes, rump: str) -> str:
    """The INTERNAL mechanism's token for a rump URL (hex HMAC-SHA256)."""
    return hmac.new(key, rump.encode("utf-8"), hashlib.sha256).hexdigest()


class UrlAuth:
    def __init__(
        self,
        store: Store,
        hostname: str,
        *,
        allow_anonymous: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.hostname = hostname.lower().rstrip(".")
        self.allow_anonymous = allow_anonymous
        self._now = now

    # --- GENURLAUTH ------------------------------------------------------------------
    async def generate(self, user: User, rump: str, mechanism: str) -> str:
        """The authorized URL for `rump` (RFC 4467 §6.2): rump ":" mechanism ":" token."""
        if mechanism.upper() not in MECHANISMS:
            raise UrlAuthError(Failure.INVALID, f"Unsupported URLAUTH mechanism {mechanism}")
        url = self._parse(rump)
        if url.mechanism is not None:
            raise UrlAuthError(Failure.INVALID, "Not a rump URL: it carries a token already")
        if url.user is None or url.user.lower() != user.address:
            raise UrlAuthError(Failure.DENIED, "Only URLs of your own mailboxes can be signed")
        self._check_expiry(url)
        assert url.access is not None
        if url.access.lower() == "anonymous" and not self.allow_anonymous:
            raise UrlAuthError(Failure.DENIED, "Anonymous URLAUTH is not allowed here")
        mailbox = await self.store.get_mailbox(user.id, url.mailbox or "")
        if mailbox is None or url.uidvalidity not in (None, mailbox.uidvalidity):
            raise UrlAuthError(Failure.MISSING, "No such mailbox")
        assert url.uid is not None
        if await self.store.get_message(mailbox.id, Uid(url.uid)) is None:
            raise UrlAuthError(Failure.MISSING, "No such message")
        key = await self._key(mailbox, create=True)
        assert key is not None
        return f"{rump}:{mechanism}:{token(key, rump)}"

    # --- URLFETCH, BURL --------------------------------------------------------------
    async def fetch(self, text: str, requester: Requester) -> bytes:
        """The data an authorized URL names, for `requester`; `UrlAuthError` otherwise."""
        url = self._parse(text, signed=True)
        if url.mechanism is None or url.token is None or url.rump is None:
            raise UrlAuthError(Failure.INVALID, "The URL carries no URLAUTH token")
        if url.mechanism not in MECHANISMS:
            raise UrlAuthError(Failure.INVALID, f"Unsupported URLAUTH mechanism {url.mechanism}")
        if url.user is None:
            raise UrlAuthError(Failure.INVALID, "The URL names no user")
        self._check_expiry(url)
        self._check_access(url, requester)
        mailbox = await self._mailbox(url)
        key = await self._key(mailbox, create=False) if mailbox is not None else None
        expected = token(key or secrets.token_bytes(KEY_SIZE), url.rump)
        if not hmac.compare_digest(expected, url.token) or mailbox is None or key is None:
            raise UrlAuthError(Failure.DENIED, "URLAUTH verification failed")
        assert url.uid is not None
        message = await self.store.get_message(mailbox.id, Uid(url.uid))
        if message is None:
            raise UrlAuthError(Failure.MISSING, "The message is gone")
        try:
            data = await self.store.read_blob(message.blob_id)
        except NotFound:
            raise UrlAuthError(Failure.MISSING, "The message is gone") from None
        if url.section and len(data) > INLINE_MAX:
            # the message is parsed to find the section: linear, but 100,000
            # header fields took 124 ms, too long for the event loop
            return await asyncio.to_thread(_part, data, url)
        return _part(data, url)

    # --- RESETKEY --------------------------------------------------------------------
    async def reset(self, user: User, mailbox: Mailbox | None = None) -> None:
        """Forget the key of one mailbox, or all of the user's (RFC 4467 §6.1)."""
        await self.store.reset_access_keys(user.id, None if mailbox is None else mailbox.id)

    # --- checks ----------------------------------------------------------------------
    def _parse(self, text: str, *, signed: bool = False) -> ImapUrl:
        try:
            url = parse(text)
        except UrlError as e:
            raise UrlAuthError(Failure.INVALID, f"Invalid URL: {e}") from None
        if signed and url.is_message and url.access is None:
            raise UrlAuthError(Failure.UNSIGNED, "The URL carries no URLAUTH token")
        if not url.is_message or url.access is None or url.rump is None:
            raise UrlAuthError(Failure.INVALID, "Not a URLAUTH URL of a message")
        if url.host.rstrip(".") != self.hostname:
            raise UrlAuthError(Failure.FOREIGN, "The URL names another server")
        return url

    def _check_expiry(self, url: ImapUrl) -> None:
        if url.expire is not None:
            expire = url.expire if url.expire.tzinfo else url.expire.replace(tzinfo=UTC)
            if expire <= self._now():
                raise UrlAuthError(Failure.DENIED, "The URL has expired")  # RFC 5092 §6.1.2

    def _check_access(self, url: ImapUrl, requester: Requester) -> None:
        assert url.access is not None
        kind, _, enc_user = url.access.partition("+")
        kind = kind.lower()
        try:
            who = unquote(enc_user, errors="strict")  # %-encoded UTF-8 (RFC 5092 §8)
        except UnicodeDecodeError:
            who = ""  # matches nobody
        user = requester.user
        if kind == "submit":  # RFC 4468 §3.3: the submit client's identity
            ok = requester.submit and user is not None and who.lower() == user.address
        elif kind == "user":
            ok = not requester.submit and user is not None and who.lower() == user.address
        elif kind == "authuser":
            ok = user is not None
        else:  # anonymous
            ok = self.allow_anonymous
        if not ok:
            raise UrlAuthError(Failure.DENIED, f"Access {url.access} is not granted to you")

    async def _mailbox(self, url: ImapUrl) -> Mailbox | None:
        assert url.user is not None
        assert url.mailbox is not None
        owner = await self.store.get_user(url.user)
        if owner is None or owner.disabled:
            return None
        mailbox = await self.store.get_mailbox(owner.id, url.mailbox)
        if mailbox is None or url.uidvalidity not in (None, mailbox.uidvalidity):
            return None  # RFC 5092 §5: a stale URL is as if the mailbox did not exist
        return mailbox

    async def _key(self, mailbox: Mailbox, *, create: bool) -> bytes | None:
        key = await self.store.access_key(mailbox.id)
        if key is None and create:
            key = await self.store.access_key(mailbox.id, secrets.token_bytes(KEY_SIZE))
        return key


def _part(data: bytes, url: ImapUrl) -> bytes:
    """BODY.PEEK[section]<partial> of the message bytes (RFC 5092 §6)."""
    out: bytes | None = data
    if url.section:
        try:
            section = mime.Section.parse(url.section)
        except SectionError:
            raise UrlAuthError(Failure.INVALID, "Invalid SECTION") from None
        out = mime.extract(data, mime.parse(data), section)
    if out is None:
        raise UrlAuthError(Failure.MISSING, "No such part")
    if url.partial is not None:
        out = mime.partial(out, url.partial[0], url.partial[1])
    return out
