"""dkimpy, as postier uses it: the library with its quadratic pieces made linear.

What it owns: the one place that imports and adjusts dkimpy; `dkim.py`
(signing), `dkimverify.py` and `arc.py` import dkimpy through it, so the fix
is in place whichever of them a process loads first.

Rules:
- dkimpy's relaxed body canonicalisation removes trailing white space with
  ``re.sub(b"[\\t ]+\\r\\n", ...)``, which tries every start inside a run of
  blanks: 18 s for one body line of 80 000 spaces (a message can hold
  megabytes of them). `strip_trailing_whitespace` below gives byte for byte
  the same output in linear time, and replaces dkimpy's at import.
- Its body canonicalisation is a few regex passes over the whole body, each one
  C call holding the GIL: signing a 20 MB submission held it 0.7 s, every
  other session of the process waiting though the signing runs in a thread.
  Bodies over `SLICE` octets are canonicalised a slice at a time, each slice
  cut between two octets that are neither blank nor CR/LF (no run of blanks
  or line end spans a cut), so the output is the same.
- dkimpy's checks of a signature's b= value (``[\\s0-9A-Za-z+/]+[\\s=]*$``,
  ``RE_BTAG``) are quadratic in its white space; they are kept linear by
  refusing long signature fields before dkimpy sees them (`usable_field`).

Why not another library: dkimpy is the maintained DKIM/ARC implementation for
Python; the fixes are small and belong upstream too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import dkim
import dkim.canonicalization

__all__ = ["MAX_SIGNATURE_FIELD", "MAX_SIGNATURE_SPACE", "dkim", "usable_field"]

#: a DKIM-Signature/ARC field longer than this, or with more white-space octets
#: than that, is unusable (real ones are under 2 KB with a few dozen folds)
MAX_SIGNATURE_FIELD = 8192
MAX_SIGNATURE_SPACE = 512

# A run of blanks may only start after a non-blank (the lookbehind): each run is
# scanned from its first octet alone, so the whole substitution is linear.
_TRAILING_WSP = re.compile(rb"(?<![\t ])[\t ]+\r\n")
_WSP = re.compile(rb"\s")


#: octets of body one regex pass covers (each pass holds the GIL)
SLICE = 1 << 20
# where a body may be cut: between two octets that are neither blank nor CR/LF
_CUT = re.compile(rb"[^\t \r\n]{2}")
_BLANKS = re.compile(rb"[\t ]+")


def _sliced(content: bytes, sub: Callable[[bytes], bytes]) -> bytes:
    """`sub(content)` a `SLICE` at a time (see Rules)."""
    n = len(content)
    if n <= SLICE:
        return sub(content)
    out: list[bytes] = []
    start = 0
    while start < n:
        end = start + SLICE
        if end < n:
            m = _CUT.search(content, end)
            end = n if m is None else m.start() + 1
        else:
            end = n
        out.append(sub(content[start:end]))
        start = end
    return b"".join(out)


def _strip_trailing(content: bytes) -> bytes:
    return _TRAILING_WSP.sub(b"\r\n", content)


def _compress(content: bytes) -> bytes:
    return _BLANKS.sub(b" ", content)


def strip_trailing_whitespace(content: bytes) -> bytes:
    """RFC 6376 §3.4.4 a: white space at the end of each line removed (a
    leftmost match starts a run either way: the output is dkimpy's)."""
    return _sliced(content, _strip_trailing)


def compress_whitespace(content: bytes) -> bytes:
    """RFC 6376 §3.4.4 b: each run of blanks one space (dkimpy's, by slices)."""
    return _sliced(content, _compress)


def usable_field(raw: bytes) -> bool:
    """Short enough for dkimpy's quadratic b= checks to stay cheap."""
    return len(raw) <= MAX_SIGNATURE_FIELD and len(_WSP.findall(raw)) <= MAX_SIGNATURE_SPACE


dkim.canonicalization.strip_trailing_whitespace = strip_trailing_whitespace
dkim.canonicalization.compress_whitespace = compress_whitespace
