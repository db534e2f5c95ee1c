"""Accounts and the role addresses every hosted domain needs: the logic behind
`postier user add|passwd`, `domain add` and `init`.

Rules:
- Passwords: at least `auth.min_password_length` characters (default 8, as
  NIST SP 800-63B §5.1.1.2 asks of memorised secrets), counted in Unicode code
  points; no composition rules and no maximum below 64 (the same section).
- Role addresses: RFC 5321 §4.5.1 requires ``postmaster@`` at every domain that
  receives mail, and RFC 2142 §2 names ``abuse@`` for complaints (the DMARC record
  `postier domain dns` prints sends reports to postmaster@ too). When a domain
  gets its first account, and when a domain is added while accounts exist, both
  become aliases to an account: the new one, else the server's first account
  (the oldest; normally the administrator's, created right after `init`).
- An operator's choice is never overwritten: a role address that already
  receives mail (a user, an alias, a catch-all) is left as it is.
"""

from __future__ import annotations

import contextlib
import re

from postier.store.api import Store
from postier.store.errors import Conflict
from postier.store.models import User

#: RFC 5321 §4.5.1 (postmaster), RFC 2142 §2 (abuse)
ROLE_LOCALPARTS = ("postmaster", "abuse")


class PasswordRefused(Exception):
    """The password does not meet the policy; the message says why."""


def check_password(password: str, minimum: int) -> None:
    """Refuse a password shorter than `minimum` characters (NIST SP 800-63B §5.1.1.2)."""
    if not password:
        raise PasswordRefused("empty password")
    if len(password) < minimum:
        raise PasswordRefused(
            f"password too short: {len(password)} characters, at least {minimum} "
            "(auth.min_password_length)"
        )


async def first_account(store: Store) -> User | None:
    """The server's oldest account: the target of a new domain's role aliases."""
    users = await store.list_users()
    return min(users, key=lambda u: u.id) if users else None


async def ensure_role_aliases(store: Store, domain: str, target: str) -> list[str]:
    """Make postmaster@domain and abuse@domain forward to `target` where nothing
    receives them yet; returns the addresses made into aliases."""
    made = []
    for localpart in ROLE_LOCALPARTS:
        address = f"{localpart}@{domain}"
        if (await store.resolve(address)).found:
            continue  # a user, an alias or a catch-all already: the operator's choice
        with contextlib.suppress(Conflict):  # made meanwhile by another command
            await store.add_alias(address, [target])
            made.append(address)
    return made


async def role_aliases_for_new_domain(store: Store, domain: str) -> list[str]:
    """After `domain add`: the role aliases, when an account exists to receive them."""
    first = await first_account(store)
    return await ensure_role_aliases(store, domain, first.address) if first else []


async def role_aliases_for_new_user(store: Store, user: User) -> list[str]:
    """After `user add`: the role aliases of the user's domain when it is the
    domain's first account."""
    if len(await store.list_users(user.domain)) != 1:
        return []
    return await ensure_role_aliases(store, user.domain, user.address)


_SIZE = re.compile(r"^\s*(\d{1,15})\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int | None:
    """ "500M", "2G", "1048576" → bytes (K/M/G/T are powers of 1024); None if
    it is no size. 0 means unlimited."""
    m = _SIZE.match(text)
    if not m:
        return None
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()[:1]]


def format_size(size: int) -> str:
    if size == 0:
        return "unlimited"
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
