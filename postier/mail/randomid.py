"""Unpredictable random bytes for ids, without a system call per id.

Why not `secrets`: `os.urandom` releases the GIL around its getrandom(2) call,
and on the event loop, with the store's writer thread running, taking the GIL
back cost about 30 µs of wall time per id (cProfile of SMTP intake, two ids per
message: the inline blob id and the queue id's random digits), while
the call itself costs well under a microsecond.

What instead: a keyed BLAKE2b of a counter. BLAKE2b with a secret key is a
pseudo-random function, so its outputs are as hard to guess as the 256-bit key,
which comes from `os.urandom` once per process. A forked child draws a new key
before it runs (`os.register_at_fork`): two workers never share a stream.
Hand-written because it is ten lines of `hashlib`; small inputs keep the GIL.
"""

from __future__ import annotations

import hashlib
import itertools
import os

_KEY_SIZE = 32


class _Stream:
    def __init__(self) -> None:
        self._key = b""
        self._count = itertools.count()
        self.rekey()

    def rekey(self) -> None:
        self._key = os.urandom(_KEY_SIZE)
        self._count = itertools.count()  # a new key: the counter may start again

    def take(self, n: int) -> bytes:
        # next() on itertools.count is one C call: atomic under the GIL, so
        # threads never draw the same block
        block = next(self._count).to_bytes(16, "little")
        return hashlib.blake2b(block, key=self._key, digest_size=n).digest()


_STREAM = _Stream()
os.register_at_fork(after_in_child=_STREAM.rekey)


def random_bytes(n: int) -> bytes:
    """`n` (1 to 64) unpredictable bytes, as `secrets.token_bytes(n)` gives."""
    return _STREAM.take(n)


def random_hex(n: int) -> str:
    """2 × `n` lower-case hex digits, as `secrets.token_hex(n)` gives."""
    return _STREAM.take(n).hex()


def random_bits(k: int) -> int:
    """A non-negative int of `k` (1 to 512) random bits, as `secrets.randbits(k)`."""
    return int.from_bytes(_STREAM.take((k + 7) // 8), "little") >> (-k % 8)
