"""The intake filter pipeline: ordered stages that vote at each SMTP step.

A stage is a small object with one job (greylisting, SPF, a virus scan...). At
each `Phase` the pipeline asks, in order, every stage registered for it, and
each answers zero or more `Verdict`s: accept, add a score with a named rule,
send to Junk, tempfail (4xx) or reject (5xx).

Rules:
- The first tempfail or reject ends the phase: its reply is the SMTP reply.
  Connect and HELO refusals are not sent at once but at the client's MAIL FROM
  (as Postfix's ``smtpd_delay_reject``): the client gets a normal transaction
  reply and the log line carries its sender.
- Scores add up over the session (connect, HELO) and the transaction (MAIL,
  RCPT, DATA). At end of data `spam.SpamPolicy` compares the total with the
  Junk and reject thresholds and writes X-Spam-Status/X-Spam-Report.
- Every verdict other than a bare accept is logged with the session id and QID
  and recorded in the store's trace (``postier trace QID``, event "filter");
  session verdicts are recorded under the QID of each transaction they count in.
- A stage that raises is our bug, not the client's: the phase answers
  ``451 4.3.0`` with the session id (the mail stays with the sender) and the
  traceback is logged.
- Content stages see the client's message bytes only when the message is at
  most `max_scan_size`; otherwise they are skipped and the skip is recorded.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from postier.filters.text import message_texts
from postier.smtp.replies import Reply

if TYPE_CHECKING:
    from postier.mailauth.arc import ArcResult
    from postier.mailauth.dkimverify import DkimResult
    from postier.mailauth.dmarc import DmarcResult
    from postier.mailauth.spf import SpfResult
    from postier.smtp.headers import HeaderView
    from postier.store.api import Store
    from postier.store.models import UserId

log = logging.getLogger("postier.filters")


class Phase(enum.StrEnum):
    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


class Action(enum.StrEnum):
    ACCEPT = "accept"
    SCORE = "score"
    JUNK = "junk"  # deliver to Junk whatever the score (DMARC quarantine)
    TEMPFAIL = "tempfail"
    REJECT = "reject"


@dataclass(frozen=True)
class Verdict:
    stage: str
    action: Action
    rule: str = ""  # named reason, upper snake case (X-Spam-Report)
    score: float = 0.0
    detail: str = ""
    reply: Reply | None = None  # for TEMPFAIL and REJECT

    @classmethod
    def accept(cls, stage: str, detail: str = "") -> Verdict:
        return cls(stage, Action.ACCEPT, detail=detail)

    @classmethod
    def scored(cls, stage: str, rule: str, score: float, detail: str) -> Verdict:
        return cls(stage, Action.SCORE, rule, score, detail)

    @classmethod
    def junk(cls, stage: str, rule: str, score: float, detail: str) -> Verdict:
        return cls(stage, Action.JUNK, rule, score, detail)

    @classmethod
    def tempfail(cls, stage: str, reply: Reply, detail: str = "") -> Verdict:
        assert 400 <= reply.code < 500
        return cls(stage, Action.TEMPFAIL, detail=detail, reply=reply)

    @classmethod
    def reject(cls, stage: str, reply: Reply, detail: str = "") -> Verdict:
        assert 500 <= reply.code < 600
        return cls(stage, Action.REJECT, detail=detail, reply=reply)

    @property
    def refuses(self) -> bool:
        return self.action in (Action.TEMPFAIL, Action.REJECT)

    def describe(self) -> str:
        out = f"{self.stage}: {self.action}"
        if self.rule:
            out += f" {self.rule}={self.score:+.1f}"
        if self.reply is not None:
            out += f" [{self.reply}]"
        if self.detail:
            out += f" ({self.detail})"
        return out


@dataclass
class Context:
    """What the stages know of one connection and its current transaction."""

    sid: str
    role: str  # "mx" or "submission"
    peer_ip: str
    hostname: str  # ours: the authserv-id, the forged-HELO check
    helo: str = ""
    peer_name: str | None = None  # forward-confirmed reverse DNS name (fcrdns stage)
    iprev: str = ""  # RFC 8601 §3 iprev result: pass, fail, temperror, permerror
    authenticated: bool = False
    connect_verdicts: list[Verdict] = field(default_factory=list)
    helo_verdicts: list[Verdict] = field(default_factory=list)  # the latest HELO/EHLO's
    connect_refusal: Verdict | None = None
    helo_refusal: Verdict | None = None
    # --- the transaction --------------------------------------------------
    qid: str = ""
    sender: str | None = None  # None before MAIL, "" for the null reverse-path <>
    recipient: str = ""  # at RCPT: the one being checked
    recipients: list[str] = field(default_factory=list)
    local_users: list[UserId] = field(default_factory=list)
    message: bytes | None = None  # at DATA: the client's bytes (None: too large)
    header: HeaderView | None = None
    spf: SpfResult | None = None
    dkim: list[DkimResult] | None = None
    arc: ArcResult | None = None
    dmarc: DmarcResult | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    _texts: list[tuple[str, str]] | None = None
    #: when a list, `Pipeline.trace` collects lines here instead of writing them
    pending_trace: list[str] | None = None

    @property
    def texts(self) -> list[tuple[str, str]]:
        """The message's readable text, decoded once for every stage (text.py)."""
        if self._texts is None:
            self._texts = message_texts(self.message) if self.message is not None else []
        return self._texts

    def begin(self, qid: str, sender: str) -> None:
        """A new transaction (MAIL FROM): forget the previous one's state."""
        self.qid, self.sender, self.recipient = qid, sender, ""
        self.recipients, self.local_users, self.verdicts = [], [], []
        self.message = self.header = None
        self._texts = None
        self.spf = self.arc = self.dmarc = None
        self.dkim = None

    @property
    def session_verdicts(self) -> list[Verdict]:
        return self.connect_verdicts + self.helo_verdicts

    @property
    def session_refusal(self) -> Verdict | None:
        return self.connect_refusal or self.helo_refusal

    def all_verdicts(self) -> list[Verdict]:
        return self.session_verdicts + self.verdicts

    @property
    def score(self) -> float:
        return sum(v.score for v in self.all_verdicts())

    @property
    def sender_domain(self) -> str:
        return (self.sender or "").rpartition("@")[2].lower()


