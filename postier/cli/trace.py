"""`postier trace QID`: the timeline of one message, from the store's trace log.

Rules:
- Shows every recorded event in order (received — from whom, TLS, auth; each
  delivery attempt with the remote host, its IP and reply; deferrals with the
  next try; delivered/failed per recipient — a local copy with its mailbox, and
  the spam score when it went to Junk; the DSN and its queue id; removal), then
  the entry's current state: still queued, gone from the queue, delivered
  locally only, or never accepted.
- A bounce's own QID is named in the "dsn" line, so `postier trace` on it follows
  the report onwards.
"""

from __future__ import annotations

import argparse
import json

from postier.cli.common import CliError, Subparsers, load_settings, opened_store, out, run
from postier.cli.queue import as_json, parse_qid
from postier.ops.queue import gone_state
from postier.store.models import QueueEntry, TraceEvent


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "trace",
        help="the delivery timeline of one message",
        description="Print everything that happened to one message.",
        allow_abbrev=False,
    )
    p.add_argument("qid", metavar="QID")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    qid = parse_qid(args.qid)
    settings = load_settings(args)

    async def go() -> tuple[list[TraceEvent], QueueEntry | None]:
        async with opened_store(settings) as store:
            return await store.trace_get(qid), await store.queue_get(qid)

    events, entry = run(go())
    if not events and entry is None:
        raise CliError(f"nothing known about {qid}")
    if args.json:
        out(
            json.dumps(
                {
                    "qid": qid,
                    "events": [
                        {"at": e.at.isoformat(), "event": e.event, "detail": e.detail}
                        for e in events
                    ],
                    "queued": as_json(entry) if entry else None,
                },
                indent=2,
            )
        )
        return 0
    out(f"message {qid}")
    for e in events:
        out(f"{e.at.isoformat(timespec='milliseconds')}  {e.event:<13} {e.detail}")
    if entry is None:
        out(f"state: {gone_state(events)}")
    else:
        pending = [r for r in entry.recipients if r.state == "pending"]
        when = entry.next_attempt.isoformat(timespec="seconds")
        nxt = "held" if entry.held else f"next try {when}"
        out(f"state: queued, {len(pending)} recipient(s) pending, {nxt}")
    return 0
