"""Password hashing: argon2id (argon2-cffi), always off the event loop.

Rules:
- Hashes are PHC strings (``$argon2id$v=19$m=...``); parameters live in the hash,
  so raising the cost later re-hashes on the next successful login.
- `hash_password` / `verify_password` block for tens of milliseconds: async callers
  use the `a*` variants, which run in a thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106 "second recommended option" scaled down for a mail server that
# verifies on every IMAP/POP3/SMTP login: 19 MiB, t=2 (OWASP's argon2id minimum).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# A valid hash of a random string nobody kept: verifying against it when the user
# does not exist makes unknown and known users take the same time. Written out
# rather than hashed at import: an argon2 hash at start raised every process's
# peak memory by the 19 MiB block (the supervisor's and, before the fixed mmap
# threshold below, each worker's heap). Its parameters are `_hasher`'s
# (tests/unit/auth/test_auth_service.py checks it), so it costs a login's time.
_DUMMY = (
    "$argon2id$v=19$m=19456,t=2,p=1$cZ+RjCoonBQis+PrtOVYGw$"
    "cznX/9tnjAmRS+l6XJFBQrmljcm3IlRyvK0fcA/FYbs"
)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


# Each hash or verification holds 19 MiB while it runs, and glibc keeps such a
# block in the arena of the thread that used it. A pool of its own bounds both:
# a burst of logins (ten POP3 clients polling together) costs CPU time in turn,
# not a 19 MiB arena in every thread of the default executor.
def _new_pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="argon2"
    )


_POOL = _new_pool()

#: glibc's mallopt parameter number for the mmap threshold
_M_MMAP_THRESHOLD = -3
#: blocks at least this large get a mapping of their own, unmapped when freed
MMAP_THRESHOLD = 4 << 20


def _map_large_blocks() -> None:
    """Make glibc give argon2's 19 MiB block back to the system after each hash.

    glibc raises its mmap threshold to the size of any mapped block that is freed
    (up to 32 MiB), so from the second hash on the block comes from the thread's
    arena and stays resident there: 19 MiB per argon2 thread in every worker, most
    of an idle server's memory (issue 14). A fixed threshold turns that adjustment
    off; 4 MiB keeps smaller blocks (message bodies, responses) in the arenas as
    the adjusted threshold would. Not glibc (musl, macOS): nothing to do."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


_map_large_blocks()


def _after_fork() -> None:
    """A forked worker gets a pool of its own: the parent's threads do not exist
    in the child, and the inherited pool would count them as idle and wait forever."""
    global _POOL
    _POOL = _new_pool()


os.register_at_fork(after_in_child=_after_fork)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing or corrupt hash is a mismatch."""
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


async def ahash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_POOL, hash_password, password)


async def averify_password(password_hash: str | None, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(
        _POOL, verify_password, password_hash, password
    )
