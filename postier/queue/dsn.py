"""Delivery status notifications: the bounce (and delay/success report) messages.

What it owns: turning "these recipients of this message failed (or were delayed,
delivered, relayed), here is why" into the bytes of one RFC 3464 report, and the
rules on whether a report is due at all.

Rules:
- One report per message per batch: every recipient that reached a final state
  in one delivery round goes in the same report (RFC 3464 §2).
- Shape (RFC 3464 §2, RFC 6522): ``multipart/report; report-type=delivery-status``
  with (1) a human-readable text/plain part naming each recipient, the remote
  server's exact reply and what to do, (2) the ``message/delivery-status`` part,
  (3) the original message (``message/rfc822``) or only its header
  (``text/rfc822-headers``): headers when RET=HDRS, for delay and success
  reports, and when the message is larger than `max_return_size`.
- When an address or the original needs UTF-8 (RFC 6531), the status part is
  ``message/global-delivery-status`` and the original ``message/global``
  (RFC 6533 §6); addresses then use the ``utf-8`` address type.
- From ``MAILER-DAEMON@<hostname>``, sent with the null envelope sender so it
  is never bounced itself (RFC 5321 §4.5.5). ``Auto-Submitted: auto-replied``
  (RFC 3834 §5) stops well-behaved autoresponders.
- `is_report_wanted`: never to the null sender or for a message that is itself
  a bounce (RFC 3461 §6.2 / RFC 5321 §6.1, no bounce loops); NOTIFY=NEVER means
  none; with a NOTIFY list only the listed kinds; without NOTIFY: failures and
  delays (RFC 3461 §4.1: "FAILURE,DELAY"; delay reports need queue.delay_warning).
"""

from __future__ import annotations

import email.utils
import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


class Action(enum.StrEnum):
    """RFC 3464 §2.3.3 Action values used here."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"


class DiagnosticType(enum.StrEnum):
    """RFC 3464 §2.3.6 diagnostic-type: whose words the diagnostic is."""

    SMTP = "smtp"  # the remote server's reply
    OURS = "X-Postier"  # our own diagnosis (routing, expiry, a refusal we made)


_NOTIFY_KIND = {
    Action.FAILED: "FAILURE",
    Action.DELAYED: "DELAY",
    Action.DELIVERED: "SUCCESS",
    Action.RELAYED: "SUCCESS",
}


@dataclass(frozen=True)
class RecipientReport:
    """What happened to one recipient, for its per-recipient fields."""

    address: str
    action: Action
    status: str  # RFC 3463 "5.1.1"
    diagnostic: str = ""  # the remote reply "550 5.1.1 ...", or our own text
    diagnostic_type: DiagnosticType = DiagnosticType.SMTP
    remote_mta: str = ""  # the host that answered
    orcpt: str = ""  # "rfc822;user@example" as given with ORCPT=
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None  # delay reports (RFC 3464 §2.3.9)


def is_report_wanted(sender: str, is_bounce: bool, notify: str, action: Action) -> bool:
    """Whether the sender asked for (or gets by default) a report of `action`."""
    if not sender or is_bounce:
        return False  # never bounce a bounce (RFC 5321 §4.5.5)
    kinds = {k.strip().upper() for k in notify.split(",") if k.strip()}
    if "NEVER" in kinds:  # RFC 3461 §4.1
        return False
    if not kinds:  # RFC 3461 §4.1: the default is FAILURE or FAILURE,DELAY — we take the latter
        return action in (Action.FAILED, Action.DELAYED)
    return _NOTIFY_KIND[action] in kinds


def _needs_utf8(text: str) -> bool:
    return not text.isascii()


def _addr_field(address: str) -> str:
    """RFC 3464 §2.3.2 / RFC 6533 §3: "rfc822;" for ASCII, "utf-8;" otherwise."""
    return f"utf-8;{address}" if _needs_utf8(address) else f"rfc822;{address}"


def _clean(text: str) -> str:
    """One header line's worth of text: no CR/LF or other control characters."""
    return "".join(" " if ord(c) < 32 or c == "\x7f" else c for c in text).strip()


