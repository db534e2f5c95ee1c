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
- Every stage is total: a message it cannot parse gets the stage's permanent
  verdict (``dkim=permerror``, ``arc=fail``, a named rule), never a 4xx. A
  4xx comes only from transient causes: a DNS failure (`TempFail`), a scanner
  daemon that cannot be reached, greylisting. A stage that raises anything
  else is our bug, and the same input would raise again on every retry: the
  traceback is logged at ERROR with sid and QID, ``postier_filter_errors_total``
  counts it, and the stage's verdict is the rule ``<STAGE>_ERROR`` (a small
  score), so the message goes on instead of being deferred for ever.
- CPU-bound work (text and HTML analysis, Bayes tokens, DKIM/ARC hashing, MIME
  decoding, the virus scan) leaves the event loop through `postier.offload`,
  with the `filters.scan_timeout` budget (`Context.scan_timeout`). Past the
  budget (`ScanTimeout`) the stage's verdict is the rule SCAN_TIMEOUT and the
  message goes on.
- A DATA stage whose CPU-bound part needs nothing asynchronous first (the
  header and body rules, the virus scan) is an `Analyser`: its ``analyse(ctx,
  budget)`` runs in a worker thread and its `check` awaits
  `Context.analysis`. The first such stage to ask runs its own analysis and
  that of every later analyser of the pipeline in one hop, each with a budget
  of its own: one round trip to a thread per message, not one per stage (on a
  small message the trip cost more than the work). A message of at most
  `offload.INLINE_MAX` octets tries the loop first (`offload`'s ``inline``:
  work past `offload.INLINE_SECONDS` leaves the loop and runs again in a
  thread). A stage that refuses ends the phase; the analyses done ahead for
  the stages after it are dropped.
- The message is parsed once, at intake (`Context.parsed`, a
  `postier.mime.message.ParsedMessage`): the header view, the MIME tree, the
  decoded texts and DKIM's split all come from it; no stage parses the bytes.
- Content stages see the client's message bytes only when the message is at
  most `max_scan_size`; otherwise they are skipped and the skip is recorded.
  `Context.parsed` holds the whole message whatever its size (the virus
  stages scan everything).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from postier import metrics
from postier.dns.resolver import TempFail
from postier.mail.replies import Reply
from postier.mail.role import IntakeRole
from postier.mime.encoding import valid_text
from postier.offload import (
    DEFAULT_SCAN_TIMEOUT,
    GRACE,
    INLINE_MAX,
    Budget,
    ScanTimeout,
    offload,
)

if TYPE_CHECKING:
    from postier.filters.spam import Weights
    from postier.mail.headers import HeaderView
    from postier.mailauth.arc import ArcResult
    from postier.mailauth.dkimverify import DkimResult
    from postier.mailauth.dmarc import DmarcResult
    from postier.mailauth.spf import SpfResult
    from postier.mime.message import ParsedMessage
    from postier.store.api import Store
    from postier.store.models import UserId

log = logging.getLogger("postier.filters")


class MessageSource(Protocol):
    """The whole message as the client sent it (no trace fields), whatever its
    size: in memory, or streamed from the spool file."""

    @property
    def size(self) -> int: ...

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        """The bytes in pieces of at most `chunk_size` (blocking: file reads)."""
        ...


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

    def __post_init__(self) -> None:
        # details quote the message and daemons (rspamd's JSON may spell a lone
        # surrogate): the trace database and X-Spam-Report need valid Unicode
        if not self.detail.isascii():
            object.__setattr__(self, "detail", valid_text(self.detail))

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
    role: IntakeRole
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
    parsed: ParsedMessage | None = None  # at DATA: the whole message and its parse, any size
    scan_timeout: float = DEFAULT_SCAN_TIMEOUT  # the budget of each `offload`
    header: HeaderView | None = None
    spf: SpfResult | None = None
    dkim: list[DkimResult] | None = None
    arc: ArcResult | None = None
    dmarc: DmarcResult | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    #: when a list, `Pipeline.trace` collects lines here instead of writing them
    pending_trace: list[str] | None = None
    #: at DATA: the analysers not yet run, in pipeline order (`analysis`)
    analysers: list[Analyser] = field(default_factory=list)
    #: at DATA: analyses run ahead for stages that have not asked yet
    analysed: dict[str, tuple[Exception | None, Any]] = field(default_factory=dict)

    async def analysis(self, stage: Analyser) -> Any:
        """``stage.analyse(self, budget)``, run in a worker thread together with
        the analyses of the later analysers (module rules); raises what it raised."""
        got = self.analysed.pop(stage.name, None)
        if got is None:
            batch = [stage]
            if stage in self.analysers:
                batch += self.analysers[self.analysers.index(stage) + 1 :]
                self.analysers = []
            seconds = self.scan_timeout

            def work(budget: Budget) -> dict[str, tuple[Exception | None, Any]]:
                out: dict[str, tuple[Exception | None, Any]] = {}
                for i, s in enumerate(batch):
                    try:  # each its own budget; the first's counts the wait for a thread
                        got = s.analyse(self, budget if i == 0 else budget.another(seconds))
                        out[s.name] = (None, got)
                    except Exception as e:
                        out[s.name] = (e, None)
                return out

            # a small message tries the loop first: its analyses cost less than
            # the hop to a thread (postier.offload's rules bound the loop's time)
            small = self.parsed is not None and self.parsed.size <= INLINE_MAX
            try:
                done = await offload(
                    work, seconds, limit=len(batch) * seconds + GRACE, inline=small
                )
            except ScanTimeout as e:
                done = {s.name: (e, None) for s in batch}
            got = done.pop(stage.name)
            self.analysed.update(done)
        error, value = got
        if error is not None:
            raise error
        return value

    def texts(self, budget: Budget | None = None) -> list[tuple[str, str]]:
        """The message's readable text, decoded once for every stage
        (`ParsedMessage.texts`); none for a message too large to scan.
        CPU-bound: call it from `offload`d work, with its budget."""
        if self.message is None or self.parsed is None:
            return []
        return self.parsed.texts(budget.check if budget is not None else None)

    @property
    def source(self) -> MessageSource | None:
        """The whole message, whatever its size (the virus stages)."""
        return self.parsed

    def load(self, parsed: ParsedMessage, max_scan_size: int) -> None:
        """End of data: the message and its one parse; the content stages see
        the bytes only when they are at most `max_scan_size` octets."""
        self.parsed = parsed
        self.header = parsed.header
        self.message = parsed.data if parsed.size <= max_scan_size else None

    def begin(self, qid: str, sender: str) -> None:
        """A new transaction (MAIL FROM): forget the previous one's state."""
        self.qid, self.sender, self.recipient = qid, sender, ""
        self.recipients, self.local_users, self.verdicts = [], [], []
        self.analysers, self.analysed = [], {}
        self.message = self.header = self.parsed = None
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


