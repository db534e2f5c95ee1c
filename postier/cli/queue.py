"""`postier queue list|show|flush|delete|hold|release|captured`: the outbound queue.

Rules:
- Every command goes through the store, never around it, so it is safe while the
  server runs: the runner claims entries in the store, and an entry deleted or
  held here is simply not claimed again (a delivery already in flight finishes
  its attempt; its result for a deleted entry is dropped).
- `flush` makes entries due now; a running server notices within a second
  (the runner looks at the store at least once a second). Held entries are
  never flushed: `flush QID` on one says so and changes nothing (exit 2).
- `delete` asks first (or needs ``--yes``): the message is dropped without a bounce.
- `captured` lists the development outbox (``smtp.outbound.capture``: remote
  mail kept in data_dir/outbox, never sent), newest first; ``captured ID``
  prints one message's bytes as they would have been sent.
- Times are shown in UTC, ages and delays rounded to the largest unit.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from postier.cli.common import (
    CliError,
    Subparsers,
    add_yes_option,
    confirm,
    load_settings,
    opened_store,
    out,
    run,
)
from postier.config.schema import Settings
from postier.mail.queueid import QueueId, is_qid
from postier.ops import queue as ops_queue
from postier.queue.capture import Outbox, outbox_dir
from postier.store.models import QueueEntry


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "queue",
        help="list and manage the outbound queue",
        description="Inspect and manage mail waiting for remote delivery.",
        allow_abbrev=False,
    )
    cmds = p.add_subparsers(dest="queue_command", metavar="ACTION", title="actions")
    cmds.required = True
    lst = cmds.add_parser(
        "list", help="every queued message with its recipients", allow_abbrev=False
    )
    lst.add_argument("--json", action="store_true", help="one JSON document")
    lst.set_defaults(handler=_list)
    show = cmds.add_parser("show", help="one message in full", allow_abbrev=False)
    show.add_argument("qid", metavar="QID")
    show.add_argument("--json", action="store_true", help="one JSON document")
    show.set_defaults(handler=_show)
    flush = cmds.add_parser("flush", help="retry now (one message, or all)", allow_abbrev=False)
    flush.add_argument("qid", metavar="QID", nargs="?")
    flush.set_defaults(handler=_flush)
    cap = cmds.add_parser(
        "captured",
        help="mail the development outbox kept instead of sending (smtp.outbound.capture)",
        allow_abbrev=False,
    )
    cap.add_argument("id", metavar="ID", nargs="?", help="print this captured message")
    cap.add_argument("--json", action="store_true", help="one JSON document")
    cap.set_defaults(handler=_captured)
    for name, text, fn in (
        ("delete", "remove a message from the queue (no bounce)", _delete),
        ("hold", "stop delivery attempts for a message", _hold),
        ("release", "resume delivery attempts for a held message", _release),
    ):
        c = cmds.add_parser(name, help=text, allow_abbrev=False)
        c.add_argument("qid", metavar="QID")
        if name == "delete":
            add_yes_option(c, "dropping the message (its recipients never get it)")
        c.set_defaults(handler=fn)


def parse_qid(text: str) -> QueueId:
    if not is_qid(text):
        raise CliError(f"malformed queue id {text!r} (16 characters like 0ABCDEFGHJKMNPQR)")
    return QueueId(text.upper())


def duration(seconds: float) -> str:
    s = int(abs(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def next_try(entry: QueueEntry, now: datetime) -> str:
    if entry.held:
        return "held"
    delta = (entry.next_attempt - now).total_seconds()
    return "now" if delta <= 0 else f"in {duration(delta)}"


def as_json(entry: QueueEntry) -> dict[str, object]:
    return {
        "qid": entry.id,
        "sender": entry.sender,
        "size": entry.size,
        "created": entry.created.isoformat(),
        "next_attempt": entry.next_attempt.isoformat(),
        "attempts": entry.attempts,
        "held": entry.held,
        "is_bounce": entry.is_bounce,
        "last_error": entry.last_error,
        "envid": entry.envid,
        "ret": entry.ret,
        "smtputf8": entry.smtputf8,
        "body_8bit": entry.body_8bit,
        "auth_user": entry.auth_user,
        "recipients": [
            {
                "address": r.address,
                "state": str(r.state),
                "last_reply": r.last_reply,
                "notify": r.notify,
                "orcpt": r.orcpt,
            }
            for r in entry.recipients
        ],
    }


def summary_lines(entry: QueueEntry, now: datetime) -> list[str]:
    age = duration((now - entry.created).total_seconds())
    lines = [
        f"{entry.id}  age {age:>4}  {entry.size:>9} B  next {next_try(entry, now):<10}"
        f"  tries {entry.attempts}  from <{entry.sender}>"
        + ("  (bounce)" if entry.is_bounce else "")
    ]
    for r in entry.recipients:
        reply = f"  {r.last_reply}" if r.last_reply else ""
        lines.append(f"    <{r.address}>  {r.state}{reply}")
    return lines


def _list(args: argparse.Namespace) -> int:
    settings = load_settings(args)

    async def go() -> list[QueueEntry]:
        async with opened_store(settings) as store:
            return await store.queue_list()

    entries = run(go())
    if args.json:
        out(json.dumps([as_json(e) for e in entries], indent=2))
        return 0
    now = datetime.now(UTC)
    for e in entries:
        for line in summary_lines(e, now):
            out(line)
    pending = sum(1 for e in entries for r in e.recipients if r.state == "pending")
    out(f"-- {len(entries)} message(s), {pending} recipient(s) pending")
    return 0


async def _get(settings: Settings, qid: QueueId) -> QueueEntry:
    async with opened_store(settings) as store:
        entry = await store.queue_get(qid)
    if entry is None:
        raise CliError(f"no queued message {qid}")
    return entry


def _show(args: argparse.Namespace) -> int:
    qid = parse_qid(args.qid)
    entry = run(_get(load_settings(args), qid))
    if args.json:
        out(json.dumps(as_json(entry), indent=2))
        return 0
    now = datetime.now(UTC)
    out(f"queue id:     {entry.id}")
    out(f"sender:       <{entry.sender}>" + ("  (a bounce)" if entry.is_bounce else ""))
    out(f"size:         {entry.size} octets")
    out(
        f"queued:       {entry.created.isoformat(timespec='seconds')} "
        f"({duration((now - entry.created).total_seconds())} ago)"
    )
    out(f"attempts:     {entry.attempts}")
    out(
        f"next try:     {entry.next_attempt.isoformat(timespec='seconds')} ({next_try(entry, now)})"
    )
    if entry.auth_user:
        out(f"submitted by: {entry.auth_user}")
    if entry.envid or entry.ret:
        out(f"DSN:          envid={entry.envid or '-'} ret={entry.ret or '-'}")
    if entry.last_error:
        out(f"last error:   {entry.last_error}")
    out("recipients:")
    for r in entry.recipients:
        notify = f" notify={r.notify}" if r.notify else ""
        out(f"  <{r.address}>  {r.state}{notify}")
        if r.last_reply:
            out(f"      {r.last_reply}")
    return 0


def _flush(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    qid = parse_qid(args.qid) if args.qid else None

    async def go() -> ops_queue.Flushed:
        async with opened_store(settings) as store:
            try:
                return await ops_queue.retry_now(store, qid)
            except ops_queue.QueueActionError as e:
                raise CliError(str(e)) from None

    flushed = run(go())
    tail = f"; {flushed.held} held, not flushed (postier queue release QID)" if flushed.held else ""
    out(f"{flushed.due} message(s) due now{tail}")
    return 0


def _simple(args: argparse.Namespace, action: str) -> int:
    qid = parse_qid(args.qid)
    settings = load_settings(args)

    if action == "delete":

        async def check() -> str:
            async with opened_store(settings) as store:
                entry = await store.queue_get(qid)
            if entry is None:
                raise CliError(f"no queued message {qid}")
            pending = sum(1 for r in entry.recipients if r.state == "pending")
            return (
                f"delete {qid} from <{entry.sender}> with {pending} recipient(s) "
                "pending, without a bounce?"
            )

        confirm(args, run(check()))

    async def go() -> None:
        async with opened_store(settings) as store:
            try:
                if action == "delete":
                    await ops_queue.delete(store, qid)
                else:
                    await ops_queue.hold(store, qid, action == "hold")
            except ops_queue.QueueActionError as e:
                raise CliError(str(e)) from None

    run(go())
    out({"delete": "deleted", "hold": "held", "release": "released"}[action] + f" {qid}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    return _simple(args, "delete")


def _hold(args: argparse.Namespace) -> int:
    return _simple(args, "hold")


def _release(args: argparse.Namespace) -> int:
    return _simple(args, "release")


def _captured(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    outbox = Outbox(outbox_dir(settings.server.data_dir))
    if args.id is not None:
        data = outbox.read(args.id)
        if data is None:
            raise CliError(f"no captured message {args.id}")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    items = outbox.list()
    if args.json:
        out(
            json.dumps(
                [
                    {
                        "id": c.id,
                        "qid": c.qid,
                        "sender": c.sender,
                        "recipients": list(c.recipients),
                        "captured": c.captured.isoformat(),
                        "size": c.size,
                        "subject": c.subject,
                    }
                    for c in items
                ],
                indent=2,
            )
        )
        return 0
    for c in items:
        when = c.captured.isoformat(timespec="seconds")
        out(f"{c.id}  {when}  {c.size:>9} B  from <{c.sender}>  {c.subject}")
        for r in c.recipients:
            out(f"    <{r}>")
    note = "" if settings.smtp.outbound.capture else " (capture is off: smtp.outbound.capture)"
    out(f"-- {len(items)} captured message(s){note}")
    return 0