def _fold(name: str, value: str, width: int = 78) -> str:
    """A header field folded at spaces (RFC 5322 §2.2.3); hard limit is 998."""
    line = f"{name}: "
    out: list[str] = []
    for word in value.split(" "):
        if len(line) + len(word) > width and line.strip() and not line.endswith(": "):
            out.append(line.rstrip())
            line = " "
        line += word + " "
    out.append(line.rstrip())
    return "\r\n".join(out) + "\r\n"


def _date(dt: datetime) -> str:
    return email.utils.format_datetime(dt)


def header_block(message: bytes) -> bytes:
    """The header of `message` up to and including the empty line."""
    end = message.find(b"\r\n\r\n")
    if message.startswith(b"\r\n"):
        return b"\r\n"
    return message + b"\r\n\r\n" if end < 0 else message[: end + 4]


_SUBJECTS = {
    Action.FAILED: "Undelivered Mail Returned to Sender",
    Action.DELAYED: "Delayed Mail (still being retried)",
    Action.DELIVERED: "Successful Mail Delivery Report",
    Action.RELAYED: "Successful Mail Delivery Report",
}


def _human_text(
    hostname: str, reports: Sequence[RecipientReport], kind: Action, lifetime_days: float
) -> str:
    lines = [f"This is the mail system at host {hostname}.", ""]
    if kind == Action.FAILED:
        lines += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. It's attached below.",
            "",
            "For further assistance, please send mail to postmaster.",
            "",
            "If you do so, please include this problem report. You can",
            "delete your own text from the attached returned message.",
        ]
    elif kind == Action.DELAYED:
        lines += [
            "####################################################################",
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
            "####################################################################",
            "",
            "Your message could not be delivered yet to one or more recipients.",
            f"The mail system will keep trying for up to {lifetime_days:g} days",
            "from when it was sent; you will be told if it gives up.",
        ]
    else:
        lines += [
            "Your message was successfully delivered to the destination(s)",
            "listed below. If the message was delivered to a mailbox you will",
            "receive no further notifications. Otherwise you may still receive",
            "notifications of mail delivery errors from other systems.",
        ]
    lines += ["", "                   The mail system", ""]
    for r in reports:
        what = {
            Action.FAILED: "failed",
            Action.DELAYED: "delayed",
            Action.DELIVERED: "delivered",
            Action.RELAYED: "relayed (the next server will not send reports)",
        }[r.action]
        where = (
            f"host {r.remote_mta} said: "
            if r.remote_mta and r.diagnostic_type == DiagnosticType.SMTP
            else ""
        )
        lines.append(f"<{r.address}>: {what}: {where}{r.diagnostic}".rstrip(": "))
        if r.action == Action.FAILED:
            lines.append(f"    What to do: {_advice(r.status)}")
        lines.append("")
    return "\r\n".join(lines)


def _advice(status: str) -> str:
    """A sentence for a person, from the RFC 3463 subject/detail."""
    detail = status.split(".", 1)[1] if "." in status else ""
    if detail in ("1.1", "1.0", "1.3"):
        return "check the address for typing mistakes; the recipient does not exist there."
    if detail in ("1.2", "1.10", "4.4"):
        return "the recipient's domain does not accept mail; check the domain name."
    if detail.startswith("2."):
        return "the recipient's mailbox is full or disabled; try again later or by other means."
    if detail == "3.4":
        return "the message is too large for the recipient's server; send a smaller one."
    if detail.startswith("6."):
        return "the recipient's server cannot accept this kind of message (e.g. UTF-8 addresses)."
    if detail.startswith("7."):
        return "the recipient's server refused the message by policy; ask its postmaster."
    if detail == "4.7":
        return (
            "the message could not be delivered in time; the recipient's server was "
            "unreachable or kept deferring it."
        )
    return "read the server's reply above; resend once the problem is solved."


