"""The demo account of a development setup (`postier init --dev --demo`, which
`make run` uses) and the login the server's banner shows for it.

Rules:
- Created once, with a generated password kept in ``data_dir/demo-password``
  (0600; line one the password, line two the address), so every start can show
  the login again; a re-run never resets an existing account's password.
- The demo account has the admin role: on a development server it is the one
  account, and the admin pages hold the development outbox.
- `demo_login` shows the password only while it still verifies: after
  `postier user passwd` the banner says it was changed and prints none, and a
  deleted or disabled demo account is not shown at all.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from postier.auth.passwords import ahash_password, averify_password
from postier.durable import write_atomically
from postier.store.api import Store

DEMO_FILE = "demo-password"
DEMO_LOCALPART = "demo"
#: the address of a demo-password file written before it named the address
_DEMO_LEGACY_ADDRESS = "demo@example.test"


@dataclass(frozen=True)
class DemoLogin:
    address: str
    password: str | None  # None: changed since it was generated (not shown)


def demo_password() -> str:
    """16 letters and digits (95 bits): token_urlsafe's '-' could lead the password
    and make command lines (swaks -ap, curl -u) read it as an option."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(16))


_ALPHABET = string.ascii_letters + string.digits


async def create_demo(store: Store, data_dir: Path, domain: str) -> DemoLogin | None:
    """demo@domain with a generated password, unless the account exists already
    (a re-run keeps whatever password it has). The domain must exist."""
    address = f"{DEMO_LOCALPART}@{domain}"
    if await store.get_user(address) is not None:
        return None
    password = demo_password()
    # the file first: a crash in between leaves a file naming no account (not shown)
    write_atomically(data_dir / DEMO_FILE, f"{password}\n{address}\n".encode(), 0o600)
    await store.add_user(address, await ahash_password(password))
    # a development server's one account: it may open /admin (and its outbox)
    await store.set_admin(address, True)
    return DemoLogin(address, password)


async def demo_login(store: Store, data_dir: Path) -> DemoLogin | None:
    """The demo login to show, or None when there is no demo account."""
    try:
        lines = (data_dir / DEMO_FILE).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or not lines[0]:
        return None
    password = lines[0]
    address = lines[1] if len(lines) > 1 and lines[1] else _DEMO_LEGACY_ADDRESS
    user = await store.get_user(address)
    if user is None or user.disabled:
        return None
    verified = await averify_password(user.password_hash, password)
    return DemoLogin(address, password if verified else None)
