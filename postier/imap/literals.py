"""Where large IMAP literals go while they arrive, and how much of them one user
may have in flight.

A literal the receiver holds in memory stays there until its command is complete,
however slowly the client sends the rest: two 45 MB literals announced in one
APPEND and never finished held ~92 MB for the whole autologout, on each of the 50
connections one address may open. So:

Rules:
- Only APPEND message data is ever large: outside APPEND, literal octets count
  towards `imap.max_line_length` with the command's text (as Dovecot's parser
  does), and the connection holds at most that much of a command in memory.
- APPEND literals beyond `imap.spool_threshold` (one literal, or this command's
  held octets with it) are written as they arrive to ``data_dir/spool/imap-*.tmp``
  (`LiteralFile`); the store takes the file as it is (renamed into the blob
  store). Startup sweeps the spool folder, so a crash leaves nothing behind; a
  command's files are removed when it ends, however it ends.
- `LiteralBudget`: the APPEND octets each user has announced and not yet stored,
  across all connections of the process, stay within `imap.user_literal_budget`;
  a literal past it is refused (``NO [LIMIT]``, try again later) before the
  client sends it (or, non-synchronising, thrown away with ``BAD [LIMIT]``).
- Writes go straight to the file from the event loop, as the SMTP spool does: one
  read's worth (64 KiB) at a time into the page cache; the store fsyncs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from postier.imap.receiver import SpooledLiteral


class LiteralFile:
    """One literal being written to the spool folder. A write that fails (disk
    full) marks it `failed` and later bytes are dropped: the command is answered
    NO once complete, the connection goes on."""

    def __init__(self, directory: Path) -> None:
        self.size = 0
        self.has_nul = False
        self.failed = False
        self.path = directory / f"imap-{secrets.token_hex(12)}.tmp"
        self._fd: int | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            self.failed = True

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.has_nul = self.has_nul or b"\x00" in data
        if self._fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self.failed = True
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def discard(self) -> None:
        """Close and remove the file (it may be gone already: the store took it)."""
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def spooled(self) -> SpooledLiteral:
        self.close()
        return SpooledLiteral(self.path, self.size, self.has_nul)


class LiteralBudget:
    """APPEND literal octets announced and not yet stored, per user id."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[int, int] = {}

    def held(self, user_id: int) -> int:
        return self._held.get(user_id, 0)

    def charge(self, user_id: int, octets: int) -> bool:
        """Reserve `octets` for the user; False (nothing reserved) past the limit."""
        held = self._held.get(user_id, 0)
        if held + octets > self.limit:
            return False
        self._held[user_id] = held + octets
        return True

    def release(self, user_id: int, octets: int) -> None:
        left = self._held.get(user_id, 0) - octets
        if left > 0:
            self._held[user_id] = left
        else:
            self._held.pop(user_id, None)
