"""`postier init`: write a commented postier.toml, create the data dir and the domain.

Rules:
- An existing config file is never overwritten without ``--force`` (exit 2).
- The file is written to a temporary name, fsynced and renamed, so a crash leaves
  either no file or the whole file; it is readable by its owner and group only
  (it may later hold the smarthost password).
- The written file is loaded back before anything else happens: `init` never leaves
  a config that `serve` would refuse.
- ``data_dir = "./data"`` is relative, so it resolves against the config folder
  wherever the command is later run from.
- Re-running with ``--force`` on an existing data dir keeps its users and mail; an
  existing domain is not an error.
- The data directory is created 0700: it holds the password hashes and the mail.
- Role addresses (`postier.ops.accounts`): postmaster@ and abuse@ of the domain
  become aliases to the first account — at once when one exists (a re-run, a
  ``--demo`` account), else when the domain's first account is added.
- ``--demo`` (with ``--dev`` only: a printed password has no place on a real
  server) also creates demo@DOMAIN with a generated password (`postier.auth.demo`);
  `serve` shows that login while the password still works. This is `make run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from postier.auth.demo import DemoLogin, create_demo
from postier.cli import dnsrecords
from postier.cli.common import (
    EXIT_FAILURE,
    CliError,
    Subparsers,
    opened_store,
    out,
    parse_domain,
    run,
)
from postier.config.load import ConfigError, load
from postier.config.sample import render_sample
from postier.config.schema import Settings
from postier.durable import write_atomically
from postier.ops import accounts

CONFIG_NAME = "postier.toml"


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "init",
        help="write a commented postier.toml and create the mail domain",
        description="Write DIR/postier.toml (every key documented), create the data "
        "directory and add DOMAIN to the store.",
        allow_abbrev=False,
    )
    p.add_argument("--domain", required=True, help="the mail domain to host, e.g. example.com")
    p.add_argument(
        "--dir",
        default=".",
        type=Path,
        help="folder for postier.toml and ./data (default: the current folder)",
    )
    p.add_argument(
        "--hostname", help="this server's host name, the MX target (default: mail.DOMAIN)"
    )
    p.add_argument(
        "--dev",
        action="store_true",
        help="development setup: ports 2525, 2587, 2465, 2143, 2993, 2110, "
        "2995, 8025 on 127.0.0.1 and dns.offline = true",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="with --dev: also create the account demo@DOMAIN with a generated "
        "password, which 'postier serve' prints while it still works",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing postier.toml")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    domain = parse_domain(args.domain).ascii
    hostname = parse_domain(args.hostname).ascii if args.hostname else f"mail.{domain}"
    folder: Path = args.dir
    path = folder / CONFIG_NAME
    if args.demo and not args.dev:
        raise CliError("--demo needs --dev: a demo account belongs on a development server")
    if path.exists() and not args.force:
        raise CliError(f"{path} exists already (use --force to overwrite it)")
    text = render_sample(domain, hostname=hostname, dev=args.dev)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text.encode())
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror}", EXIT_FAILURE) from None
    try:
        settings = load(path)
    except ConfigError as e:  # pragma: no cover - a bug in sample.py
        raise CliError(f"{path}: the generated file does not load: {e}", EXIT_FAILURE) from e
    data_dir = settings.server.data_dir
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create {data_dir}: {e.strerror}", EXIT_FAILURE) from None
    created, demo, aliases = run(_add_domain(settings, domain, demo=args.demo))
    config = path.resolve()
    out(f"wrote {config}")
    out(f"domain {domain}: {'added' if created else 'exists already'} in {data_dir}")
    if demo is not None:
        out(f"added user {demo.address} (password printed by 'postier serve')")
    for alias in aliases:
        out(f"added alias {alias}")
    if args.demo:
        return 0
    out("next:")
    if not aliases:
        out(f"  postier -c {config} user add you@{domain}   (postmaster@ and abuse@ go to it)")
    out(f"  postier -c {config} serve")
    if not args.dev:
        out(f"DNS: {domain}. MX 10 {hostname}.  and an A/AAAA record for {hostname}")
    return 0


async def _add_domain(
    settings: Settings, domain: str, *, demo: bool
) -> tuple[bool, DemoLogin | None, list[str]]:
    """Add the domain unless it exists (a re-run), the demo account when asked,
    and the role aliases when an account exists: (added?, demo, alias lines)."""
    async with opened_store(settings) as store:
        created = await store.get_domain(domain) is None
        if created:
            await store.add_domain(domain)
            await dnsrecords.ensure_dkim(store, settings, domain)  # DKIM keys, active selector
        login = await create_demo(store, settings.server.data_dir, domain) if demo else None
        aliases = await accounts.role_aliases_for_new_domain(store, domain)
        targets = {a.source: a.targets for a in await store.list_aliases(domain)}
        return created, login, [f"{s} -> {', '.join(targets[s])}" for s in aliases]
