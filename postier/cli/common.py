"""Helpers every `postier` command group shares: errors and exit codes, settings,
the store, address parsing, password prompts, sizes.

Rules:
- Exit codes: 0 done; 2 bad input (malformed address, unknown domain, duplicate,
  wrong confirmation, bad config); 1 runtime failure (the store cannot be opened or
  fails). A command reports one line on stderr, ``postier: <what is wrong>``.
- Commands raise `CliError`; only `main.main` prints it and turns it into the exit code.
- Passwords are never taken from the command line (shell history, `ps`): only from
  one line of stdin with ``--password-stdin``, or typed twice at a TTY prompt; and
  never shorter than ``auth.min_password_length``.
- Commands that destroy data (`user del`, `queue delete`, `restore`) ask first at
  a terminal, or need ``--yes``; without a terminal and without it they refuse.
- Admin commands open the store, make the change, close it; nothing is cached, so a
  running server sees the change at once (it reads the store) and needs no restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import re
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from postier.config.load import ConfigError, find_config, load
from postier.config.schema import Settings
from postier.mail.address import Address, AddressError, Domain
from postier.ops.accounts import PasswordRefused, check_password

if TYPE_CHECKING:
    from postier.store.api import Store

EXIT_OK = 0
EXIT_FAILURE = 1  # runtime: store unreachable, I/O error
EXIT_USAGE = 2  # bad input; also argparse's code for a bad command line

T = TypeVar("T")

#: a command: parsed arguments in, exit code out
Handler = Callable[[argparse.Namespace], int]

#: `subparsers` as argparse hands it out (its class is private)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A failure to report as ``postier: <message>`` with exit code `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's async part to completion on a fresh event loop."""
    return asyncio.run(coro)


def load_settings(args: argparse.Namespace) -> Settings:
    """`-c FILE`, else $POSTIER_CONFIG, else ./postier.toml, else a clear error."""
    try:
        return load(find_config(getattr(args, "config", None)))
    except ConfigError as e:
        raise CliError(str(e)) from None


@contextlib.asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The store, opened for one command and closed after it (committed, durable)."""
    # imported here: `postier --help` and `postier init` checks stay fast and the
    # backend's import errors surface as a runtime failure of the command using it
    try:
        from postier.store import open_store

        store: Store = open_store(settings)
    except Exception as e:  # boundary: any backend failure is "cannot open the store"
        raise CliError(
            f"cannot open the store in {_where(settings)}: {_reason(e)}", EXIT_FAILURE
        ) from e
    try:
        await store.open()
    except Exception as e:
        with contextlib.suppress(Exception):  # release what a half-done open took
            await store.close()
        raise CliError(
            f"cannot open the store in {_where(settings)}: {_reason(e)}", EXIT_FAILURE
        ) from e
    try:
        yield store
    finally:
        await store.close()


def _where(settings: Settings) -> str:
    if settings.store.backend == "postgres":
        return "PostgreSQL"
    return str(settings.server.data_dir)


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text)


def parse_domain(text: str) -> Domain:
    """A mail domain we may host: a host name, not an address literal."""
    try:
        domain = Domain.parse(text)
    except AddressError as e:
        raise CliError(f"malformed domain {text!r}: {e}") from None
    if domain.ascii.startswith("["):
        raise CliError(f"{text!r} is an address literal, not a domain")
    return domain


def parse_address(text: str) -> Address:
    """An address as RFC 5321 §4.1.2 ``Mailbox`` (SMTPUTF8 local parts allowed)."""
    try:
        return Address.parse(text)
    except AddressError as e:
        raise CliError(f"malformed address {text!r}: {e}") from None


def unknown_domain(domain: str) -> CliError:
    return CliError(f"unknown domain {domain} (add it with: postier domain add {domain})")


async def require_domain(store: Store, domain: Domain) -> None:
    """Raise the "unknown domain" error unless `domain` is one of ours."""
    if await store.get_domain(domain.ascii) is None:
        raise unknown_domain(domain.ascii)


def add_password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input "
        "(else it is prompted for twice on the terminal)",
    )
    # A trap: a password on the command line lands in shell history and `ps`. This
    # option exists only to refuse it without echoing the value back.
    parser.add_argument(
        "--password", "-p", nargs="?", const="", default=None, help=argparse.SUPPRESS
    )


def read_new_password(
    args: argparse.Namespace,
    settings: Settings,
    *,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str:
    """The new password: one line of stdin (``--password-stdin``) or typed twice;
    at least ``auth.min_password_length`` characters."""
    if args.password is not None:
        raise CliError(
            "a password is never accepted on the command line "
            "(use --password-stdin, or type it at the prompt)"
        )
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        if not sys.stdin.isatty():
            raise CliError("no terminal to ask for the password on (use --password-stdin)")
        password = prompt("Password: ")
        if prompt("Retype password: ") != password:
            raise CliError("passwords do not match")
    try:
        check_password(password, settings.auth.min_password_length)
    except PasswordRefused as e:
        raise CliError(str(e)) from None
    return password


def add_yes_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-y", "--yes", action="store_true", help=f"do not ask before {what} (for scripts)"
    )


def confirm(args: argparse.Namespace, question: str) -> None:
    """Go on only with ``--yes``, or when "yes" is typed at a terminal. Without a
    terminal and without ``--yes`` the answer is no: a script never destroys data
    because nobody was there to say no."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"{question}: not confirmed (no terminal to ask on; add --yes)")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("not confirmed: nothing changed")


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """ "500M", "2G", "1048576" → bytes (K/M/G/T are powers of 1024); 0 = unlimited."""
    m = _SIZE.match(text)
    if not m:
        raise CliError(f"{text!r} is not a size (like 500M, 2G or a number of bytes)")
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _SIZE_UNITS[unit]


def format_size(size: int) -> str:
    if size == 0:
        return "unlimited"
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def out(line: str = "") -> None:
    """One line of a command's result on stdout."""
    print(line)


def warn(line: str) -> None:
    print(f"postier: warning: {line}", file=sys.stderr)
