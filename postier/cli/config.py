"""`postier config check|sample|reference`: validate and document the configuration.

- ``check`` loads the file as `serve` would and prints the problem, naming the key.
- ``sample`` prints the commented file `postier init` writes (to review or diff).
- ``reference`` prints docs/configuration.md (every key, type, default, meaning).
"""

from __future__ import annotations

import argparse

from postier.cli.common import Subparsers, load_settings, out, parse_domain
from postier.config.sample import render_reference, render_sample


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "config",
        help="check, print or document the configuration",
        description="Check the configuration file, print a commented "
        "sample or the reference of every key.",
        allow_abbrev=False,
    )
    cmds = p.add_subparsers(dest="config_command", metavar="ACTION", title="actions")
    cmds.required = True

    check = cmds.add_parser(
        "check", help="load the configuration and report problems", allow_abbrev=False
    )
    check.set_defaults(handler=_check)

    sample = cmds.add_parser("sample", help="print a commented postier.toml", allow_abbrev=False)
    sample.add_argument("--domain", default="example.com", help="mail domain to fill in")
    sample.add_argument("--hostname", help="server host name (default: mail.DOMAIN)")
    sample.add_argument(
        "--dev", action="store_true", help="development ports and dns.offline = true"
    )
    sample.set_defaults(handler=_sample)

    ref = cmds.add_parser(
        "reference", help="print the configuration reference (Markdown)", allow_abbrev=False
    )
    ref.set_defaults(handler=_reference)


def _check(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    out(f"{settings.source}: ok")
    return 0


def _sample(args: argparse.Namespace) -> int:
    domain = parse_domain(args.domain)
    hostname = parse_domain(args.hostname).ascii if args.hostname else None
    print(render_sample(domain.ascii, hostname=hostname, dev=args.dev), end="")
    return 0


def _reference(args: argparse.Namespace) -> int:
    print(render_reference(), end="")
    return 0
