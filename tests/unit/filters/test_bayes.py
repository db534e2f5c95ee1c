"""The Bayes classifier trained on a generated corpus, measured on a held-out set."""

from __future__ import annotations

import random

from postier.filters import bayes
from postier.store.models import MailboxId, UserId
from tests.support.messages import new_message

SPAM_WORDS = [
    "viagra",
    "cheap",
    "pills",
    "winner",
    "prize",
    "lottery",
    "claim",
    "urgent",
    "bitcoin",
    "investment",
    "guaranteed",
    "offer",
    "discount",
    "casino",
    "loan",
    "credit",
    "bonus",
    "unsubscribe",
    "free",
    "click",
    "limited",
    "exclusive",
    "deal",
    "million",
]
HAM_WORDS = [
    "meeting",
    "agenda",
    "project",
    "report",
    "review",
    "schedule",
    "lunch",
    "tomorrow",
    "invoice",
    "attached",
    "deadline",
    "team",
    "budget",
    "notes",
    "draft",
    "minutes",
    "quarterly",
    "release",
    "planning",
    "thanks",
    "regards",
    "question",
]
COMMON = [
    "the",
    "and",
    "you",
    "your",
    "this",
    "that",
    "with",
    "from",
    "have",
    "will",
    "please",
    "today",
    "about",
    "more",
    "information",
    "time",
]


def message(rng: random.Random, words: list[str], n: int) -> bytes:
    body = " ".join(rng.choice(words if rng.random() < 0.4 else COMMON) for _ in range(60))
    subject = " ".join(rng.choice(words) for _ in range(3))
    return (f"From: s{n}@sender{n % 7}.test\r\nSubject: {subject}\r\n\r\n{body}\r\n").encode()


async def test_bayes_accuracy_on_held_out_set(store):
    rng = random.Random(7)
    spam = [message(rng, SPAM_WORDS, i) for i in range(60)]
    ham = [message(rng, HAM_WORDS, i) for i in range(60)]
    user = UserId(1)
    for m in spam[:40]:
        await bayes.train(store, user, m, True)
    for m in ham[:40]:
        await bayes.train(store, user, m, False)
    held = [(m, True) for m in spam[40:]] + [(m, False) for m in ham[40:]]
    right = 0
    for m, is_spam in held:
        c = await bayes.classify(store, user, m, min_messages=10)
        assert c is not None
        right += (c.probability > 0.5) == is_spam
    accuracy = right / len(held)
    print(f"Bayes held-out accuracy: {accuracy:.1%} ({right}/{len(held)})")
    assert accuracy >= 0.9
    # the global model serves a user without training
    c = await bayes.classify(store, UserId(2), spam[50], min_messages=10)
    assert c is not None and c.model == "global" and c.probability > 0.9


async def test_untrained_model_says_nothing(store):
    assert await bayes.classify(store, UserId(1), b"Subject: x\r\n\r\nhello\r\n") is None


async def test_on_move_learns_into_and_out_of_junk(store):
    from postier.store.models import Mailbox

    await store.add_domain("example.test")
    user = await store.add_user("u@example.test", "x")
    inbox = await store.get_mailbox(user.id, "INBOX")
    junk = await store.get_mailbox(user.id, "Junk")
    trash = await store.get_mailbox(user.id, "Trash")
    assert isinstance(junk, Mailbox) and junk.special_use == "\\Junk"
    msg = await store.append(
        MailboxId(inbox.id), new_message(b"Subject: win\r\n\r\nwinner prize\r\n")
    )
    assert await bayes.on_move(store, user.id, inbox, junk, [msg]) == 1
    assert await bayes.on_move(store, user.id, inbox, junk, [msg]) == 0  # already learned
    assert await bayes.on_move(store, user.id, junk, trash, [msg]) == 0  # not a lesson
    assert await bayes.on_move(store, user.id, junk, inbox, [msg]) == 1  # now ham
    c = await store.bayes_counts(user.id, ["winner"])
    assert (c.spam_messages, c.ham_messages, c.tokens) == (0, 1, {"winner": (0, 1)})


async def test_move_learner_is_bounded_and_skips_what_moved_on(store, caplog):
    """IMAP MOVE's lessons wait in a bounded queue: beyond `max_pending` they are
    dropped with a warning; a message gone from where it was moved is skipped."""
    await store.add_domain("example.test")
    user = await store.add_user("u@example.test", "x")
    inbox = await store.get_mailbox(user.id, "INBOX")
    junk = await store.get_mailbox(user.id, "Junk")
    msgs = [
        await store.append(junk.id, new_message(b"Subject: win %d\r\n\r\nwinner\r\n" % i))
        for i in range(4)
    ]
    await store.move(junk.id, [msgs[2].uid], inbox.id)  # moved on before its turn
    learner = bayes.MoveLearner(store, max_pending=3)
    learner.moved(user.id, inbox, junk, [m.uid for m in msgs])
    assert "1 moved messages not learned (0 already waiting)" in caplog.text
    learner.moved(user.id, inbox, inbox, [msgs[3].uid])  # not a lesson: nothing queued
    await learner.drained()
    assert learner.learned == 2
    c = await store.bayes_counts(user.id, ["winner"])
    assert (c.spam_messages, c.ham_messages) == (2, 0)
    learner.moved(user.id, junk, inbox, [])  # nothing moved: no task
    await learner.close()
