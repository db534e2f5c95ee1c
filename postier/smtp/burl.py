"""BURL (RFC 4468): the submission server takes a message, or a piece of one, from
the user's own IMAP store by URLAUTH URL, through the same check IMAP URLFETCH uses
(`postier.auth.urlauth`), in process: no IMAP connection to ourselves.

Rules:
- Only URLs with a ``submit+`` access identifier naming the authenticated SMTP user
  resolve here (RFC 4468 §3.3: the submit server refuses other userids); also
  ``authuser``, since the submission server is an authenticated user of the store;
  never ``user+`` (an IMAP session's identity) nor, unless allowed, ``anonymous``.
- Replies follow RFC 4468 §6: a URL of another server, or one without URLAUTH (a
  plain URL would need a trust relationship), ``554 5.7.8``; a refused token,
  access identifier or expiry ``554 5.7.0``; nothing at the URL (or not a URL)
  ``554 5.6.6``; data with NUL octets, which 8BITMIME cannot carry and which we do
  not convert, ``554 5.6.3``; a store failure ``451 4.4.1``. Every one of them
  fails the whole transaction (the core ends it).
- The fetched bytes go where BDAT's would: after the Received: field the session
  wrote, through the same end-of-data checks (From: ownership, Date:, Message-ID:).
"""

from __future__ import annotations

import logging

from postier.auth.urlauth import Failure, Requester, UrlAuth, UrlAuthError
from postier.config.schema import Settings
from postier.mail.replies import (
    R451_BURL_UNAVAILABLE,
    R530_AUTH_REQUIRED,
    R554_BURL_AUTH_FAILED,
    R554_BURL_CONVERSION,
    R554_BURL_NOT_RESOLVED,
    R554_BURL_TRUST_REQUIRED,
    Reply,
)
from postier.store.api import Store
from postier.store.errors import StoreError
from postier.store.models import User

log = logging.getLogger("postier.smtp")

_REPLIES = {
    Failure.INVALID: R554_BURL_NOT_RESOLVED,
    Failure.MISSING: R554_BURL_NOT_RESOLVED,
    Failure.UNSIGNED: R554_BURL_TRUST_REQUIRED,
    Failure.FOREIGN: R554_BURL_TRUST_REQUIRED,
    Failure.DENIED: R554_BURL_AUTH_FAILED,
}


async def resolve(
    store: Store, settings: Settings, user: User | None, url: str, *, sid: str
) -> bytes | Reply:
    """The bytes `url` names for the SMTP `user`, or the reply that fails the
    transaction."""
    if user is None:
        return R530_AUTH_REQUIRED
    service = UrlAuth(
        store, settings.server.hostname, allow_anonymous=settings.imap.urlauth_anonymous
    )
    try:
        data = await service.fetch(url, Requester(user, submit=True))
    except UrlAuthError as e:
        log.info("sid=%s BURL refused for %s: %s", sid, user.address, e.text)
        return _REPLIES[e.failure]
    except StoreError as e:
        log.warning("sid=%s BURL store failure: %s", sid, e)
        return R451_BURL_UNAVAILABLE
    if b"\x00" in data:
        return R554_BURL_CONVERSION  # RFC 4468 §4: binary data, no down-conversion
    log.info("sid=%s BURL %d octets for %s", sid, len(data), user.address)
    return data
