"""Store contract: greylisting decisions and Bayes token counts (issue 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from postier.store.models import GLOBAL_BAYES_MODEL, GreylistOutcome, UserId

T0 = datetime(2027, 1, 1, tzinfo=UTC)
KW = {"delay": 300.0, "window": 86400.0, "whitelist_period": 36 * 86400.0}


async def test_greylist_lifecycle(store):
    async def check(when, net="192.0.2.0/24", sender="a@x.test", rcpt="b@y.test", spf=""):
        return await store.greylist_check(net, sender, rcpt, now=when, spf_domain=spf, **KW)

    d = await check(T0)
    assert (d.outcome, d.passed, d.retry_after) == (GreylistOutcome.NEW, False, 300.0)
    d = await check(T0 + timedelta(seconds=100))
    assert (d.outcome, d.retry_after) == (GreylistOutcome.TOO_EARLY, 200.0)
    d = await check(T0 + timedelta(seconds=300), spf="x.test")
    assert (d.outcome, d.passed) == (GreylistOutcome.RETRY_PASSED, True)
    # the network is whitelisted now: another sender and recipient pass at once
    d = await check(T0 + timedelta(seconds=301), sender="c@z.test", rcpt="d@y.test")
    assert d.outcome is GreylistOutcome.WHITELISTED_NETWORK
    # an SPF-pass sender of the domain that passed, from another network
    d = await check(T0 + timedelta(seconds=302), net="198.51.100.0/24", spf="x.test")
    assert d.outcome is GreylistOutcome.WHITELISTED_DOMAIN
    # without SPF pass the domain does not help
    d = await check(T0 + timedelta(seconds=303), net="198.51.100.0/24")
    assert d.outcome is GreylistOutcome.NEW
    # the whitelist lapses after the period (refreshed at +302s by the last use)
    d = await check(T0 + timedelta(days=37), sender="e@z.test")
    assert d.outcome is GreylistOutcome.NEW


async def test_greylist_window_expiry_restarts(store):
    await store.greylist_check("n", "s", "r", now=T0, **KW)
    d = await store.greylist_check("n", "s", "r", now=T0 + timedelta(days=2), **KW)
    assert d.outcome is GreylistOutcome.NEW  # the old triplet expired, counted anew


async def test_bayes_learn_counts_once_and_moves_over(store):
    user = UserId(7)
    assert await store.bayes_learn(user, "d1", ["buy", "now", "buy"], True) is True
    assert await store.bayes_learn(user, "d1", ["buy", "now"], True) is False
    assert await store.bayes_learn(user, "d2", ["hello", "now"], False) is True
    c = await store.bayes_counts(user, ["buy", "now", "hello", "absent"])
    assert (c.spam_messages, c.ham_messages) == (1, 1)
    assert c.tokens == {"buy": (1, 0), "now": (1, 1), "hello": (0, 1)}
    # d1 moved out of Junk: it becomes ham
    assert await store.bayes_learn(user, "d1", ["buy", "now"], False) is True
    c = await store.bayes_counts(user, ["buy", "now"])
    assert (c.spam_messages, c.ham_messages) == (0, 2)
    assert c.tokens == {"buy": (0, 1), "now": (0, 2)}
    # models are separate
    g = await store.bayes_counts(GLOBAL_BAYES_MODEL, ["buy"])
    assert (g.spam_messages, g.ham_messages, g.tokens) == (0, 0, {})


async def test_bayes_counts_many_tokens(store):
    tokens = [f"t{i}" for i in range(1200)]  # more than one IN (...) chunk
    await store.bayes_learn(UserId(1), "d", tokens, True)
    c = await store.bayes_counts(UserId(1), tokens)
    assert len(c.tokens) == 1200
