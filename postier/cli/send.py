"""`postier send` and the `postier-sendmail` entry point: mail from scripts and cron.

Rules:
- Both read the message from stdin and inject it with `postier.ops.submit` —
  the submission pipeline the submission listeners use (sender ownership, header
  completion, trace fields, local delivery or the outbound queue, DKIM signing
  when the queue sends it), built by the composition root. The
  store is written directly: this works with or without a running server, and a
  running server's queue runner sends queued mail within about a second.
- `postier send [-f FROM] [-t] [-i] TO...` uses postier's exit codes (0, 1
  runtime or temporary failure, 2 refused or bad input) and prints the queue id.
- `postier-sendmail` speaks the sendmail command line that cron, mailx, PHP and
  git send-email expect: ``-t`` (recipients from To/Cc/Bcc, Bcc removed), ``-i``
  and ``-oi`` (a lone "." line is data), ``-f ADDR`` / ``-fADDR`` / ``-r ADDR``
  (the sender), ``-F NAME`` (full name for an added From:), ``-C FILE`` (the
  postier config), ``--`` (end of options). Ignored as sendmail ignores them:
  ``-o*`` other options, ``-B type``, ``-N dsn``, ``-R ret``, ``-V envid``,
  ``-v``, ``-bm``, ``-em``... Other modes (``-bp``, ``-bs``, ``-q``, ``-bi``) are
  refused. Exit codes are sysexits(3): 0, 64 usage, 65 data, 67 unknown sender,
  69 unavailable (refused recipient), 75 temporary failure, 78 configuration.
  It is silent on success, as sendmail is.
- `postier-sendmail` accepts a message when some recipients are refused for good
  (an unknown Bcc): the others get it and the sender gets a bounce, as Postfix's
  and exim's sendmail do; `postier send` refuses the whole message instead and
  says why at once (`postier.ops.submit`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from postier.cli.common import (
    EXIT_FAILURE,
    CliError,
    Subparsers,
    load_settings,
    opened_store,
    out,
    run,
)
from postier.config.load import ConfigError, find_config, load
from postier.config.schema import Settings
from postier.ops.submit import SubmitError, Submitted, submit

# sysexits(3)
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "send",
        help="send a message read from stdin (like sendmail)",
        description="Inject the message on standard input through the submission "
        "path, as FROM (a local account or its alias). Works whether or not the "
        "server runs; queued remote mail is sent by the server's queue runner.",
        allow_abbrev=False,
    )
    p.add_argument("recipients", metavar="TO", nargs="*")
    p.add_argument(
        "-f",
        "--from",
        dest="sender",
        metavar="FROM",
        help="envelope sender (default: the From: header's address)",
    )
    p.add_argument(
        "-t",
        action="store_true",
        dest="extract",
        help="also send to the To:, Cc: and Bcc: addresses; remove Bcc:",
    )
    p.add_argument(
        "-i",
        action="store_true",
        dest="ignore_dots",
        help="a line with a single '.' does not end the message",
    )
    p.set_defaults(handler=_send)


def _inject(settings: Settings, data: bytes, o: SendmailOptions) -> Submitted:
    async def go() -> Submitted:
        from postier.server.root import build_submission

        async with opened_store(settings) as store:
            return await submit(
                build_submission(settings, store),
                store,
                settings,
                data,
                sender=o.sender,
                recipients=o.recipients,
                extract_recipients=o.extract,
                ignore_dots=o.ignore_dots,
                full_name=o.full_name,
                partial=o.partial,
            )

    return run(go())


def _send(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    data = sys.stdin.buffer.read()
    try:
        done = _inject(
            settings,
            data,
            SendmailOptions(
                sender=args.sender,
                recipients=list(args.recipients),
                extract=args.extract,
                ignore_dots=args.ignore_dots,
            ),
        )
    except SubmitError as e:
        raise CliError(str(e), EXIT_FAILURE if e.temporary else 2) from None
    out(f"queued as {done.qid}")
    return 0


# --- sendmail compatibility --------------------------------------------------------


class _Usage(Exception):
    pass


@dataclass
class SendmailOptions:
    sender: str | None = None
    extract: bool = False
    ignore_dots: bool = False
    full_name: str = ""
    config: str | None = None
    recipients: list[str] = field(default_factory=list)
    #: sendmail's convention: deliver to the accepted, bounce the refused
    partial: bool = False


#: sendmail options that take a value and are accepted but ignored
_IGNORED_WITH_VALUE = frozenset("BNRVLOhpX")
#: flag options accepted and ignored
_IGNORED_FLAGS = frozenset("vmnUGd")


def parse_sendmail_args(argv: Sequence[str]) -> SendmailOptions:
    """sendmail's command line → options; `_Usage` for what postier does not do."""
    opts = SendmailOptions()
    i = 0
    args = list(argv)

    def value(letter: str, rest: str) -> str:
        """The option's value: attached ("-fme@x") or the next argument."""
        nonlocal i
        if rest:
            return rest
        if i >= len(args):
            raise _Usage(f"option -{letter} needs a value")
        i += 1
        return args[i - 1]

    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            opts.recipients.extend(args[i:])
            break
        if not a.startswith("-") or a == "-":
            opts.recipients.append(a)
            continue
        letter, rest = a[1], a[2:]

        if letter == "t" and not rest:
            opts.extract = True
        elif letter == "i" and not rest:
            opts.ignore_dots = True
        elif letter == "o":
            if rest == "i":
                opts.ignore_dots = True
            elif not rest:
                value(letter, rest)  # "-o option": the option name follows
        elif letter in ("f", "r"):
            opts.sender = value(letter, rest)
        elif letter == "F":
            opts.full_name = value(letter, rest)
        elif letter == "C":
            opts.config = value(letter, rest)
        elif letter == "b":
            if rest not in ("m", ""):
                raise _Usage(f"mode -b{rest} is not supported (only -bm, deliver mail)")
        elif letter == "e":
            pass  # -em, -ep, -eq...: error reporting style; we report on stderr
        elif letter in _IGNORED_WITH_VALUE:
            value(letter, rest)
        elif letter in _IGNORED_FLAGS:
            pass
        elif letter == "q":
            raise _Usage("-q (queue runs) is not supported: the server runs its queue")
        else:
            raise _Usage(f"unknown option -{letter}")
    return opts


def sendmail_main(argv: Sequence[str] | None = None) -> int:
    """The `postier-sendmail` console script."""
    umask = os.umask(0o077)  # as `postier` (cli.main): what it creates is the owner's alone
    try:
        return _sendmail(argv)
    finally:
        os.umask(umask)


def _sendmail(argv: Sequence[str] | None) -> int:
    prog = os.path.basename(sys.argv[0]) if sys.argv else "sendmail"
    try:
        opts = parse_sendmail_args(sys.argv[1:] if argv is None else argv)
    except _Usage as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EX_USAGE
    opts.partial = True
    try:
        settings = load(find_config(opts.config))
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EX_CONFIG
    data = sys.stdin.buffer.read()
    try:
        _inject(settings, data, opts)
    except SubmitError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        if e.no_user:
            return EX_NOUSER
        if e.temporary:
            return EX_TEMPFAIL
        text = str(e)
        return EX_UNAVAILABLE if text.startswith("recipient refused") else EX_DATAERR
    except CliError as e:  # the store cannot be opened
        print(f"{prog}: {e.message}", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as e:  # boundary: the caller (cron) needs an exit code, not a trace
        print(f"{prog}: internal error: {e}", file=sys.stderr)
        return EX_SOFTWARE
    return 0


if __name__ == "__main__":
    raise SystemExit(sendmail_main())
