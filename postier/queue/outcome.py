"""What one delivery attempt did to one recipient, and how that becomes its state.

Rules:
- An `Outcome` is one of three kinds (`OutcomeKind`): delivered (2xx), temporary
  (4xx, network errors, SERVFAIL: retried until `queue.lifetime`), permanent (5xx,
  null MX, NXDOMAIN, SIZE or SMTPUTF8 refusals, expiry: a DSN is due).
- `reply` is the remote server's reply as one line when one answered
  (`DiagnosticType.SMTP`), else our own diagnosis (`DiagnosticType.OURS`); DSNs
  and log lines quote it as is.
- `apply` is the only mapping from an outcome to a stored recipient state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from postier.queue.dsn import DiagnosticType
from postier.smtp.client import ServerReply
from postier.store.models import QueueRecipient, RcptState


class OutcomeKind(enum.StrEnum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


_STATE = {
    OutcomeKind.DELIVERED: RcptState.DELIVERED,
    OutcomeKind.PERMANENT: RcptState.FAILED,
    OutcomeKind.TEMPORARY: RcptState.PENDING,
}


@dataclass(frozen=True)
class Outcome:
    """One recipient's result of one attempt."""

    kind: OutcomeKind
    reply: str  # the remote reply as one line ("550 5.1.1 ..."), or our diagnosis
    status: str  # RFC 3463 code
    remote_mta: str = ""  # host name that answered ("" when none did)
    diagnostic_type: DiagnosticType = DiagnosticType.SMTP
    relayed: bool = False  # delivered to a peer without DSN support
    captured: bool = False  # kept in the development outbox, not sent (`queue.capture`)

    @classmethod
    def of_reply(cls, reply: ServerReply, host: str, *, relayed: bool = False) -> Outcome:
        if reply.is_success:
            return cls(
                OutcomeKind.DELIVERED, str(reply), reply.status("2.0.0"), host, relayed=relayed
            )
        if reply.is_permanent:
            return cls(OutcomeKind.PERMANENT, str(reply), reply.status("5.0.0"), host)
        return cls(OutcomeKind.TEMPORARY, str(reply), reply.status("4.0.0"), host)

    @classmethod
    def ours(cls, kind: OutcomeKind, status: str, text: str, host: str = "") -> Outcome:
        return cls(kind, f"{status} {text}" if status else text, status, host, DiagnosticType.OURS)

    @property
    def where(self) -> str:
        """ "host X said: " before a remote reply in log lines and the trace."""
        if self.remote_mta and self.diagnostic_type == DiagnosticType.SMTP:
            return f"host {self.remote_mta} said: "
        return ""


def refused(reply: ServerReply, host: str) -> Outcome:
    """A host refusing the session (greeting, EHLO, STARTTLS): try the next, then
    defer, whatever the code (RFC 5321 §5.1)."""
    return Outcome(OutcomeKind.TEMPORARY, str(reply), reply.status("4.0.0"), host)


def expired(r: QueueRecipient) -> Outcome:
    why = r.last_reply or "no reply"
    # RFC 3463: X.4.7 delivery time expired; class 5 since we give up
    return Outcome(
        OutcomeKind.PERMANENT,
        f"delivery time expired; last error: {why}",
        "5.4.7",
        diagnostic_type=DiagnosticType.OURS,
    )


def apply(r: QueueRecipient, o: Outcome) -> QueueRecipient:
    """The recipient as stored after outcome `o`."""
    text = f"{o.reply} (host {o.remote_mta})" if o.remote_mta else o.reply
    return replace(r, state=_STATE[o.kind], last_reply=text)


def status_of(reply: str, default: str) -> str:
    """The RFC 3463 code in a stored reply line ("451 4.7.1 ..."), else `default`."""
    parts = reply.split(" ")
    if len(parts) > 1 and parts[1].count(".") == 2 and parts[1][0] in "245":
        return parts[1]
    return default


def tally(recipients: Iterable[QueueRecipient]) -> str:
    """ "2 delivered, 1 bounced": the final states of an entry's recipients."""
    recipients = list(recipients)
    delivered = sum(1 for r in recipients if r.state == RcptState.DELIVERED)
    bounced = sum(1 for r in recipients if r.state == RcptState.FAILED)
    return f"{delivered} delivered, {bounced} bounced"


def last_error(recipients: Iterable[QueueRecipient]) -> str:
    """The entry's last error: the reply of its first pending recipient that has one."""
    for r in recipients:
        if r.state == RcptState.PENDING and r.last_reply:
            return r.last_reply
    return ""
