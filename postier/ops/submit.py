"""Local mail injection (`postier send`, `postier-sendmail`) through the submission path.

What it owns: turning (sender, recipients, message bytes from a script) into one
call of the submission pipeline (`postier.smtp.submission.Submission`, the
object the submission listeners use too), exactly as an authenticated client
on the submission port would: the sender must be a local account or an alias it
owns (the account is the "authenticated" user), recipients are checked and
resolved by the same code (local users, aliases, remote addresses queued), the
header is completed (Date:, Message-ID:, RFC 6409 §8; a missing From: is the
sender, as sendmail and Postfix do), trace fields are added, and the message is
made durable with `Store.deliver` before this returns. Remote copies go to the
outbound queue DKIM-signed (`queue.enqueue`, once, as they are queued), like
every submitted message.

Rules:
- The store is written directly, so injection works whether or not the server
  runs. A running server's queue runner looks at the queue at least every second
  (`Runner.max_idle`) and picks the new entry up; otherwise it is sent at the next
  `postier serve`.
- All or nothing by default (`postier send`): if any recipient is refused,
  nothing is stored and every refusal is reported (a script learns at once).
- With `partial` (`postier-sendmail`, as Postfix's and exim's sendmail do): when
  every refusal is permanent and at least one recipient is accepted, the message
  goes to the accepted ones and the sender gets one DSN (RFC 3464, failed) for
  the refused ones, delivered to their mailbox. A temporary refusal keeps all or
  nothing (the caller retries the whole message: no one gets it twice), and so
  does a message that nobody accepts (the caller is told at once). The message is
  stored before the DSN: a crash in between loses the DSN, never the message.
- Input: line ends become CRLF (RFC 5321 §2.3.8); a leading mbox "From " line
  is dropped; unless `ignore_dots`, a line
  holding a single "." ends the message (sendmail without -i/-oi). The message
  is limited to `smtp.limits.max_message_size` like any submission.
- With `extract_recipients` (-t) the To:, Cc: and Bcc: addresses are added to
  the given ones and the Bcc: field is removed from the message.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from postier.config.schema import Settings
from postier.mail.address import Address, AddressError
from postier.mail.headers import HeaderView
from postier.mail.queueid import QueueId
from postier.mail.replies import Reply
from postier.mime.address import addresses
from postier.mime.summary import summarize
from postier.ops.maildir import to_crlf
from postier.queue import dsn
from postier.smtp.submission import Refused, Step, Submission
from postier.store.api import Store
from postier.store.models import DeliveryTarget, NewMessage, User

_BCC = re.compile(rb"(?im)^bcc[ \t]*:.*\r\n(?:[ \t].*\r\n)*")


class SubmitError(Exception):
    """The message was not accepted; `temporary` when trying later may help."""

    def __init__(self, message: str, *, temporary: bool = False, no_user: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.no_user = no_user


@dataclass
class Submitted:
    qid: str
    reply: str
    recipients: list[str] = field(default_factory=list)  # accepted
    bounced: list[str] = field(default_factory=list)  # refused; the sender got a DSN


def prepare(data: bytes, *, ignore_dots: bool) -> bytes:
    """CRLF line ends, a final CRLF, and the sendmail "." terminator unless -i."""
    data = to_crlf(data)
    if data.startswith(b"From "):  # an mbox "From " line, as sendmail and Postfix drop it
        data = data[data.find(b"\r\n") + 2 :] if b"\r\n" in data else b""
    if not ignore_dots:
        if data.startswith(b".\r\n"):
            return b""
        end = data.find(b"\r\n.\r\n")
        if end >= 0:
            data = data[: end + 2]
        elif data.endswith(b"\r\n."):
            data = data[:-1]
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def header_addresses(data: bytes, names: tuple[str, ...]) -> list[str]:
    view = HeaderView.of(data)
    out: list[str] = []
    for name in names:
        out.extend(addresses(view.fields(name)))
    return out


def strip_bcc(data: bytes) -> bytes:
    view = HeaderView.of(data)
    return _BCC.sub(b"", view.raw) + data[len(view.raw) :]


def _parse(text: str, what: str) -> Address:
    try:
        return Address.parse(text)
    except AddressError as e:
        raise SubmitError(f"malformed {what} address {text!r}: {e}") from None


async def sender_account(store: Store, sender: Address) -> User:
    """The local account allowed to send as `sender` (its own address or an alias
    that resolves to it alone)."""
    res = await store.resolve(sender.key)
    if len(res.users) == 1 and not res.remote:
        user = res.users[0]
        if sender.key in {a.lower() for a in await store.addresses_of(user.id)}:
            return user
    raise SubmitError(
        f"sender {sender.key} is not a local account or an alias of exactly one",
        no_user=True,
    )


async def submit(
    submission: Submission,
    store: Store,
    settings: Settings,
    data: bytes,
    *,
    sender: str | None,
    recipients: list[str],
    extract_recipients: bool = False,
    ignore_dots: bool = True,
    full_name: str = "",
    partial: bool = False,
) -> Submitted:
    """Inject one message; returns when it is durable (see the module rules)."""
    data = prepare(data, ignore_dots=ignore_dots)
    limit = settings.smtp.limits.max_message_size
    if len(data) > limit:
        raise SubmitError(f"message of {len(data)} bytes exceeds the limit of {limit} bytes")
    if not sender:
        found = header_addresses(data, ("From",))
        if not found:
            raise SubmitError("no sender: give -f ADDRESS or a From: header")
        sender = found[0]
    from_addr = _parse(sender, "sender")
    rcpt_texts = list(recipients)
    if extract_recipients:
        rcpt_texts += header_addresses(data, ("To", "Cc", "Bcc"))
        data = strip_bcc(data)
    if not rcpt_texts:
        raise SubmitError("no recipients (give them as arguments, or use -t)")
    rcpts: list[Address] = []
    seen: set[str] = set()
    for text in rcpt_texts:
        a = _parse(text, "recipient")
        if a.key not in seen:
            seen.add(a.key)
            rcpts.append(a)
    if not HeaderView.of(data).has("From"):
        shown = email.utils.formataddr((full_name, str(from_addr))) if full_name else str(from_addr)
        data = f"From: {shown}\r\n".encode() + data

    user = await sender_account(store, from_addr)
    try:
        done = await submission.accept(user, from_addr, rcpts, data, partial=partial)
    except Refused as e:
        what = {Step.SENDER: "sender refused", Step.RECIPIENT: "recipient refused"}
        raise SubmitError(
            f"{what.get(e.step, 'not accepted')}: {e}", temporary=e.temporary
        ) from None
    if done.refused:
        await _bounce(store, settings, user, done.qid, data, done.refused)
    return Submitted(
        done.qid,
        str(done.reply),
        [str(a) for a in done.accepted],
        [str(a) for a, _ in done.refused],
    )


async def _bounce(
    store: Store,
    settings: Settings,
    user: User,
    qid: str,
    original: bytes,
    refused: list[tuple[Address, Reply]],
) -> None:
    """The sender's DSN for the recipients refused at injection (a local account:
    `sender_account` made sure), delivered to its INBOX and traced."""
    now = datetime.now(UTC)
    reports = [
        dsn.RecipientReport(
            address=str(a),
            action=dsn.Action.FAILED,
            status=reply.enhanced or "5.0.0",
            diagnostic=str(reply),
            last_attempt=now,
        )
        for a, reply in refused
    ]
    message = dsn.build_report(
        hostname=settings.server.hostname,
        sender=user.address,
        original=original,
        reports=reports,
        arrival=now,
        now=now,
        qid=qid,
        smtputf8=not user.address.isascii(),
    )
    names = ",".join(f"<{r.address}>" for r in reports)
    result = await store.deliver(
        NewMessage(message, summarize(message)),
        [DeliveryTarget(user.id)],
        trace=[
            ("received", f"from=<> DSN (failed) for {qid} to <{user.address}>"),
            ("delivered", f"to <{user.address}> in INBOX"),
        ],
    )
    await store.trace_add(
        QueueId(qid), "dsn", f"failed report {result.qid} for {names} to <{user.address}>"
    )
