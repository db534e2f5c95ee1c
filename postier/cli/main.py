"""The `postier` command: global options and the argument tree.

Rules:
- Each command group is one module exposing ``register(subparsers)``; it adds its
  parser(s) and sets ``handler`` (a `common.Handler`) as a parser default. A new
  group (queue, trace, mx, verify, dns-check, send, import/export) is one module
  plus one entry in `GROUPS`; nothing else here changes.
- Global options: ``-c/--config FILE`` (else $POSTIER_CONFIG, else development
  defaults with data in ./data) and ``--log-format text|json``. Each handler loads
  the settings itself, so `init` works without any config file.
- Abbreviated long options are off: ``--password`` must never be read as a prefix
  of ``--password-stdin``, and scripts must not break when an option is added.
- Exit codes are those of `common`: 0 done, 1 runtime failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from postier import __version__
from postier.cli import (
    alias,
    config,
    dnscheck,
    domain,
    init,
    migrate,
    mx,
    queue,
    send,
    serve,
    trace,
    user,
    verify,
)
from postier.cli.common import EXIT_FAILURE, CliError
from postier.config.load import ENV_VAR
from postier.store.errors import Conflict, Invalid, NotFound, StoreError

#: command groups in `--help` order; each has `register(subparsers)`
GROUPS: tuple[ModuleType, ...] = (
    init, serve, config, domain, user, alias, queue, trace,
    mx, verify, dnscheck, send, migrate,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postier",
        allow_abbrev=False,
        description="postier: a complete mail system (SMTP, submission, outbound "
        "queue, IMAP, POP3, webmail).",
        epilog="Exit status: 0 done, 1 runtime failure, 2 bad input. "
        "Run 'postier COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"configuration file (default: ${ENV_VAR}, else development "
        "defaults with data in ./data)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log line format (default: log.format from the configuration)",
    )
    parser.add_argument("--version", action="version", version=f"postier {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console-script entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CliError as e:
        _error(e.message)
        return e.code
    except (NotFound, Conflict, Invalid) as e:  # the admin asked for something impossible
        _error(str(e))
        return CliError(str(e)).code
    except StoreError as e:
        _error(f"store: {e}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    except BrokenPipeError:
        # `postier user list | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    return code


def _error(message: str) -> None:
    print(f"postier: {message}", file=sys.stderr)
