"""Explained spam scoring: rule weights, the two thresholds, X-Spam-* fields.

Rules:
- Every scoring rule has a name (``MISSING_DATE``) and a default weight in
  `DEFAULT_SCORES`; ``spam.scores = ["RULE=weight"]`` overrides any of them.
  Stages ask `Weights` for a rule's weight, so the report and the decision use
  the same numbers.
- The total is the sum of every scored verdict of the session and transaction.
  total ≥ ``reject_threshold`` → ``550 5.7.1`` at end of data, decided in the
  session so nothing bounces later (no backscatter). Else total ≥
  ``junk_threshold``, or a stage's Junk verdict (DMARC quarantine) → the Junk
  mailbox. ``reject_threshold`` must be above ``junk_threshold``.
- On the MX listener every accepted message gets ``X-Spam-Status: Yes|No,
  score=S required=J tests=A,B`` and, when any rule scored, ``X-Spam-Report:``
  with one line per rule: ``* weight RULE detail``. Incoming X-Spam-* fields
  are removed first (`results.forged_fields`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from postier.config.schema import FILTER_STAGES
from postier.filters.pipeline import Action, Verdict
from postier.mail.replies import Reply

#: rule → default weight; one place to read every rule the stages can raise
DEFAULT_SCORES: dict[str, float] = {
    # reputation (dnsbl, fcrdns, helo)
    "DNSBL_LISTED": 3.0,
    "DNSWL_LISTED": -2.0,
    "RDNS_NONE": 1.0,
    "RDNS_MISMATCH": 1.0,
    "HELO_NOT_FQDN": 1.0,
    "HELO_BARE_IP": 1.5,
    "HELO_IP_MISMATCH": 1.5,
    "HELO_FORGED_LOCAL": 3.0,
    # authentication (spf, dkim, dmarc)
    "SPF_FAIL": 3.5,
    "SPF_SOFTFAIL": 1.5,
    "SPF_PERMERROR": 1.0,
    "SPF_PASS": -0.5,
    "DKIM_INVALID": 1.0,
    "DKIM_VALID": -0.5,
    "DMARC_FAIL": 1.5,
    "DMARC_QUARANTINE": 3.0,
    "DMARC_REJECT": 5.0,
    # header heuristics
    "MISSING_FROM": 1.0,
    "MISSING_TO": 0.5,
    "MISSING_DATE": 1.4,
    "MISSING_MESSAGE_ID": 0.5,
    "FROM_MULTIPLE": 2.0,
    "FORGED_LOCAL_FROM": 4.0,
    "TO_TOO_MANY": 1.5,
    "HTML_ONLY": 0.7,
    "URL_IP_HOST": 1.5,
    "URL_TEXT_MISMATCH": 2.5,
    # Bayes (bayes stage, by probability band)
    "BAYES_99": 4.0,
    "BAYES_90": 2.5,
    "BAYES_70": 1.0,
    "BAYES_10": -0.5,
    "BAYES_00": -1.5,
    # a stage that could not judge the message (pipeline.py): it goes on, a little
    # suspect; <STAGE>_ERROR is our bug (logged), SCAN_TIMEOUT its CPU budget
    "SCAN_TIMEOUT": 0.5,
    "CLAMD_SIZE_LIMIT": 0.0,  # too large for clamd: not scanned by it (clamd.py)
    **{f"{stage.upper()}_ERROR": 0.1 for stage in FILTER_STAGES},
}


class Weights:
    """Rule weights: the defaults with the operator's overrides applied."""

    def __init__(self, overrides: Iterable[str] = ()) -> None:
        self._w = dict(DEFAULT_SCORES)
        for item in overrides:
            rule, eq, raw = item.partition("=")
            rule = rule.strip().upper()
            if not eq or not re.fullmatch(r"[A-Z0-9_]+", rule):
                raise ValueError(f"spam.scores: {item!r} is not RULE=weight")
            try:
                self._w[rule] = float(raw)
            except ValueError:
                raise ValueError(f"spam.scores: {item!r}: weight is not a number") from None

    def __getitem__(self, rule: str) -> float:
        return self._w.get(rule, 0.0)


def R550_SPAM(score: float) -> Reply:
    return Reply(550, "5.7.1", f"Message rejected as spam (score {score:.1f})")


@dataclass(frozen=True)
class SpamDecision:
    score: float
    junk: bool
    reply: Reply | None  # the rejection, or None
    headers: bytes  # X-Spam-Status and X-Spam-Report, CRLF-terminated


#: the actions whose verdicts count in the total (with a rule)
_SCORING = (Action.SCORE, Action.JUNK)


def _fold_detail(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)[:200]


class SpamPolicy:
    def __init__(self, junk_threshold: float = 5.0, reject_threshold: float = 15.0) -> None:
        if reject_threshold <= junk_threshold:
            raise ValueError("spam.reject_threshold must be above spam.junk_threshold")
        self.junk_threshold = junk_threshold
        self.reject_threshold = reject_threshold
        # a message no rule scored (frequent; verdicts-free DATA in tests and on
        # loopback) always gets the same decision: worked out once, it is shared
        self._unscored = self._decide([])

    def decide(self, verdicts: Iterable[Verdict]) -> SpamDecision:
        scored = [v for v in verdicts if v.rule and v.action in _SCORING]
        return self._decide(scored) if scored else self._unscored

    def _decide(self, scored: list[Verdict]) -> SpamDecision:
        """The decision on the scored verdicts (with a rule, SCORE or JUNK)."""
        total = round(sum(v.score for v in scored), 1)
        forced_junk = any(v.action is Action.JUNK for v in scored)
        if total >= self.reject_threshold:
            return SpamDecision(total, False, R550_SPAM(total), b"")
        junk = forced_junk or total >= self.junk_threshold
        tests = ",".join(sorted({v.rule for v in scored})) or "none"
        status = (
            f"X-Spam-Status: {'Yes' if junk else 'No'}, score={total:.1f} "
            f"required={self.junk_threshold:.1f} tests={tests}\r\n"
        )
        if len(status) > 80:  # fold: no line over 78 octets (RFC 5322 §2.1.1)
            status = (
                f"X-Spam-Status: {'Yes' if junk else 'No'}, score={total:.1f} "
                f"required={self.junk_threshold:.1f}\r\n\ttests={_fold_list(tests)}\r\n"
            )
        out = status
        if scored:
            lines = [
                f" * {v.score:+.1f} {v.rule} {_fold_detail(v.detail)}".rstrip() for v in scored
            ]
            # the first reason on the field's own line: a field with an empty first
            # line gets rewritten by clients that refold (Python's email, getmail)
            out += "X-Spam-Report: " + "\r\n\t".join(ln.strip() for ln in lines) + "\r\n"
        return SpamDecision(total, junk, None, out.encode("utf-8"))


def _fold_list(items: str, width: int = 76) -> str:
    """A comma list folded after commas so no line passes 78 octets (RFC 5322
    §2.1.1); clients that refold long lines would otherwise change our bytes."""
    lines, line = [], ""
    for item in items.split(","):
        piece = f"{item},"
        if line and len(line) + len(piece) > width - 8:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line.rstrip(","))
    return "\r\n\t".join(lines)
