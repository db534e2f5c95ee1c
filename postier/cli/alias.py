"""`postier alias add|list|del`: addresses that forward to other addresses.

Rules:
- SOURCE is ``local@domain`` or ``@domain`` (the domain's catch-all: mail for any
  address of the domain that is neither a user nor an alias). Its domain must be
  hosted here, and it must not be a user's address (the user would win anyway).
- TARGETs are any addresses, local or remote. A local target that does not exist
  yet only draws a warning: aliases may be created before the users they name.
- Addresses go to the store in canonical form (`str(Address)`); the store keys
  them lower-cased and drops duplicate targets. An alias may not name itself.
"""

from __future__ import annotations

import argparse

from postier.cli.common import (
    CliError,
    Subparsers,
    load_settings,
    opened_store,
    out,
    parse_address,
    parse_domain,
    require_domain,
    run,
    unknown_domain,
    warn,
)
from postier.mail.address import Domain


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "alias",
        help="add, list or delete forwarding aliases",
        description="Manage aliases: SOURCE (local@domain, or @domain "
        "for a catch-all) forwards to one or more TARGETs.",
        allow_abbrev=False,
    )
    cmds = p.add_subparsers(dest="alias_command", metavar="ACTION", title="actions")
    cmds.required = True

    add = cmds.add_parser("add", help="forward SOURCE to TARGET(s)", allow_abbrev=False)
    add.add_argument("source", metavar="SOURCE", help="local@domain, or @domain (catch-all)")
    add.add_argument("targets", metavar="TARGET", nargs="+", help="local or remote addresses")
    add.set_defaults(handler=_add)

    lst = cmds.add_parser("list", help="list aliases, of one domain or all", allow_abbrev=False)
    lst.add_argument("domain", metavar="DOMAIN", nargs="?")
    lst.set_defaults(handler=_list)

    rm = cmds.add_parser("del", help="delete an alias", allow_abbrev=False)
    rm.add_argument("source", metavar="SOURCE")
    rm.set_defaults(handler=_del)


def parse_source(text: str) -> tuple[str, str, Domain]:
    """SOURCE → (its lookup key, its canonical form for the store, its domain)."""
    if text.startswith("@"):
        domain = parse_domain(text[1:])
        return f"@{domain.ascii}", f"@{domain.ascii}", domain
    address = parse_address(text)
    return address.key, str(address), address.domain


def _add(args: argparse.Namespace) -> int:
    source, canonical, source_domain = parse_source(args.source)
    targets = [parse_address(t) for t in args.targets]
    settings = load_settings(args)

    async def go() -> tuple[str, ...]:
        async with opened_store(settings) as store:
            await require_domain(store, source_domain)
            if await store.get_user(canonical) is not None:
                raise CliError(f"{source} is a user; an alias cannot take its address")
            for target in targets:
                if target.key == source:
                    raise CliError(f"alias {source} cannot forward to itself")
            if any(a.source == source for a in await store.list_aliases(source_domain.ascii)):
                raise CliError(
                    f"alias {source} exists already (delete it first: postier alias del {source})"
                )
            for key in dict.fromkeys(t.key for t in targets):
                is_local = await store.get_domain(key.rpartition("@")[2]) is not None
                if is_local and not (await store.resolve(key)).found:
                    warn(f"{key} does not exist yet; mail to it will bounce")
            alias = await store.add_alias(canonical, [str(t) for t in targets])
            return alias.targets

    stored = run(go())
    out(f"added alias {source} -> {', '.join(stored)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    domain = parse_domain(args.domain).ascii if args.domain else None
    settings = load_settings(args)

    async def go() -> list[str]:
        async with opened_store(settings) as store:
            if domain is not None and await store.get_domain(domain) is None:
                raise unknown_domain(domain)
            aliases = sorted(await store.list_aliases(domain), key=lambda a: a.source)
            return [f"{a.source} -> {', '.join(a.targets)}" for a in aliases]

    for line in run(go()):
        out(line)
    return 0


def _del(args: argparse.Namespace) -> int:
    source, canonical, source_domain = parse_source(args.source)
    settings = load_settings(args)

    async def go() -> None:
        async with opened_store(settings) as store:
            if await store.get_domain(source_domain.ascii) is None:
                raise unknown_domain(source_domain.ascii)
            if not any(a.source == source for a in await store.list_aliases(source_domain.ascii)):
                raise CliError(f"no such alias {source}")
            await store.delete_alias(canonical)

    run(go())
    out(f"deleted alias {source}")
    return 0