class Stage(Protocol):
    """One filter. `check` is called for each phase in `phases`."""

    name: str
    phases: frozenset[Phase]

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]: ...


def R451_FILTER_ERROR(sid: str) -> Reply:
    return Reply(451, "4.3.0", f"Local error in message filtering, try again later (session {sid})")


@dataclass(frozen=True)
class DataOutcome:
    """The end-of-data decision: refuse with `reply`, or deliver with `headers`
    added on top (to Junk when `junk`)."""

    reply: Reply | None = None
    headers: bytes = b""
    junk: bool = False
    score: float = 0.0


class Pipeline:
    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        store: Store | None = None,
        content_phases: frozenset[Phase] = frozenset({Phase.DATA}),
    ) -> None:
        self.stages = list(stages)
        self.store = store
        self.content_phases = content_phases

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.stages)

    async def run(self, phase: Phase, ctx: Context) -> Reply | None:
        """Ask every stage of `phase`; the refusal to send, or None to go on."""
        if phase is Phase.HELO:  # a new HELO/EHLO (after RSET or STARTTLS) replaces the old
            ctx.helo_verdicts, ctx.helo_refusal = [], None
        if phase is Phase.MAIL:
            for v in ctx.session_verdicts:
                if v.action is not Action.ACCEPT or v.detail:
                    await self.trace(ctx, f"session {v.describe()}")
            refusal = ctx.session_refusal
            if refusal is not None and refusal.reply is not None:
                return refusal.reply
        for stage in self.stages:
            if phase not in stage.phases:
                continue
            try:
                verdicts = await stage.check(phase, ctx)
            except Exception:
                log.exception(
                    "sid=%s qid=%s filter %s crashed at %s",
                    ctx.sid,
                    ctx.qid or "-",
                    stage.name,
                    phase,
                )
                verdicts = [Verdict.tempfail(stage.name, R451_FILTER_ERROR(ctx.sid), "stage error")]
            for v in verdicts:
                await self._record(phase, ctx, v)
                if not v.refuses:
                    continue
                if phase is Phase.CONNECT:
                    ctx.connect_refusal = ctx.connect_refusal or v
                    return None
                if phase is Phase.HELO:
                    ctx.helo_refusal = ctx.helo_refusal or v
                    return None
                return v.reply
        return None

    async def _record(self, phase: Phase, ctx: Context, v: Verdict) -> None:
        if phase is Phase.CONNECT:
            ctx.connect_verdicts.append(v)
        elif phase is Phase.HELO:
            ctx.helo_verdicts.append(v)
        else:
            ctx.verdicts.append(v)
        if v.action is Action.ACCEPT and not v.detail:
            return
        log.info("sid=%s qid=%s filter %s %s", ctx.sid, ctx.qid or "-", phase, v.describe())
        if phase not in (Phase.CONNECT, Phase.HELO):
            await self.trace(ctx, f"{phase} {v.describe()}")

    async def trace(self, ctx: Context, text: str) -> None:
        if self.store is None or not ctx.qid:
            return
        if ctx.pending_trace is not None:
            # end of data: recorded with the delivery's own commit (or flushed by
            # the caller when the message is refused)
            ctx.pending_trace.append(text)
            return
        from postier.store.models import QueueId

        try:
            await self.store.trace_add(QueueId(ctx.qid), "filter", text)
        except Exception:
            log.exception("sid=%s qid=%s trace failed", ctx.sid, ctx.qid)
