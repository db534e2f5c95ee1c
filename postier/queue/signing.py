"""DKIM signing of outgoing mail: which of our domains signs, with which keys.

Rules:
- The signing domain is the first From: domain with keys here, else the
  envelope sender's domain; mail from no local domain with keys is not signed.
- Keys are read from the store (`mailauth.dkim.stored_keys`: files of the data
  dir with SQLite, the database with PostgreSQL, one key for every node) and cached
  `cache_ttl` seconds per domain, so a key added by `postier domain add` is
  used within that time.
- A message is signed once, when it is queued (`queue.enqueue`); the signature
  is stored with the queue entry and prepended at every attempt. Only entries
  queued without one (before schema 9, or by a process without a signer) are
  signed by the runner at each attempt.
- Signing never stops mail: a dkimpy failure is logged and the message goes
  unsigned.
"""

from __future__ import annotations

import asyncio
import logging
import time

from postier.mail.headers import HeaderView
from postier.mailauth import dkim
from postier.mime.address import addresses
from postier.store.api import Store

log = logging.getLogger("postier.queue")


class DkimSigner:
    """Finds the keys of the signing domain (cached `cache_ttl` seconds) and signs."""

    def __init__(self, store: Store, *, cache_ttl: float = 60.0) -> None:
        self.store = store
        self.cache_ttl = cache_ttl
        self._keys: dict[str, tuple[float, list[dkim.DkimKey]]] = {}

    async def keys_for(self, domain: str) -> list[dkim.DkimKey]:
        hit = self._keys.get(domain)
        if hit and time.monotonic() - hit[0] < self.cache_ttl:
            return hit[1]
        keys: list[dkim.DkimKey] = []
        d = await self.store.get_domain(domain)
        if d is not None and d.dkim_selector:
            keys = await dkim.stored_keys(self.store, domain, d.dkim_selector)
        self._keys[domain] = (time.monotonic(), keys)
        return keys

    async def signature(self, data: bytes, sender: str) -> bytes:
        """The DKIM-Signature field(s) to put on top of `data` (the message as
        transmitted), or b"" when no local domain with keys sent it (or signing
        failed: logged, the mail still goes)."""
        view = HeaderView.of(data)
        candidates = [a.rpartition("@")[2] for a in addresses(view.fields("From"))]
        if sender:
            candidates.append(sender.rpartition("@")[2].lower())
        for domain in candidates:
            keys = await self.keys_for(domain.lower())
            if keys:
                try:
                    return await asyncio.to_thread(dkim.sign, data, keys)
                except dkim.DkimError:
                    log.exception("DKIM signing failed for %s", domain)
                    return b""
        return b""
