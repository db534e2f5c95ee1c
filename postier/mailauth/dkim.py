"""DKIM signing of outgoing mail (RFC 6376, RFC 8463), and the domain keys it uses.

What it owns: generating the key pairs of a local domain, where their files
live, the public-key TXT records to publish, and signing one message.
Verification of incoming mail comes later (`verify` is the hook name reserved).

Rules:
- Every local domain gets two keys: RSA-2048 (``k=rsa``, RFC 6376 §3.3.1; every
  verifier knows it) and Ed25519 (``k=ed25519``, RFC 8463). Selectors are
  ``postier<year>r`` and ``postier<year>e``. The store's ``dkim_selector`` names
  the RSA one (the "active" selector); its Ed25519 twin has the same stem with
  "e". A message is signed with each of the two whose key file exists (dual
  signing, RFC 8463 §5: verifiers use the signature they can).
- Keys are kept by the store (`Store.dkim_keys`, `Store.add_dkim_key`): files of
  the data dir with SQLite (``data_dir/dkim/<domain>/<selector>.key``, PEM, 0600:
  `store.sqlite.keyfiles`), a table with PostgreSQL, so that every node signs
  with the same keys. `make_keys` makes a domain's pair once: processes or nodes
  racing all get the pair the store kept first. The file functions below
  (`generate_keys`, `load_key`, `load_domain_keys`) work on a data dir directly
  (tests, tools).
- Signing uses relaxed/relaxed canonicalization (RFC 6376 §3.4) and covers the
  fields that carry meaning (From — twice, so a From: added later breaks the
  signature, RFC 6376 §8.15 "oversigning" — To, Cc, Subject, Date, Message-ID,
  Reply-To, In-Reply-To, References, the MIME fields). No ``l=`` (RFC 6376 §8.2).
- The signing domain is the From: header's domain when we hold its key, else
  the envelope sender's domain when we do (then DMARC alignment fails, but the
  signature still builds the sending domain's reputation); else no signature.
- dkimpy is the library (a chosen dependency, see docs/architecture.md); RSA keys
  are handed over in PKCS#1 PEM and Ed25519 keys as the base64 seed it expects.
- cryptography (key parsing and generation) is imported by the functions that
  parse or make a key, not with this module: it carries its own OpenSSL, about
  18 MB resident, which every server process would otherwise hold (the queue,
  which imports this module, signs in one worker and only for local domains).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from postier.durable import file_lock, write_atomically
from postier.mailauth.dkimpy import dkim
from postier.store.sqlite import keyfiles

if TYPE_CHECKING:
    from postier.store.api import Store

log = logging.getLogger("postier.mailauth.dkim")

KEY_DIR = keyfiles.KEY_DIR
RSA_BITS = 2048

#: RFC 6376 §5.4.1 recommended fields, plus MIME and threading fields; From twice
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


class DkimError(Exception):
    """A key cannot be made, read or used; the message names the file."""


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519" (the k= tag)
    private_pem: bytes

    @property
    def signature_algorithm(self) -> bytes:
        return b"rsa-sha256" if self.algorithm == "rsa" else b"ed25519-sha256"

    def public_b64(self) -> str:
        """The p= value: SubjectPublicKeyInfo DER for RSA (RFC 6376 §3.6.1), the raw
        32-octet key for Ed25519 (RFC 8463 §4.2). The key is not checked again:
        `key_of` checked it when it made this DkimKey (for RSA-2048 that check costs
        ~27 ms, loading without it 8 µs), and the web admin and the dev outbox
        build these records on the event loop."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        key = serialization.load_pem_private_key(
            self.private_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
        if isinstance(key, rsa.RSAPrivateKey):
            der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return base64.b64encode(der).decode()
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return base64.b64encode(raw).decode()
        raise DkimError(f"{self.selector}: unsupported key type")

    def txt_record(self) -> str:
        """The TXT value to publish at <selector>._domainkey.<domain> (RFC 6376 §3.6.1)."""
        return f"v=DKIM1; k={self.algorithm}; h=sha256; p={self.public_b64()}"

    def dkimpy_private(self) -> bytes:
        if self.algorithm == "rsa":
            return self.private_pem
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = serialization.load_pem_private_key(self.private_pem, password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed)


def selectors_for(year: int) -> tuple[str, str]:
    """(RSA selector, Ed25519 selector) for keys made in `year`."""
    return f"postier{year}r", f"postier{year}e"


def twin_selectors(active: str) -> tuple[str, ...]:
    """The selectors to sign with for a domain whose active selector is `active`."""
    if not active:
        return ()
    if active.endswith("r"):
        return active, active[:-1] + "e"
    return (active,)


def key_path(data_dir: Path, domain: str, selector: str) -> Path:
    try:
        return keyfiles.key_path(data_dir, domain, selector)
    except ValueError as e:
        raise DkimError(str(e)) from None


