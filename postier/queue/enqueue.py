"""Entering the queue: what is worked out once per queued message, not per attempt.

Rules:
- The queue entry shares its blob with the local copies, which keep the
  Return-Path: intake wrote on top; it is never transmitted (RFC 5321 §4.4:
  the final delivery adds it). Its length is recorded with the entry
  (`return_path_size`), so an attempt sends ``blob[size:]`` without a scan.
- A message is DKIM-signed here, once, over the bytes as transmitted; the
  field(s) are stored with the entry (`dkim_signature`, b"" when nothing signs
  it) and prepended at every attempt. Bounces are never signed. So a key added
  or rotated while a message waits applies to messages queued after it (as
  with a signing milter at submission); the signature has no expiry (x=).
- Entries without these (queued before schema 9, or by a process without an
  `Enqueue`) have None: the runner strips and signs at each attempt, as it
  always did, so they keep working.
- Nothing here makes anything durable: the caller passes the entry to
  `Store.deliver`, which commits it with the blob.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from postier.queue.signing import DkimSigner
from postier.store.models import NewMessage, NewQueueEntry, QueueEntry

#: bytes read from a spooled file when only the Return-Path: is needed
_HEAD = 8192


def return_path_size(data: bytes, *, whole: bool = True) -> int | None:
    """Octets taken by a leading Return-Path: field (with its folded lines); 0
    when there is none. None when `data` is only the start of the message
    (`whole=False`) and the field does not end inside it."""
    if data[:12].lower() != b"return-path:":
        return 0
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return len(data) if whole else None
        pos = nl + 1
        if pos == len(data) and not whole:
            return None  # a folded line may follow
        if data[pos : pos + 1] not in (b" ", b"\t"):
            return pos


def strip_return_path(data: bytes) -> bytes:
    """`data` without a leading Return-Path: field (RFC 5321 §4.4)."""
    return data[return_path_size(data) or 0 :]


def transmitted(raw: bytes, entry: QueueEntry) -> bytes:
    """The queued message as it goes on the wire (before any DKIM-Signature)."""
    if entry.return_path_size is None:  # queued before schema 9
        return strip_return_path(raw)
    return raw[entry.return_path_size :]


class Enqueue:
    """Completes a `NewQueueEntry` before `Store.deliver` commits it."""

    def __init__(self, signer: DkimSigner | None) -> None:
        self.signer = signer

    async def prepare(
        self, message: NewMessage, entry: NewQueueEntry, content: bytes | None = None
    ) -> NewQueueEntry:
        """`entry` with its Return-Path size and (unless a bounce, or no signer)
        its DKIM signature. `content`: the spool file's bytes when the caller has
        read them already (intake's one parse); else the file is read, in a thread."""
        sign = self.signer is not None and not entry.is_bounce
        signature: bytes | None = b"" if entry.is_bounce else None
        if isinstance(message.data, bytes):
            whole = message.data
        elif sign or content is not None:
            whole = (
                message.head
                + (
                    content
                    if content is not None
                    else await asyncio.to_thread(message.data.read_bytes)
                )[message.skip :]
            )
        else:  # the size only: the head, and the start of the file
            start = await asyncio.to_thread(_read_head, message.data, message.skip)
            probe = message.head + start
            size = return_path_size(probe, whole=len(start) < _HEAD)
            return replace(entry, return_path_size=size, dkim_signature=signature)
        skip = return_path_size(whole) or 0
        if sign:
            assert self.signer is not None
            signature = await self.signer.signature(whole[skip:], entry.sender)
        return replace(entry, return_path_size=skip, dkim_signature=signature)


def _read_head(path: Path, skip: int) -> bytes:
    with path.open("rb") as f:
        f.seek(skip)
        return f.read(_HEAD)
