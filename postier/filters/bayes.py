"""Bayesian Junk classifier: per-user models, a global one, learning from Junk moves.

Why hand-written: the Python Bayes filters (SpamBayes, reverend) are
unmaintained or Python 2; the method is short. This is Gary Robinson's token
probability with Fisher's chi-square combining, as SpamBayes and bogofilter use.

Rules:
- Tokens: lower-cased words of 3 to 24 characters of the Subject and the text
  parts (HTML tags dropped), each counted once per message; Subject words and
  the From: domain also as prefixed tokens (``subject:free``, ``from:example.test``);
  URL hosts as ``url:host``. At most `MAX_TOKENS` per message.
- Learning (`train`) counts a message once per model, keyed by the SHA-256 of
  its bytes: learning it again as the same class changes nothing, as the other
  class moves it over (a message moved into Junk and back ends up ham). Every
  lesson updates the user's model and the global model.
- Classification uses the user's model once it has learned `min_messages`
  spam and `min_messages` ham, else the global model under the same rule, else
  nothing is said. Probability bands score BAYES_99/90/70/10/00.
- Moves teach: into Junk (special-use \\Junk, or named Junk/Spam) is spam; out of
  Junk into any mailbox but Trash is ham. The webmail calls `on_move` and waits
  for it. IMAP MOVE hands the moved messages to the process's `MoveLearner`,
  which learns them after the command has answered, one message at a time, at
  most `MAX_PENDING_LESSONS` waiting (more are dropped with a warning): a MOVE of
  thousands of messages costs the client nothing, and a lesson that fails is
  logged, never the MOVE's failure.
- Tokenizing is CPU-bound: it runs off the event loop (`pipeline.offload`,
  with the `filters.scan_timeout` budget at intake), and every pattern is
  linear (``<[^<>]*>`` for tags: ``<[^>]+>`` rescanned a run of "<" from each).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postier.filters.pipeline import Context, Phase, Verdict
from postier.filters.spam import Weights
from postier.mail.headers import HeaderView
from postier.mime.encoding import decode_words
from postier.mime.message import ParsedMessage
from postier.offload import DEFAULT_SCAN_TIMEOUT, Budget, ScanTimeout, offload
from postier.store.api import Store
from postier.store.models import (
    GLOBAL_BAYES_MODEL,
    BayesCounts,
    Mailbox,
    MailboxId,
    Message,
    Uid,
    UserId,
)

log = logging.getLogger("postier.filters")

MAX_TOKENS = 3000
_WORD = re.compile(r"[a-z0-9à-ÿ$€£'-]{3,24}")
_TAG = re.compile(r"<[^<>]*>")
_HOST = re.compile(r"https?://([a-z0-9.-]+)", re.IGNORECASE)

# Robinson's constants (SpamBayes defaults): strength of the prior and its value
_S = 0.45
_X = 0.5
_MIN_DEVIATION = 0.1  # tokens closer than this to 0.5 are ignored
_MAX_DISCRIMINATORS = 150


def tokenize(
    message: bytes,
    texts: list[tuple[str, str]] | None = None,
    budget: Budget | None = None,
    header: HeaderView | None = None,
) -> list[str]:
    """Tokens of the Subject:, the From: domain and the text (`texts` and
    `header` when the caller has the message's parse, see filters/text.py).
    CPU-bound: `budget` is checked between text parts."""
    check = budget.check if budget is not None else None
    if header is None or texts is None:  # bytes read back: parse them once here
        parsed = ParsedMessage.of(message)
        header = header or parsed.header
        texts = texts if texts is not None else parsed.texts(check)
    view = header
    tokens: set[str] = set()
    subject = " ".join(decode_words(v) for v in view.fields("Subject")).lower()
    for w in _WORD.findall(subject):
        tokens.add("subject:" + w)
    frm = " ".join(view.fields("From")).lower()
    m = re.search(r"@([a-z0-9.-]+)", frm)
    if m:
        tokens.add("from:" + m.group(1))
    for _, text in texts:
        if check is not None:
            check()
        for host in _HOST.findall(text):
            tokens.add("url:" + host.lower())
        text = _TAG.sub(" ", text).lower()
        tokens.update(_WORD.findall(text))
        if len(tokens) > MAX_TOKENS:
            break
    return sorted(tokens)[:MAX_TOKENS]


def digest(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()


def _chi2q(x2: float, v: int) -> float:
    """P(chisq >= x2) with v (even) degrees of freedom (SpamBayes' chi2Q)."""
    m = x2 / 2.0
    term = math.exp(-m)
    total = term
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def spam_probability(counts: BayesCounts) -> float | None:
    """Robinson-Fisher combined probability that the message is spam, in [0, 1]
    (None when no token carries information)."""
    ns, nh = max(counts.spam_messages, 1), max(counts.ham_messages, 1)
    probs = []
    for s, h in counts.tokens.values():
        sr, hr = s / ns, h / nh
        if sr + hr == 0:
            continue
        p = sr / (sr + hr)
        n = s + h
        f = (_S * _X + n * p) / (_S + n)  # Robinson's f(w)
        if abs(f - 0.5) >= _MIN_DEVIATION:
            probs.append(f)
    if not probs:
        return None
    probs.sort(key=lambda f: -abs(f - 0.5))
    probs = probs[:_MAX_DISCRIMINATORS]
    n = len(probs)
    # Fisher: H from ln(1-f) ... clamped away from 0 and 1
    ln_spam = sum(math.log(max(1 - f, 1e-200)) for f in probs)
    ln_ham = sum(math.log(max(f, 1e-200)) for f in probs)
    s_ = 1.0 - _chi2q(-2.0 * ln_spam, 2 * n)
    h_ = 1.0 - _chi2q(-2.0 * ln_ham, 2 * n)
    return (s_ - h_ + 1.0) / 2.0


@dataclass(frozen=True)
class Classification:
    probability: float
    model: str  # "user" or "global"
    tokens: int


_TRAINED_TTL = 10.0
_TRAIN_TIMEOUT = 60.0  # learning is not in a client's way: a generous budget
_trained: dict[UserId, tuple[float, bool]] = {}


async def _is_trained(store: Store, model: UserId, min_messages: int) -> bool:
    """Whether a model has learned enough to classify, remembered for a few
    seconds: most mail meets untrained models, and tokenizing for them is waste."""
    now = time.monotonic()
    hit = _trained.get(model)
    if hit is not None and now - hit[0] < _TRAINED_TTL:
        return hit[1]
    counts = await store.bayes_counts(model, [])
    ok = counts.spam_messages >= min_messages and counts.ham_messages >= min_messages
    if len(_trained) > 10_000:
        _trained.clear()
    _trained[model] = (now, ok)
    return ok


async def classify(
    store: Store,
    user_id: UserId | None,
    message: bytes,
    *,
    min_messages: int = 10,
    texts: Callable[[Budget], list[tuple[str, str]]] | None = None,
    header: HeaderView | None = None,
    scan_timeout: float = DEFAULT_SCAN_TIMEOUT,
) -> Classification | None:
    """`texts` and `header`: the decoded text and the header view when the
    caller has the message's parse (`Context.texts`, `Context.header`)."""
    models: list[tuple[str, UserId]] = []
    if user_id is not None and await _is_trained(store, user_id, min_messages):
        models.append(("user", user_id))
    if await _is_trained(store, GLOBAL_BAYES_MODEL, min_messages):
        models.append(("global", GLOBAL_BAYES_MODEL))
    if not models:
        return None
    tokens = await offload(
        lambda budget: tokenize(message, texts(budget) if texts else None, budget, header),
        scan_timeout,
    )
    for label, model in models:
        counts = await store.bayes_counts(model, tokens)
        if counts.spam_messages < min_messages or counts.ham_messages < min_messages:
            continue
        p = spam_probability(counts)
        if p is None:
            return None
        return Classification(p, label, len(counts.tokens))
    return None


async def train(store: Store, user_id: UserId, message_bytes: bytes, is_spam: bool) -> bool:
    """Learn one message for `user_id` (and the global model); False if this
    message was already learned as this class for the user."""
    try:
        tokens = await offload(lambda budget: tokenize(message_bytes, None, budget), _TRAIN_TIMEOUT)
    except ScanTimeout:
        log.warning("bayes: a %d-octet message took too long to learn", len(message_bytes))
        return False
    key = digest(message_bytes)
    changed = await store.bayes_learn(user_id, key, tokens, is_spam)
    await store.bayes_learn(GLOBAL_BAYES_MODEL, key, tokens, is_spam)
    _trained.pop(user_id, None)
    _trained.pop(GLOBAL_BAYES_MODEL, None)
    return changed


def _is_junk(mailbox: Mailbox) -> bool:
    return mailbox.special_use == "\\Junk" or mailbox.name.lower() in ("junk", "spam")


def _is_trash(mailbox: Mailbox) -> bool:
    return mailbox.special_use == "\\Trash" or mailbox.name.lower() == "trash"


def lesson(source: Mailbox, target: Mailbox) -> bool | None:
    """What a move from `source` to `target` teaches: True spam, False ham, None
    nothing (Junk to Trash is deleting spam, not calling it ham)."""
    if _is_junk(target) and not _is_junk(source):
        return True
    if _is_junk(source) and not _is_junk(target) and not _is_trash(target):
        return False
    return None


async def on_move(
    store: Store, user_id: UserId, source: Mailbox, target: Mailbox, messages: Sequence[Message]
) -> int:
    """The webmail's hook: into Junk teaches spam; out of Junk (anywhere but
    Trash) teaches ham. Returns how many were learned."""
    is_spam = lesson(source, target)
    if is_spam is None:
        return 0
    learned = 0
    for m in messages:
        if await train(store, user_id, await store.read_blob(m.blob_id), is_spam):
            learned += 1
    return learned


#: messages of IMAP moves waiting to be learned, for the whole process
MAX_PENDING_LESSONS = 10_000


class MoveLearner:
    """Learns IMAP moves into and out of Junk in the background (module rules).

    Lessons are queued by the moved messages' new place (mailbox and UID) and read
    from there when their turn comes: a message moved on again or expunged before
    then is skipped."""

    def __init__(self, store: Store, max_pending: int = MAX_PENDING_LESSONS) -> None:
        self.store = store
        self.max_pending = max_pending
        self._queue: deque[tuple[UserId, MailboxId, Uid, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.learned = 0  # lessons that changed the user's model, for tests and logs

    def moved(self, user_id: UserId, source: Mailbox, target: Mailbox, uids: Sequence[Uid]) -> None:
        """`uids` (in `target`) were moved there from `source`; returns at once."""
        is_spam = lesson(source, target)
        if is_spam is None or not uids:
            return
        room = self.max_pending - len(self._queue)
        if room < len(uids):
            log.warning(
                "bayes: %d moved messages not learned (%d already waiting)",
                len(uids) - max(room, 0),
                len(self._queue),
            )
        self._queue.extend((user_id, target.id, uid, is_spam) for uid in uids[: max(room, 0)])
        if self._queue and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bayes-moves")

    async def _run(self) -> None:
        while self._queue:
            user_id, mailbox_id, uid, is_spam = self._queue.popleft()
            try:
                m = await self.store.get_message(mailbox_id, uid)
                if m is None:
                    continue
                if await train(self.store, user_id, await self.store.read_blob(m.blob_id), is_spam):
                    self.learned += 1
            except Exception:
                log.exception("bayes: learning a moved message failed (uid %s)", uid)

    async def drained(self) -> None:
        """Wait until every queued lesson is learned (tests; the server's stop)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Drop what is still queued (lessons, not mail) and stop."""
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


BANDS = ((0.99, "BAYES_99"), (0.90, "BAYES_90"), (0.70, "BAYES_70"))
HAM_BANDS = ((0.01, "BAYES_00"), (0.10, "BAYES_10"))


def band(p: float) -> str | None:
    for threshold, rule in BANDS:
        if p >= threshold:
            return rule
    for threshold, rule in HAM_BANDS:
        if p <= threshold:
            return rule
    return None


class BayesStage:
    name = "bayes"
    phases = frozenset({Phase.DATA})

    def __init__(self, store: Store, weights: Weights, *, min_messages: int = 10) -> None:
        self.store = store
        self.weights = weights
        self.min_messages = min_messages

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.message is None:
            return []
        # one message, one score: the only local user's model, else the global one
        user = ctx.local_users[0] if len(set(ctx.local_users)) == 1 else None
        c = await classify(
            self.store,
            user,
            ctx.message,
            min_messages=self.min_messages,
            texts=ctx.texts,
            header=ctx.header,
            scan_timeout=ctx.scan_timeout,
        )
        if c is None:
            return []
        detail = f"spam probability {c.probability:.3f} ({c.model} model)"
        rule = band(c.probability)
        if rule is None:
            return [Verdict.accept(self.name, detail)]
        return [Verdict.scored(self.name, rule, self.weights[rule], detail)]