class Analyser(Protocol):
    """A DATA stage with a CPU-bound part that needs nothing asynchronous first:
    `analyse` runs in a worker thread (blocking, linear in the message, checking
    `budget` between its steps); `check` gets its result from
    `Context.analysis`."""

    name: str
    phases: frozenset[Phase]

    def analyse(self, ctx: Context, budget: Budget) -> Any: ...

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]: ...


def timeout_verdict(stage: str, error: ScanTimeout, weight: float) -> Verdict:
    """The permanent verdict of a stage whose CPU-bound work ran past its budget
    (counted in ``postier_filter_errors_total``)."""
    metrics.FILTER_ERRORS.labels(stage, "timeout").inc()
    return Verdict.scored(
        stage, "SCAN_TIMEOUT", weight, f"{stage} gave up: {error} (filters.scan_timeout)"
    )


def R451_DNS_TEMPFAIL(sid: str) -> Reply:
    return Reply(451, "4.4.3", f"Temporary DNS failure, try again later (session {sid})")


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
        weights: Weights | None = None,
    ) -> None:
        self.stages = list(stages)
        self.store = store
        self.content_phases = content_phases
        self.weights = weights
        # the stages are fixed here: who answers each phase, and the DATA
        # analysers, are worked out once rather than at every command
        self._of_phase = {p: tuple(s for s in self.stages if p in s.phases) for p in Phase}
        self._analysers = tuple(
            cast("Analyser", s) for s in self._of_phase[Phase.DATA] if hasattr(s, "analyse")
        )

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.stages)

    async def run(self, phase: Phase, ctx: Context) -> Reply | None:
        """Ask every stage of `phase`; the refusal to send, or None to go on."""
        if phase is Phase.HELO:  # a new HELO/EHLO (after RSET or STARTTLS) replaces the old
            ctx.helo_verdicts, ctx.helo_refusal = [], None
        if phase is Phase.DATA:
            ctx.analysed = {}
            ctx.analysers = list(self._analysers)
        if phase is Phase.MAIL:
            for v in ctx.session_verdicts:
                if v.action is not Action.ACCEPT or v.detail:
                    await self.trace(ctx, f"session {v.describe()}")
            refusal = ctx.session_refusal
            if refusal is not None and refusal.reply is not None:
                return refusal.reply
        for stage in self._of_phase[phase]:
            try:
                verdicts = await stage.check(phase, ctx)
            except TempFail as e:  # transient: the sender tries again later
                verdicts = [Verdict.tempfail(stage.name, R451_DNS_TEMPFAIL(ctx.sid), str(e))]
            except ScanTimeout as e:
                weight = self.weights["SCAN_TIMEOUT"] if self.weights is not None else 0.0
                verdicts = [timeout_verdict(stage.name, e, weight)]
            except Exception as e:  # our bug; the same message would raise again
                log.exception(
                    "sid=%s qid=%s filter %s crashed at %s",
                    ctx.sid,
                    ctx.qid or "-",
                    stage.name,
                    phase,
                )
                metrics.FILTER_ERRORS.labels(stage.name, "error").inc()
                verdicts = [
                    self._scored(
                        stage.name,
                        f"{stage.name.upper()}_ERROR",
                        f"stage error: {type(e).__name__}",
                    )
                ]
            for v in verdicts:
                if self._keep(phase, ctx, v):
                    await self._report(phase, ctx, v)
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

    def _scored(self, stage: str, rule: str, detail: str) -> Verdict:
        weight = self.weights[rule] if self.weights is not None else 0.0
        return Verdict.scored(stage, rule, weight, detail)

    @staticmethod
    def _keep(phase: Phase, ctx: Context, v: Verdict) -> bool:
        """Count `v` in the session or the transaction; whether it is worth a log
        line and a trace (anything but a bare accept, the usual verdict)."""
        if phase is Phase.CONNECT:
            ctx.connect_verdicts.append(v)
        elif phase is Phase.HELO:
            ctx.helo_verdicts.append(v)
        else:
            ctx.verdicts.append(v)
        return v.action is not Action.ACCEPT or bool(v.detail)

    async def _report(self, phase: Phase, ctx: Context, v: Verdict) -> None:
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
        from postier.mail.queueid import QueueId

        try:
            await self.store.trace_add(QueueId(ctx.qid), "filter", text)
        except Exception:
            log.exception("sid=%s qid=%s trace failed", ctx.sid, ctx.qid)
