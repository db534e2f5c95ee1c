"""`postier user add|list|passwd|quota|admin|del`: mail accounts.

Rules:
- The address is parsed as RFC 5321 §4.1.2 ``Mailbox`` and handed to the store in
  its canonical form (`str(Address)`: quoted when needed, ASCII domain); the store
  keys it lower-cased. Messages show that key. Its domain must be hosted here.
- The password comes from one line of stdin (``--password-stdin``) or is typed
  twice at a prompt; never from the command line. It is hashed (argon2id) off the
  event loop before the store is touched.
- A new user's quota is ``--quota`` if given, else ``store.default_quota``.
- The first account of a domain receives its postmaster@ and abuse@ mail
  (aliases made unless those addresses receive mail already; `postier.ops.accounts`).
- ``--admin`` (on `add`) and `admin ADDRESS [--off]` give or take the admin role:
  the web admin at /admin is for those accounts only.
- `del` asks first (or needs ``--yes``): it deletes every message of the account.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from postier.auth.passwords import ahash_password
from postier.cli.common import (
    CliError,
    Subparsers,
    add_password_options,
    add_yes_option,
    confirm,
    format_size,
    load_settings,
    opened_store,
    out,
    parse_address,
    parse_domain,
    parse_size,
    read_new_password,
    require_domain,
    run,
    unknown_domain,
)
from postier.ops import accounts
from postier.store.models import User

if TYPE_CHECKING:
    from postier.store.api import Store


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "user",
        help="add, list, change or delete mail accounts",
        description="Manage mail accounts (IMAP/POP3/SMTP logins with a mailbox).",
        allow_abbrev=False,
    )
    cmds = p.add_subparsers(dest="user_command", metavar="ACTION", title="actions")
    cmds.required = True

    add = cmds.add_parser("add", help="create an account and its mailboxes", allow_abbrev=False)
    add.add_argument("address", metavar="ADDRESS")
    add.add_argument(
        "--quota",
        type=str,
        metavar="SIZE",
        help="storage limit like 500M or 2G; 0 = unlimited (default: store.default_quota)",
    )
    add.add_argument(
        "--admin", action="store_true", help="give the account the admin role (web admin)"
    )
    add_password_options(add)
    add.set_defaults(handler=_add)

    lst = cmds.add_parser("list", help="list accounts, of one domain or all", allow_abbrev=False)
    lst.add_argument("domain", metavar="DOMAIN", nargs="?")
    lst.add_argument(
        "-l", "--long", action="store_true", help="also show quota, space used and creation time"
    )
    lst.set_defaults(handler=_list)

    pw = cmds.add_parser("passwd", help="set an account's password", allow_abbrev=False)
    pw.add_argument("address", metavar="ADDRESS")
    add_password_options(pw)
    pw.set_defaults(handler=_passwd)

    quota = cmds.add_parser("quota", help="set an account's storage limit", allow_abbrev=False)
    quota.add_argument("address", metavar="ADDRESS")
    quota.add_argument("size", metavar="SIZE", help="like 500M or 2G; 0 = unlimited")
    quota.set_defaults(handler=_quota)

    admin = cmds.add_parser(
        "admin",
        help="give an account the admin role (the web admin at /admin), or take it",
        allow_abbrev=False,
    )
    admin.add_argument("address", metavar="ADDRESS")
    admin.add_argument("--off", action="store_true", help="take the admin role away")
    admin.set_defaults(handler=_admin)

    rm = cmds.add_parser("del", help="delete an account with all its mail", allow_abbrev=False)
    rm.add_argument("address", metavar="ADDRESS")
    add_yes_option(rm, "deleting the account and all its mail")
    rm.set_defaults(handler=_del)


def _no_such_user(address: str) -> CliError:
    return CliError(f"no such user {address}")


def _add(args: argparse.Namespace) -> int:
    address = parse_address(args.address)
    key, canonical = address.key, str(address)
    quota = parse_size(args.quota) if args.quota is not None else None
    settings = load_settings(args)
    password = read_new_password(args, settings)

    async def go() -> list[str]:
        async with opened_store(settings) as store:
            await require_domain(store, address.domain)
            if await store.get_user(canonical) is not None:
                raise CliError(f"user {key} exists already")
            pw_hash = await ahash_password(password)
            limit = settings.store.default_quota if quota is None else quota
            user = await store.add_user(canonical, pw_hash, limit)
            if user.quota_bytes != limit:  # add_user reads 0 as "the default quota"
                await store.set_quota(canonical, limit)
            if args.admin:
                await store.set_admin(canonical, True)
            return await accounts.role_aliases_for_new_user(store, user)

    aliases = run(go())
    out(f"added user {key}" + (" (admin)" if args.admin else ""))
    for alias in aliases:
        out(f"added alias {alias} -> {key}")
    return 0


def _list(args: argparse.Namespace) -> int:
    domain = parse_domain(args.domain).ascii if args.domain else None
    settings = load_settings(args)

    async def go() -> list[str]:
        async with opened_store(settings) as store:
            if domain is not None and await store.get_domain(domain) is None:
                raise unknown_domain(domain)
            users = sorted(await store.list_users(domain), key=lambda u: u.address)
            if not args.long:
                return [u.address for u in users]
            return [await _long_line(store, u) for u in users]

    for line in run(go()):
        out(line)
    return 0


async def _long_line(store: Store, user: User) -> str:
    used, limit = await store.quota_usage(user.id)
    created = user.created.strftime("%Y-%m-%d %H:%M:%S")
    state = (" admin" if user.admin else "") + (" disabled" if user.disabled else "")
    return f"{user.address}\tquota={format_size(limit)}\tused={used}\tcreated={created}{state}"


def _passwd(args: argparse.Namespace) -> int:
    address = parse_address(args.address)
    key, canonical = address.key, str(address)
    settings = load_settings(args)
    password = read_new_password(args, settings)

    async def go() -> None:
        async with opened_store(settings) as store:
            if await store.get_user(canonical) is None:
                raise _no_such_user(key)
            await store.set_password(canonical, await ahash_password(password))

    run(go())
    out(f"password changed for {key}")
    return 0


def _quota(args: argparse.Namespace) -> int:
    address = parse_address(args.address)
    key, canonical = address.key, str(address)
    size = parse_size(args.size)
    settings = load_settings(args)

    async def go() -> None:
        async with opened_store(settings) as store:
            if await store.get_user(canonical) is None:
                raise _no_such_user(key)
            await store.set_quota(canonical, size)

    run(go())
    out(f"quota of {key}: {format_size(size)}")
    return 0


def _admin(args: argparse.Namespace) -> int:
    address = parse_address(args.address)
    key, canonical = address.key, str(address)
    settings = load_settings(args)

    async def go() -> None:
        async with opened_store(settings) as store:
            if await store.get_user(canonical) is None:
                raise _no_such_user(key)
            await store.set_admin(canonical, not args.off)

    run(go())
    out(f"{key} is {'no longer ' if args.off else ''}an admin")
    return 0


def _del(args: argparse.Namespace) -> int:
    address = parse_address(args.address)
    key, canonical = address.key, str(address)
    settings = load_settings(args)

    async def check() -> str:
        async with opened_store(settings) as store:
            user = await store.get_user(canonical)
            if user is None:
                raise _no_such_user(key)
            used, _ = await store.quota_usage(user.id)
            return f"delete user {key} and all their mail ({used} bytes)?"

    confirm(args, run(check()))

    async def go() -> None:
        async with opened_store(settings) as store:
            if await store.get_user(canonical) is None:
                raise _no_such_user(key)
            await store.delete_user(canonical)

    run(go())
    out(f"deleted user {key} and all their mail")
    return 0
