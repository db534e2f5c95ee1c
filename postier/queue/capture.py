"""The development outbox: remote deliveries kept on this machine instead of sent.

With ``smtp.outbound.capture = true`` (written by `postier init --dev`) the queue
runner hands each entry's pending remote recipients here instead of routing them:
the message is kept exactly as it would have gone out (the stored DKIM signature
on top, intake's Return-Path: removed) and the entry completes as "captured".
Nothing leaves the machine; the web admin's Outbox and `postier queue captured`
show what would have.

Rules:
- Where: ``data_dir/outbox``, one ``<id>.eml`` (the bytes) and one ``<id>.json``
  (envelope and time) per captured message. Captured mail is development data,
  not mail anyone received: it lives beside the store rather than in it, so
  neither store backend grows a table for it, `postier backup` leaves it out,
  and ``rm -r data/outbox`` empties it.
- Durability order: the ``.eml`` is written (fsynced, renamed) before the
  ``.json``, and an id exists only once its ``.json`` does; both are written
  before the runner records the outcome. A crash between the two may capture a
  message twice, never zero times (the queue's rule for DSNs).
- Ids are made here (``<qid>`` or ``<qid>-<n>``) and checked against `ID_RE`
  when they come back from a URL or a command line: nothing typed becomes a path.
- The DKIM verdict is what a receiver would conclude, checked with the
  verifier intake uses (`mailauth.dkimverify`) against the keys this server
  publishes (its own key files), so a development server with no DNS still
  shows whether the signature it made verifies.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from postier.dns.fake import FakeResolver
from postier.durable import write_atomically
from postier.mail.headers import HeaderView
from postier.mailauth import dkim
from postier.mailauth.dkimverify import DkimResult, verify
from postier.mime.encoding import decode_words

if TYPE_CHECKING:
    from postier.store.api import Store

OUTBOX_DIR = "outbox"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass(frozen=True)
class Captured:
    id: str
    qid: str
    sender: str
    recipients: tuple[str, ...]
    captured: datetime
    size: int
    subject: str

    def meta(self) -> bytes:
        return json.dumps(
            {
                "qid": self.qid,
                "sender": self.sender,
                "recipients": list(self.recipients),
                "captured": self.captured.isoformat(),
                "size": self.size,
                "subject": self.subject,
            }
        ).encode()

    @classmethod
    def of_meta(cls, id_: str, data: bytes) -> Captured:
        d = json.loads(data)
        return cls(
            id=id_,
            qid=str(d["qid"]),
            sender=str(d["sender"]),
            recipients=tuple(str(r) for r in d["recipients"]),
            captured=datetime.fromisoformat(d["captured"]),
            size=int(d["size"]),
            subject=str(d.get("subject", "")),
        )


def outbox_dir(data_dir: Path) -> Path:
    return data_dir / OUTBOX_DIR


class Outbox:
    """The captured messages of one server (its ``data_dir/outbox``). Blocking:
    callers on the event loop use `asyncio.to_thread`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(
        self, qid: str, sender: str, recipients: list[str], data: bytes, now: datetime
    ) -> Captured:
        """Keep `data` for `recipients`; durable when it returns (see the rules)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        id_, n = qid, 1
        while (self.folder / f"{id_}.json").exists():
            n += 1
            id_ = f"{qid}-{n}"
        subjects = HeaderView.of(data).fields("Subject")
        subject = decode_words(subjects[0]) if subjects else ""
        item = Captured(
            id=id_,
            qid=qid,
            sender=sender,
            recipients=tuple(recipients),
            captured=now,
            size=len(data),
            subject=" ".join(subject.split())[:200],
        )
        write_atomically(self.folder / f"{id_}.eml", data, 0o600)
        write_atomically(self.folder / f"{id_}.json", item.meta(), 0o600)
        return item

    def list(self) -> list[Captured]:
        """Every captured message, newest first."""
        if not self.folder.is_dir():
            return []
        items = []
        for meta in self.folder.glob("*.json"):
            item = self.get(meta.stem)
            if item is not None:
                items.append(item)
        return sorted(items, key=lambda c: (c.captured, c.id), reverse=True)

    def get(self, id_: str) -> Captured | None:
        if not ID_RE.match(id_):
            return None
        try:
            return Captured.of_meta(id_, (self.folder / f"{id_}.json").read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def read(self, id_: str) -> bytes | None:
        """The message bytes of `id_` as they would have been sent, None if unknown."""
        if self.get(id_) is None:
            return None
        try:
            return (self.folder / f"{id_}.eml").read_bytes()
        except OSError:
            return None


async def own_keys_resolver(store: Store) -> FakeResolver:
    """A resolver answering only the DKIM key records this server publishes
    (those `postier dns-records` prints), from the keys its store keeps."""
    zones: dict[str, dict[str, list[str]]] = {}
    for d in await store.list_domains():
        if not d.dkim_selector:
            continue
        for key in await dkim.stored_keys(store, d.name, d.dkim_selector):
            zones[f"{key.selector}._domainkey.{key.domain}"] = {"TXT": [key.txt_record()]}
    return FakeResolver(zones)


async def dkim_verdict(data: bytes, store: Store) -> list[DkimResult]:
    """One result per DKIM-Signature of a captured message, verified against
    this server's published keys (empty: unsigned)."""
    return await verify(data, await own_keys_resolver(store))


def utcnow() -> datetime:
    return datetime.now(UTC)
