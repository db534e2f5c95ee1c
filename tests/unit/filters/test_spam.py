"""Scoring: weights, overrides, thresholds, the X-Spam-* fields."""

from __future__ import annotations

import pytest

from postier.filters.pipeline import Verdict
from postier.filters.spam import DEFAULT_SCORES, SpamPolicy, Weights


def test_weights_defaults_and_overrides():
    w = Weights(["missing_date=0.25", "NEW_RULE=-1"])
    assert w["MISSING_DATE"] == 0.25
    assert w["NEW_RULE"] == -1.0
    assert w["SPF_FAIL"] == DEFAULT_SCORES["SPF_FAIL"]
    assert w["UNKNOWN"] == 0.0
    with pytest.raises(ValueError, match=r"spam.scores: 'bad' is not RULE=weight"):
        Weights(["bad"])
    with pytest.raises(ValueError, match="weight is not a number"):
        Weights(["A=x"])


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="reject_threshold must be above"):
        SpamPolicy(5.0, 5.0)


def test_clean_message_gets_status_no():
    d = SpamPolicy(5.0, 15.0).decide([Verdict.accept("greylist", "passed")])
    assert (d.score, d.junk, d.reply) == (0.0, False, None)
    assert d.headers == b"X-Spam-Status: No, score=0.0 required=5.0 tests=none\r\n"


def test_junk_with_report_listing_every_rule():
    verdicts = [
        Verdict.scored("headers", "MISSING_DATE", 1.4, "no Date: header"),
        Verdict.scored("spf", "SPF_FAIL", 3.5, "fail for x.test from 192.0.2.1"),
        Verdict.scored("spf", "SPF_PASS", -0.5, "pass"),
        Verdict.accept("greylist"),
    ]
    d = SpamPolicy(4.0, 15.0).decide(verdicts)
    assert (d.score, d.junk, d.reply) == (4.4, True, None)
    assert d.headers == (
        b"X-Spam-Status: Yes, score=4.4 required=4.0\r\n"
        b"\ttests=MISSING_DATE,SPF_FAIL,SPF_PASS\r\n"
        b"X-Spam-Report: * +1.4 MISSING_DATE no Date: header\r\n"
        b"\t* +3.5 SPF_FAIL fail for x.test from 192.0.2.1\r\n"
        b"\t* -0.5 SPF_PASS pass\r\n"
    )


def test_forced_junk_below_threshold_and_reject_above():
    d = SpamPolicy().decide([Verdict.junk("dmarc", "DMARC_QUARANTINE", 3.0, "fail")])
    assert d.junk and d.score == 3.0
    assert d.headers.startswith(
        b"X-Spam-Status: Yes, score=3.0 required=5.0 tests=DMARC_QUARANTINE\r\n"
    )
    d = SpamPolicy(5.0, 6.0).decide(
        [Verdict.scored("x", "A", 4.0, ""), Verdict.scored("x", "B", 2.5, "")]
    )
    assert d.reply is not None
    assert d.reply.to_bytes() == b"550 5.7.1 Message rejected as spam (score 6.5)\r\n"


@pytest.mark.parametrize(("junk", "reject"), [(5.0, 15.0), (-5.0, 0.0), (0.0, 1.0), (-2.0, 3.0)])
def test_a_message_no_rule_scored_gets_the_decision_of_no_verdicts(junk, reject):
    # the unscored decision is worked out once; it must be what any call gives
    p = SpamPolicy(junk, reject)
    unscored = [Verdict.accept("greylist"), Verdict.accept("bayes", "spam probability 0.5")]
    assert p.decide(unscored) == p.decide([]) == p._decide([])
    fresh = SpamPolicy(junk, reject)._decide([])
    assert p.decide([]) == fresh
