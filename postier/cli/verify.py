"""`postier verify ADDRESS`: does a mailbox exist, asked of its MX without sending mail.

Rules:
- The probe and the verdicts are `postier.ops.verify` (its docstring says what
  each verdict means and does not mean). This module parses, rate-limits, prints.
- An address of a domain hosted here is answered from the store
  (`postier.ops.verify.verify_local`): no DNS, no probe, no rate limit.
- The port dialled is ``smtp.outbound.port`` (25 in production), the EHLO name
  ``server.hostname``, the sender ``<>`` unless ``--from`` names one.
- Rate limit: `--max-per-domain` probes of one domain and at most 20 in all per
  minute, counted in data_dir/verify-history.json; over it → exit 1 with the wait.
- Exit status: 0 exists; 1 for every other verdict (catch-all, unknown,
  greylisted, tempfail, blocked, no-mail) and for the rate limit; 2 bad input.
  ``--json`` prints one object (verdict, reason, reply, retry_after, transcript).
"""

from __future__ import annotations

import argparse
import json

from postier.cli.common import (
    EXIT_FAILURE,
    CliError,
    Subparsers,
    load_settings,
    opened_store,
    out,
    parse_address,
    run,
    warn,
)
from postier.config.schema import Settings
from postier.dns.resolver import make_resolver
from postier.mail.address import Address
from postier.ops.verify import (
    RateLimited,
    RateLimiter,
    Verdict,
    VerifyResult,
    verify,
    verify_local,
)

HISTORY_FILE = "verify-history.json"


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "verify",
        help="ask an address's MX whether the mailbox exists (no mail is sent)",
        description="Resolve the address's MX and walk EHLO, MAIL FROM, RCPT TO, RSET, "
        "QUIT with the first host that answers; a random address at the same domain "
        "tells a catch-all server apart. Verdicts: exists, catch-all, unknown, "
        "greylisted, tempfail, blocked, no-mail. Exit status 0 only for 'exists'.",
        allow_abbrev=False,
    )
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("-v", "--verbose", action="store_true", help="print the SMTP conversation")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--from",
        dest="sender",
        metavar="ADDRESS",
        default="",
        help="MAIL FROM address (default: the null sender <>)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="connect and per-command timeout (default 30)",
    )
    p.add_argument(
        "--max-per-domain",
        type=int,
        default=3,
        metavar="N",
        help="probes of one domain allowed per minute (default 3)",
    )
    p.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    address = parse_address(args.address)
    sender = str(parse_address(args.sender)) if args.sender else ""
    if args.timeout <= 0 or args.max_per_domain < 1:
        raise CliError("--timeout and --max-per-domain must be positive")
    settings = load_settings(args)
    result = run(_local(settings, address)) or _probe(args, settings, address, sender)
    if args.json:
        out(json.dumps(result.as_dict(), indent=2))
    else:
        if args.verbose:
            for who, text in result.transcript:
                out(f"{who}: {text}")
        out(f"{result.address}: {result.verdict}")
        out(f"  {result.reason}")
    return 0 if result.verdict is Verdict.EXISTS else EXIT_FAILURE


async def _local(settings: Settings, address: Address) -> VerifyResult | None:
    async with opened_store(settings) as store:
        return await verify_local(store, address)


def _probe(
    args: argparse.Namespace, settings: Settings, address: Address, sender: str
) -> VerifyResult:
    if settings.dns.offline:
        warn("dns.offline = true: every lookup answers 'no such domain', no query is sent")
    limiter = RateLimiter(
        settings.server.data_dir / HISTORY_FILE, max_per_domain=args.max_per_domain
    )
    try:
        limiter.take(address.domain.ascii)
    except RateLimited as e:
        raise CliError(str(e), EXIT_FAILURE) from None
    except OSError as e:
        raise CliError(f"{limiter.path}: {e.strerror or e}", EXIT_FAILURE) from None
    return run(
        verify(
            address,
            resolver=make_resolver(settings.dns),
            helo=settings.server.hostname,
            port=settings.smtp.outbound.port,
            sender=sender,
            connect_timeout=min(args.timeout, settings.smtp.outbound.connect_timeout),
            command_timeout=args.timeout,
        )
    )