def _write_private(path: Path, data: bytes) -> None:
    """Durably, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, data, 0o600)


def generate_keys(
    data_dir: Path,
    domain: str,
    *,
    year: int | None = None,
    rsa_bits: int = RSA_BITS,
    overwrite: bool = False,
) -> tuple[DkimKey, DkimKey]:
    """Make (or, when the files exist and not `overwrite`, load) the RSA and
    Ed25519 keys of `domain`; returns (rsa, ed25519). The caller records the RSA
    selector with `Store.set_dkim_selector`.

    Under the domain's lock file: two processes adding the domain at once make
    one pair of keys, and both return (and publish) that pair."""
    year = year or datetime.now(UTC).year
    lock = key_path(data_dir, domain, selectors_for(year)[0]).with_name(".lock")
    with file_lock(lock):
        return _generate_keys(data_dir, domain, year, rsa_bits, overwrite)


def _generate_keys(
    data_dir: Path, domain: str, year: int, rsa_bits: int, overwrite: bool
) -> tuple[DkimKey, DkimKey]:
    rsa_sel, ed_sel = selectors_for(year)
    out: list[DkimKey] = []
    for selector, algorithm in ((rsa_sel, "rsa"), (ed_sel, "ed25519")):
        path = key_path(data_dir, domain, selector)
        if path.exists() and not overwrite:
            out.append(load_key(data_dir, domain, selector))
            continue
        pem = _new_pem(algorithm, rsa_bits)
        _write_private(path, pem)
        out.append(DkimKey(domain.lower(), selector, algorithm, pem))
    return out[0], out[1]


def _new_pem(algorithm: str, rsa_bits: int) -> bytes:
    """A new private key in PEM: RSA in PKCS#1 (what dkimpy takes), Ed25519 in PKCS#8."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if algorithm == "rsa":
        return rsa.generate_private_key(65537, rsa_bits).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_of(domain: str, selector: str, pem: bytes, where: str = "") -> DkimKey:
    """The key a PEM holds; `DkimError` (naming `where`) if it is not one we use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    where = where or f"{selector}._domainkey.{domain}"
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as e:
        raise DkimError(f"{where}: not a PEM private key ({e})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return DkimKey(domain.lower(), selector, "rsa", pem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return DkimKey(domain.lower(), selector, "ed25519", pem)
    raise DkimError(f"{where}: only RSA and Ed25519 keys are supported")


def load_key(data_dir: Path, domain: str, selector: str) -> DkimKey:
    path = key_path(data_dir, domain, selector)
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise DkimError(f"{path}: {e.strerror}") from None
    return key_of(domain, selector, pem, str(path))


def load_domain_keys(data_dir: Path, domain: str, active: str) -> list[DkimKey]:
    """The keys to sign with for `domain` (missing twin files are skipped)."""
    keys = []
    for selector in twin_selectors(active):
        with contextlib.suppress(DkimError):
            keys.append(load_key(data_dir, domain, selector))
    return keys


async def stored_keys(store: Store, domain: str, active: str) -> list[DkimKey]:
    """The keys to sign with for `domain` whose active selector is `active`, as the
    store keeps them (a missing twin is skipped; an unreadable key is logged).
    The PEMs are parsed off the event loop: checking an RSA key costs milliseconds,
    and the first parse in a process imports cryptography."""
    if not active:
        return []
    pems = await store.dkim_keys(domain)

    def parse() -> list[DkimKey]:
        keys = []
        for selector in twin_selectors(active):
            pem = pems.get(selector)
            if pem is None:
                continue
            try:
                keys.append(key_of(domain, selector, pem))
            except DkimError:
                log.exception("DKIM key of %s", domain)
        return keys

    return await asyncio.to_thread(parse)


async def make_keys(
    store: Store, domain: str, *, year: int | None = None, rsa_bits: int = RSA_BITS
) -> tuple[DkimKey, DkimKey]:
    """The RSA and Ed25519 keys of `domain` for `year`, made unless the store has
    them; returns (rsa, ed25519). Processes or nodes racing all get the pair the
    store kept first. The caller records the RSA selector (`set_dkim_selector`)."""
    year = year or datetime.now(UTC).year
    have = await store.dkim_keys(domain)
    out: list[DkimKey] = []
    for selector, algorithm in zip(selectors_for(year), ("rsa", "ed25519"), strict=True):
        pem = have.get(selector)
        if pem is None:
            pem = await asyncio.to_thread(_new_pem, algorithm, rsa_bits)
            pem = await store.add_dkim_key(domain, selector, pem)
        out.append(await asyncio.to_thread(key_of, domain, selector, pem))
    return out[0], out[1]


def sign(message: bytes, keys: list[DkimKey]) -> bytes:
    """The DKIM-Signature field(s) to put on top of `message`, one per key
    (RFC 6376 §5.6: prepended). Raises `DkimError` if dkimpy refuses."""
    out = b""
    for key in keys:
        try:
            field = dkim.sign(
                message,
                key.selector.encode(),
                key.domain.encode(),
                key.dkimpy_private(),
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=key.signature_algorithm,
                include_headers=list(SIGNED_HEADERS),
            )
        except dkim.DKIMException as e:
            raise DkimError(f"signing as {key.selector}._domainkey.{key.domain}: {e}") from None
        except Exception as e:  # dkimpy on a malformed message (IndexError ...): unsigned
            raise DkimError(
                f"signing as {key.selector}._domainkey.{key.domain}: dkimpy raised "
                f"{type(e).__name__} on this message"
            ) from None
        out += field
    return out


def signing_domain(from_domains: list[str], sender_domain: str, has_key: set[str]) -> str | None:
    """Which of our domains signs: the From: domain first, else the sender's."""
    for d in from_domains:
        if d.lower() in has_key:
            return d.lower()
    if sender_domain.lower() in has_key:
        return sender_domain.lower()
    return None