def build_report(
    *,
    hostname: str,
    sender: str,
    original: bytes,
    reports: Sequence[RecipientReport],
    arrival: datetime,
    now: datetime,
    qid: str = "",
    envid: str = "",
    ret: str = "",
    smtputf8: bool = False,
    max_return_size: int = 10 * 1024 * 1024,
    lifetime_days: float = 5,
    boundary: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """The complete DSN message (CRLF line ends), ready for `Store.deliver`.

    All reports must share one action kind (failed, delayed, or delivered/
    relayed); `original` is the message as queued (leading Return-Path removed).
    """
    if not reports:
        raise ValueError("a delivery report needs at least one recipient")
    kind = reports[0].action
    if kind == Action.RELAYED:
        kind = Action.DELIVERED
    utf8 = smtputf8 or _needs_utf8(sender) or any(_needs_utf8(r.address) for r in reports)
    boundary = boundary or f"{secrets.token_hex(8)}.{int(now.timestamp())}/{hostname}"
    message_id = message_id or f"<{int(now.timestamp())}.{secrets.token_hex(8)}@{hostname}>"

    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n",
        _fold("To", f"<{_clean(sender)}>"),
        f"Subject: {_SUBJECTS[kind]}\r\n",
        f"Date: {_date(now)}\r\n",
        f"Message-ID: {message_id}\r\n",
        "Auto-Submitted: auto-replied\r\n",  # RFC 3834 §5
        "MIME-Version: 1.0\r\n",
        # RFC 6522 §3 / RFC 3464 §2
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n',
    ]
    # RFC 3464 §2.2: per-message fields
    status = [f"Reporting-MTA: dns; {hostname}\r\n"]
    if qid:
        status.append(f"X-Postier-Queue-ID: {qid}\r\n")
    if envid:
        status.append(f"Original-Envelope-Id: {_clean(envid)}\r\n")  # §2.2.1
    status.append(f"Arrival-Date: {_date(arrival)}\r\n")  # §2.2.5
    for r in reports:
        status.append("\r\n")  # §2.1: a blank line before each recipient's group
        if r.orcpt:
            status.append(f"Original-Recipient: {_clean(r.orcpt)}\r\n")  # §2.3.1
        status.append(f"Final-Recipient: {_addr_field(_clean(r.address))}\r\n")  # §2.3.2
        status.append(f"Action: {r.action}\r\n")  # §2.3.3
        status.append(f"Status: {r.status}\r\n")  # §2.3.4
        if r.remote_mta:
            status.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}\r\n")  # §2.3.5
        if r.diagnostic:
            status.append(
                _fold("Diagnostic-Code", f"{r.diagnostic_type}; {_clean(r.diagnostic)}")
            )  # §2.3.6
        if r.last_attempt is not None:
            status.append(f"Last-Attempt-Date: {_date(r.last_attempt)}\r\n")  # §2.3.7
        if r.will_retry_until is not None:
            status.append(f"Will-Retry-Until: {_date(r.will_retry_until)}\r\n")  # §2.3.9

    human = _human_text(hostname, reports, reports[0].action, lifetime_days)
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    headers_only = ret.upper() == "HDRS" or kind != Action.FAILED or len(original) > max_return_size
    if headers_only:
        third_type = "message/global-headers" if utf8 else "text/rfc822-headers"
        third = header_block(original)
    else:
        third_type = "message/global" if utf8 else "message/rfc822"
        third = original if original.endswith(b"\r\n") else original + b"\r\n"
    body = b"".join(
        [
            b"This is a MIME-encapsulated message.\r\n\r\n",
            f"--{boundary}\r\n".encode(),
            b"Content-Description: Notification\r\n",
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Transfer-Encoding: 8bit\r\n\r\n",
            human.encode("utf-8"),
            b"\r\n\r\n",
            f"--{boundary}\r\n".encode(),
            b"Content-Description: Delivery report\r\n",
            f"Content-Type: {status_type}\r\n\r\n".encode(),
            "".join(status).encode("utf-8"),
            b"\r\n",
            f"--{boundary}\r\n".encode(),
            b"Content-Description: "
            + (b"Undelivered Message Headers" if headers_only else b"Undelivered Message")
            + b"\r\n",
            f"Content-Type: {third_type}\r\n".encode(),
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" if not third.isascii() else b"\r\n",
            third,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    if not body.isascii():  # RFC 6152: the receiver sees 8-bit content declared
        headers.append("Content-Transfer-Encoding: 8bit\r\n")
    headers.append("\r\n")
    return "".join(headers).encode("utf-8") + body
