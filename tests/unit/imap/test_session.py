"""`postier.imap.session`: the selected-mailbox view (sequence numbers ↔ UIDs,
pending expunges and flag changes, \\Recent) and the command dispatcher's state and
policy rules, driven without sockets."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime

import pytest

from postier.config.schema import Settings
from postier.imap.commands import dispatch
from postier.imap.commands.context import Context
from postier.imap.parse import parse_command
from postier.imap.receiver import RawCommand, tag_of
from postier.imap.sequence import SequenceSet
from postier.imap.session import BadSequence, MailboxView, RecentClaims, Session, State
from postier.store.models import BlobId, Mailbox, MailboxId, Message, ModSeq, Uid, UserId

MBOX = Mailbox(
    id=MailboxId(7),
    user_id=UserId(1),
    name="INBOX",
    special_use=None,
    subscribed=True,
    uidvalidity=42,
    uidnext=10,
    highestmodseq=20,
)


def msg(uid: int, modseq: int, *flags: str) -> Message:
    return Message(
        MailboxId(7),
        Uid(uid),
        ModSeq(modseq),
        frozenset(flags),
        datetime(2026, 1, 1, tzinfo=UTC),
        100,
        BlobId("x"),
    )


def view(*uids: int, readonly: bool = False) -> MailboxView:
    return MailboxView(MBOX, [msg(u, u) for u in uids], readonly=readonly)


def test_resolve_sequence_and_uid_sets() -> None:
    v = view(2, 4, 9)
    assert v.resolve(SequenceSet.parse("1:*"), uid=False) == [(1, 2), (2, 4), (3, 9)]
    assert v.resolve(SequenceSet.parse("3,1"), uid=False) == [(1, 2), (3, 9)]
    assert v.resolve(SequenceSet.parse("3:5"), uid=True) == [(2, 4)]
    assert v.resolve(SequenceSet.parse("20:*"), uid=True) == [(3, 9)]  # RFC 9051 §6.4.8
    assert v.resolve(SequenceSet.parse("5:8"), uid=True) == []
    assert v.resolve(SequenceSet.parse("$"), uid=True, saved=[9, 3]) == [(3, 9)]
    assert v.resolve(SequenceSet.parse("$"), uid=False) == []
    with pytest.raises(BadSequence):
        v.resolve(SequenceSet.parse("4"), uid=False)
    with pytest.raises(BadSequence):
        view().resolve(SequenceSet.parse("1"), uid=False)
    assert view().resolve(SequenceSet.parse("1:*"), uid=True) == []


def test_expunges_wait_until_allowed_and_go_highest_first() -> None:
    v = view(1, 2, 3, 4)
    v.apply([], [2, 4, 99], baseline=30)
    up = v.take_updates(allow_expunge=False)
    assert not up and v.exists == 4 and v.seq_of(3) == 3  # numbering unchanged
    up = v.take_updates(allow_expunge=True)
    assert up.expunged == [(4, 4), (2, 2)]
    assert list(v.uids) == [1, 3] and v.seq_of(3) == 2 and v.baseline == 30
    assert not v.take_updates(allow_expunge=True)


def test_many_expunges_are_taken_out_of_the_columns_in_one_pass() -> None:
    """Each ``del`` moves every message after it: an EXPUNGE of every other
    message of 40,000 held the loop 62 ms (of 160,000: 0.8 s, quadratic). Past a
    few, the columns are rebuilt once; the numbering is the same."""

    class CountingList(list):  # type: ignore[type-arg]
        deletes = 0

        def __delitem__(self, i: object) -> None:
            CountingList.deletes += 1
            super().__delitem__(i)  # type: ignore[arg-type]

    v = view(*range(1, 2001))
    v._cols.flags = CountingList(v._cols.flags)
    v.apply([], list(range(1, 2001, 2)), baseline=30)
    up = v.take_updates(allow_expunge=True)
    assert up.expunged == [(u, u) for u in range(1999, 0, -2)]
    assert list(v.uids) == list(range(2, 2001, 2))
    assert len(v._cols.modseqs) == len(v._cols.flags) == 1000
    assert v.seq_of(2000) == 1000 and v.modseq(2000) == 2000
    assert CountingList.deletes == 0
    v.apply([], [2, 4], baseline=31)  # a few: one by one
    v.take_updates(allow_expunge=True)
    assert CountingList.deletes == 2 and v.seq_of(6) == 1


async def test_new_messages_flag_changes_and_duplicates() -> None:
    v = view(1, 2)
    claims = RecentClaims()
    # our own STORE is already announced: the echo from the feed changes nothing
    v.record_flags(msg(1, 21, "\\Seen"))
    new = v.apply(
        [msg(1, 21, "\\Seen"), msg(2, 22, "\\Flagged"), msg(10, 23), msg(5, 24)],
        [],
        baseline=24,
    )
    assert new == [10]
    await v.claim_recent(new, claims)
    up = v.take_updates(allow_expunge=False)
    assert up.exists == 3 and up.recent == 1  # UID 5 < UIDNEXT at SELECT: came and went
    assert up.flags == [(2, 2)]
    assert list(v.uids) == [1, 2, 10] and v.recent == {10}
    # the same changes again (the feed may repeat): nothing new
    assert v.apply([msg(2, 22, "\\Flagged"), msg(10, 23)], [], baseline=24) == []
    assert not v.take_updates(allow_expunge=True)
    # another session of this process does not get UID 10 as \Recent
    other = view(1, 2)
    await other.claim_recent(other.apply([msg(10, 23)], [], baseline=24), claims)
    assert other.recent == set()


def test_flag_change_of_a_pending_expunge_is_not_announced() -> None:
    v = view(1, 2)
    v.apply([msg(2, 25, "\\Seen")], [2], baseline=25)
    up = v.take_updates(allow_expunge=True)
    assert up.expunged == [(2, 2)] and up.flags == []


async def test_recent_claims_once_per_process() -> None:
    claims = RecentClaims()
    assert await claims.claim(MailboxId(1), [1, 2, 3]) == {1, 2, 3}
    assert await claims.claim(MailboxId(1), [1, 2, 3, 4]) == {4}
    assert await claims.claim(MailboxId(2), [1]) == {1}
    assert await claims.last(MailboxId(1)) == 4


def test_flags_of_adds_recent_only_for_rev1() -> None:
    v = MailboxView(MBOX, [msg(1, 1, "\\Seen")], readonly=False, recent={1})
    assert v.flags_of(1, with_recent=True) == {"\\Seen", "\\Recent"}
    assert v.flags_of(1, with_recent=False) == {"\\Seen"}
    assert v.keywords() == set()
    v.record_flags(msg(1, 2, "$Work", "\\Seen"))
    assert v.keywords() == {"$Work"}


class FakeContext(Context):
    """A Context with no store: for state and policy rules."""

    def __init__(self, *, tls: bool = False, plaintext_ok: bool = False) -> None:
        super().__init__(
            store=None,  # type: ignore[arg-type]
            settings=Settings(),
            auth=None,  # type: ignore[arg-type]
            session=Session(sid="t1", tls=tls),
            recent=RecentClaims(),
            peer_ip="192.0.2.1",
            plaintext_ok=plaintext_ok,
        )


def run(ctx: FakeContext, line: bytes) -> bytes:
    raw = RawCommand(tag_of(line), (line,))
    asyncio.run(dispatch(ctx, parse_command(raw, utf8=ctx.session.utf8)))
    return ctx.take_output()


def test_plaintext_login_refused_without_tls_off_loopback() -> None:
    ctx = FakeContext()
    assert run(ctx, b"a CAPABILITY") == (
        b"* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE STARTTLS LOGINDISABLED\r\n"
        b"a OK CAPABILITY completed\r\n"
    )
    assert run(ctx, b"b LOGIN alice secret") == (
        b"b NO [PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS first\r\n"
    )
    assert run(ctx, b"c AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==") == (
        b"c NO [PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS first\r\n"
    )
    assert ctx.session.state is State.NOT_AUTHENTICATED


@pytest.mark.parametrize(
    ("tls", "plaintext_ok", "caps"),
    [
        (True, False, b"IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE AUTH=PLAIN"),
        (False, True, b"IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE STARTTLS AUTH=PLAIN"),
    ],
)
def test_capabilities_follow_tls_and_policy(tls: bool, plaintext_ok: bool, caps: bytes) -> None:
    ctx = FakeContext(tls=tls, plaintext_ok=plaintext_ok)
    assert (
        run(ctx, b"a CAPABILITY") == b"* CAPABILITY " + caps + b"\r\na OK CAPABILITY completed\r\n"
    )


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"a SELECT INBOX", b"a BAD Log in first\r\n"),
        (b"a FETCH 1 FLAGS", b"a BAD Log in first\r\n"),
        (b"a ENABLE IMAP4rev2", b"a BAD Log in first\r\n"),
        (b"a IDLE", b"a BAD Log in first\r\n"),
        (b"a NOOP", b"a OK NOOP completed\r\n"),
        (b"a LOGOUT", b"* BYE Logging out\r\na OK LOGOUT completed\r\n"),
    ],
)
def test_not_authenticated_state_table(line: bytes, reply: bytes) -> None:
    assert run(FakeContext(), line) == reply


def test_authenticated_state_rejects_selected_commands() -> None:
    ctx = FakeContext()
    ctx.session.state = State.AUTHENTICATED
    for line in (
        b"a FETCH 1 FLAGS",
        b"a STORE 1 FLAGS x",
        b"a EXPUNGE",
        b"a CLOSE",
        b"a UID SEARCH ALL",
        b"a COPY 1 x",
        b"a CHECK",
        b"a UNSELECT",
    ):
        assert run(ctx, line) == b"a BAD No mailbox selected\r\n", line
    assert run(ctx, b"b LOGIN a b") == b"b BAD Already logged in\r\n"
    assert run(ctx, b"c STARTTLS") == b"c BAD Already logged in\r\n"


def test_bad_commands_in_a_row_end_the_session() -> None:
    ctx = FakeContext()
    for _ in range(Settings().imap.max_bad_commands - 1):
        run(ctx, b"a FETCH 1 FLAGS")
    session = ctx.session
    assert session.state is State.NOT_AUTHENTICATED
    assert (
        run(ctx, b"a FETCH 1 FLAGS") == b"a BAD Log in first\r\n* BYE Too many invalid commands\r\n"
    )
    assert ctx.session.state is State.LOGOUT


def test_enable_rules() -> None:
    ctx = FakeContext()
    ctx.session.state = State.AUTHENTICATED
    assert (
        run(ctx, b"a ENABLE UTF8=ACCEPT") == b"* ENABLED UTF8=ACCEPT\r\na OK ENABLE completed\r\n"
    )
    assert ctx.session.utf8 and not ctx.session.condstore
    assert (
        run(ctx, b"b ENABLE QRESYNC UTF8=ACCEPT")
        == b"* ENABLED QRESYNC\r\nb OK ENABLE completed\r\n"
    )
    assert ctx.session.condstore and ctx.session.qresync
    assert run(ctx, b"c ENABLE X") == b"* ENABLED\r\nc OK ENABLE completed\r\n"


def test_views_of_one_mailbox_state_share_columns_until_one_changes() -> None:
    from dataclasses import replace

    from postier.imap.session import Snapshots

    shelf = Snapshots()
    state = replace(MBOX, id=MailboxId(99), highestmodseq=500, uidnext=4)
    a = MailboxView(state, [msg(1, 1), msg(2, 2, "\\Seen"), msg(3, 3)], readonly=False)
    assert shelf.get(state) is None
    shelf.keep(state, a)
    shared = shelf.get(state)
    assert shared is not None
    b = MailboxView(state, readonly=False, columns=shared)
    assert b.uids is a.uids  # one copy for both sessions
    assert b.first_unseen() == 1
    b.apply([msg(2, 501), msg(4, 502, "\\Flagged")], [3], 502)
    b.take_updates(allow_expunge=True)
    assert list(b.uids) == [1, 2, 4]
    assert list(a.uids) == [1, 2, 3]  # a's picture is untouched
    assert a.flags(2) == frozenset({"\\Seen"})
    assert b.flags(2) == frozenset()
    assert shelf.get(state) is shared  # the shared state is what it was
    a.record_flags(msg(1, 503, "\\Seen"))  # the lender copies too before a change
    assert shelf.get(state) is shared and shared.flags[0] == frozenset()


def test_snapshots_keep_the_latest_state_after_its_views_are_gone() -> None:
    """A client logging in again to an unchanged mailbox skips the listing; a later
    state, or a mailbox pushed out by others, is listed again."""
    from dataclasses import replace

    from postier.imap.session import Snapshots

    shelf = Snapshots()
    shelf.KEEP_MAILBOXES = 2
    states = [replace(MBOX, id=MailboxId(i), highestmodseq=50, uidnext=3) for i in (1, 2, 3)]
    views = {
        i: MailboxView(st, [msg(1, 1), msg(2, 2)], readonly=False) for i, st in enumerate(states)
    }
    shelf.keep(states[0], views[0])
    columns = views.pop(0).share()
    gc.collect()
    assert shelf.get(states[0]) is columns
    assert shelf.get(replace(states[0], highestmodseq=51)) is None  # changed since
    shelf.keep(states[1], views[1])
    assert shelf.get(states[0]) is columns  # now the most recently selected
    shelf.keep(states[2], views[2])
    views.clear()
    gc.collect()
    assert shelf.get(states[1]) is None  # the least recently selected went
    assert shelf.get(states[0]) is columns
    assert shelf.get(states[2]) is not None
    big = replace(states[0], id=MailboxId(4))
    shelf.KEEP_MESSAGES = 1
    view = MailboxView(big, [msg(1, 1), msg(2, 2)], readonly=False)
    shelf.keep(big, view)
    del view
    gc.collect()
    assert shelf.get(big) is None  # too large to keep without a view


def test_snapshots_are_per_store() -> None:
    """The same (mailbox id, HIGHESTMODSEQ, UIDNEXT) in two stores is two states."""
    from postier.imap.session import snapshots

    class Store:
        pass

    one, other = Store(), Store()
    assert snapshots(one) is snapshots(one)
    assert snapshots(one) is not snapshots(other)


def test_output_pieces_keep_order_and_leave_big_ones_uncopied() -> None:
    ctx = FakeContext()
    big = b"b" * 100_000
    ctx.send(b"* 1 EXISTS\r\n")
    ctx.send_parts([b"* 1 FETCH (BODY[] {100000}\r\n", big, b")\r\n"])
    ctx.send(b"a OK done\r\n")
    pieces = ctx.take_output_parts()
    assert pieces == [b"* 1 EXISTS\r\n* 1 FETCH (BODY[] {100000}\r\n", big, b")\r\na OK done\r\n"]
    assert pieces[1] is big
    assert ctx.take_output_parts() == [] and ctx.take_output() == b""
    ctx.send_parts([b"x", big])
    assert ctx.take_output() == b"x" + big


@pytest.mark.parametrize("with_recent", [True, False])
@pytest.mark.parametrize(
    "names",
    [
        ("FLAGS",),
        ("UID",),
        ("MODSEQ",),
        ("FLAGS", "UID"),
        ("UID", "FLAGS", "MODSEQ"),
        ("MODSEQ", "FLAGS", "FLAGS", "UID", "UID"),
    ],
)
def test_fetch_of_view_items_writes_what_the_generic_responses_do(
    names: tuple[str, ...], with_recent: bool
) -> None:
    from postier.imap import responses as r
    from postier.imap.commands import fetch as fetch_command
    from postier.imap.parse import SIMPLE_ATTS

    v = MailboxView(
        MBOX,
        [
            msg(2, 5),
            msg(4, 7, "\\Seen", "$Junk"),
            msg(9, 12, "\\Flagged", "\\Deleted", "zed", "Alpha"),
            msg(11, 30, "\\Recent"),
        ],
        readonly=False,
        recent={4, 11},
    )
    v.remove([9])  # expunged elsewhere, not yet announced: still addressable
    items = tuple(SIMPLE_ATTS[n] for n in names)
    picked = v.resolve(SequenceSet.parse("1:*"), uid=True)

    class Out:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send(self, data: bytes) -> None:
            self.sent.append(data)

        async def maybe_drain(self, cost: int = 1) -> None:
            pass

    out = Out()
    asyncio.run(fetch_command._fetch_view(out, v, picked, items, with_recent=with_recent))  # type: ignore[arg-type]
    expected = [
        r.fetch(seq, fetch_command._view_items(v, items, uid, with_recent)) for seq, uid in picked
    ]
    assert out.sent == expected
