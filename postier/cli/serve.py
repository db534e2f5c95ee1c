"""`postier serve`: run every listener and background task until SIGTERM/SIGINT.

The server is imported only when this command runs, so admin commands never pay for
(or depend on) the protocol stacks.
"""

from __future__ import annotations

import argparse

from postier.cli.common import Subparsers, load_settings


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run the mail server (SMTP, submission, IMAP, POP3, web)",
        description="Run the mail server in the foreground until SIGTERM or SIGINT; "
        "in-flight transactions are finished first.",
        allow_abbrev=False,
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    from postier.server.app import run as run_server

    return run_server(settings, log_format=args.log_format)
