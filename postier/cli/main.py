"""The `postier` command: global options and the argument tree.

Rules:
- Each command group is one module exposing ``register(subparsers)``; it adds its
  parser(s) and sets ``handler`` (a `common.Handler`) as a parser default. A new
  group (queue, trace, mx, verify, dns-check, send, import/export) is one module
  plus one entry in `GROUPS`; nothing else here changes.
- Global options: ``-c/--config FILE`` (else $POSTIER_CONFIG, else ./postier.toml,
  else an error saying how to get one) and ``--log-format text|json``. ``-c`` is
  accepted before or after the command (``postier user list -c FILE``): every
  command's parser gets it too, without a default, so it overrides only when given.
  Each handler loads the settings itself, so `init` works without any config file.
- Abbreviated long options are off: ``--password`` must never be read as a prefix
  of ``--password-stdin``, and scripts must not break when an option is added.
- The process umask is 077: nothing postier creates is readable by other users.
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
    backup,
    config,
    dnscheck,
    domain,
    init,
    migrate,
    mx,
    queue,
    send,
    serve,
    status,
    storecopy,
    trace,
    user,
    verify,
)
from postier.cli.common import EXIT_FAILURE, CliError
from postier.config.load import ENV_VAR, LOCAL_CONFIG
from postier.store.errors import Conflict, Invalid, NotFound, StoreError

#: command groups in `--help` order; each has `register(subparsers)`
GROUPS: tuple[ModuleType, ...] = (
    init, serve, status, config, domain, user, alias, queue, trace,
    mx, verify, dnscheck, send, migrate, backup, storecopy,
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
    parser.add_argument("-c", "--config", metavar="FILE", help=_CONFIG_HELP)
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
    for leaf in _leaves(parser):
        if leaf.prog in _WITHOUT_CONFIG:
            continue
        leaf.add_argument(
            "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help=_CONFIG_HELP
        )
    return parser


#: commands that read no configuration file
_WITHOUT_CONFIG = {"postier init", "postier config sample", "postier config reference"}
_CONFIG_HELP = f"configuration file (default: ${ENV_VAR}, else ./{LOCAL_CONFIG})"


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that end a command line (`user add`, `serve`...), below `parser`."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found.extend(_leaves(child) or [child])
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """The console-script entry point; returns the exit code."""
    # everything postier creates (data dir, store, spool, exports) is its owner's
    # alone, as Postfix and Dovecot do; files that others need (the certificate)
    # get their mode explicitly. Restored on return, for callers in a process of
    # their own (tests).
    umask = os.umask(0o077)
    try:
        return _main(argv)
    finally:
        os.umask(umask)


def _main(argv: Sequence[str] | None) -> int:
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
