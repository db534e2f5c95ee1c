"""`postier domain add|list|del`: the mail domains this server is the destination for.

Rules:
- Names are stored in their ASCII (A-label) form, lower case, no trailing dot;
  ``bücher.example`` and ``xn--bcher-kva.example`` are the same domain.
- `add` makes postier.ops.accounts' role aliases (postmaster@, abuse@) to the
  server's first account when one exists.
- `del` refuses while users or aliases of the domain exist and says how to list
  them: deleting a domain never deletes anyone's mail as a side effect. The role
  aliases `add` made do not count: they go with the domain.
"""

from __future__ import annotations

import argparse

from postier.cli import dnsrecords
from postier.cli.common import (
    CliError,
    Subparsers,
    load_settings,
    opened_store,
    out,
    parse_domain,
    run,
    unknown_domain,
)
from postier.ops import accounts


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "domain",
        help="add, list or delete mail domains",
        description="Manage the mail domains hosted here.",
        allow_abbrev=False,
    )
    cmds = p.add_subparsers(dest="domain_command", metavar="ACTION", title="actions")
    cmds.required = True

    add = cmds.add_parser("add", help="host a new mail domain", allow_abbrev=False)
    add.add_argument("domain", metavar="DOMAIN")
    add.set_defaults(handler=_add)

    lst = cmds.add_parser("list", help="list the hosted domains", allow_abbrev=False)
    lst.set_defaults(handler=_list)

    rm = cmds.add_parser("del", help="delete a domain without users or aliases", allow_abbrev=False)
    rm.add_argument("domain", metavar="DOMAIN")
    rm.set_defaults(handler=_del)

    dnsrecords.register_domain_dns(cmds)  # `domain dns D [--json]`


def _add(args: argparse.Namespace) -> int:
    name = parse_domain(args.domain).ascii
    settings = load_settings(args)

    async def go() -> list[str]:
        async with opened_store(settings) as store:
            if await store.get_domain(name) is not None:
                raise CliError(f"domain {name} exists already")
            await store.add_domain(name)
            await dnsrecords.ensure_dkim(store, settings, name)  # DKIM keys, active selector
            made = await accounts.role_aliases_for_new_domain(store, name)
            targets = {a.source: a.targets for a in await store.list_aliases(name)}
            return [f"{source} -> {', '.join(targets[source])}" for source in made]

    aliases = run(go())
    out(f"added domain {name}")
    for alias in aliases:
        out(f"added alias {alias}")
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = load_settings(args)

    async def go() -> list[str]:
        async with opened_store(settings) as store:
            return sorted(d.name for d in await store.list_domains())

    for name in run(go()):
        out(name)
    return 0


def _del(args: argparse.Namespace) -> int:
    name = parse_domain(args.domain).ascii
    settings = load_settings(args)

    async def go() -> None:
        async with opened_store(settings) as store:
            if await store.get_domain(name) is None:
                raise unknown_domain(name)
            users = len(await store.list_users(name))
            if users:
                raise CliError(
                    f"domain {name} still has {_count(users, 'user')} "
                    f"(see: postier user list {name})"
                )
            every = await store.list_aliases(name)
            roles = {f"{local}@{name}" for local in accounts.ROLE_LOCALPARTS}
            others = [a for a in every if a.source not in roles]
            if others:
                raise CliError(
                    f"domain {name} still has {_count(len(others), 'alias')} "
                    f"(see: postier alias list {name})"
                )
            for a in every:  # postmaster@, abuse@: part of the domain, not someone's mail
                await store.delete_alias(a.source)
            await store.delete_domain(name)

    run(go())
    out(f"deleted domain {name}")
    return 0


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{n} {noun if n == 1 else plural}"
