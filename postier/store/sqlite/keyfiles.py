"""DKIM private keys as files of the data dir: how the SQLite store keeps them.

What it owns: the layout ``data_dir/dkim/<domain>/<selector>.key`` (PEM, 0600,
folders 0700), reading a domain's keys and keeping a new one unless one is there.
`mailauth.dkim` makes and uses the keys; it finds them through `Store.dkim_keys`
(this module, for SQLite; a table for PostgreSQL, so that every node signs with
the same keys). `postier backup` copies the folder as it is.

Rules:
- `domain` is a validated A-label name (lower-cased here) and the selector our
  own string, both checked again: nothing a mail sender types becomes a path.
- A key is written to a temp name, fsynced and renamed; under the domain's lock
  file (``.lock``) a key already there is kept and returned, so two processes
  adding one domain at once keep one key.
"""

from __future__ import annotations

import re
from pathlib import Path

from postier.durable import file_lock, write_atomically

KEY_DIR = "dkim"

_SELECTOR = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def valid_selector(selector: str) -> bool:
    """A selector postier makes (and so may name a file): RFC 6376 §3.1, lower case."""
    return bool(_SELECTOR.match(selector))


def key_path(data_dir: Path, domain: str, selector: str) -> Path:
    """Where the key of `selector` lives; `ValueError` for a name that is not ours."""
    if not _SELECTOR.match(selector):
        raise ValueError(f"bad DKIM selector {selector!r}")
    if "/" in domain or "\0" in domain or domain.startswith(".") or not domain:
        raise ValueError(f"bad domain {domain!r}")
    return data_dir / KEY_DIR / domain.lower() / f"{selector}.key"


def read_keys(data_dir: Path, domain: str) -> dict[str, bytes]:
    """selector → PEM of every key file of the domain (none: empty)."""
    folder = key_path(data_dir, domain, "x").parent
    out: dict[str, bytes] = {}
    try:
        files = sorted(folder.iterdir())
    except FileNotFoundError:
        return out
    for f in files:
        if f.suffix == ".key" and _SELECTOR.match(f.stem):
            try:
                out[f.stem] = f.read_bytes()
            except FileNotFoundError:
                continue
    return out


def all_keys(data_dir: Path) -> list[tuple[str, str, bytes]]:
    """(domain, selector, PEM) of every key file, sorted."""
    root = data_dir / KEY_DIR
    out: list[tuple[str, str, bytes]] = []
    try:
        domains = sorted(d for d in root.iterdir() if d.is_dir())
    except FileNotFoundError:
        return out
    for d in domains:
        try:
            keys = read_keys(data_dir, d.name)
        except ValueError:
            continue
        out.extend((d.name, selector, pem) for selector, pem in sorted(keys.items()))
    return out


def keep_key(data_dir: Path, domain: str, selector: str, pem: bytes) -> bytes:
    """Write `pem` as the key of `selector` unless a key is there; returns the
    key kept (the first writer's)."""
    path = key_path(data_dir, domain, selector)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with file_lock(path.with_name(".lock")):
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        write_atomically(path, pem, 0o600)
        return pem
