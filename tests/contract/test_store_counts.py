"""Contract: a mailbox's stored counts (messages, unseen, octets) stay exact through
every kind of change, on every backend.

`Mailbox.messages`, `.unseen` and `.size` are kept with the mailbox (not counted on
each read: LIST/STATUS and every webmail page read them), so each write that adds,
removes, moves or reflags a message must keep them. The property: after any
sequence of deliveries (several targets, a missing folder falling back to INBOX),
appends, flag changes in every mode, expunges, copies, moves, renames (INBOX's
moves its messages) and folder deletions, every mailbox's counts equal a recount of
its messages, whichever way it is read, and the quota usage is their sum.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.store.api import Store
from postier.store.models import DeliveryTarget, Mailbox, Uid, UserId
from tests.support.messages import new_message

FLAGS = ("\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$Junk")
_users = itertools.count()

_box = st.integers(0, 7)
_pick = st.lists(st.integers(0, 63), max_size=6)
_flags = st.frozensets(st.sampled_from(FLAGS), max_size=3)
_op = st.one_of(
    st.tuples(
        st.just("deliver"), st.lists(_box, min_size=1, max_size=3), _flags, st.integers(0, 3)
    ),
    st.tuples(st.just("append"), _box, _flags, st.integers(0, 3)),
    st.tuples(st.just("flags"), _box, _pick, _flags, st.sampled_from(["add", "remove", "replace"])),
    st.tuples(st.just("expunge"), _box, _pick, st.booleans()),
    st.tuples(st.just("copy"), _box, _pick, _box),
    st.tuples(st.just("move"), _box, _pick, _box),
    st.tuples(st.just("create"), st.sampled_from(["Work", "Work/Old", "Lists", "Saved"])),
    st.tuples(st.just("rename"), _box, st.sampled_from(["Moved", "Elsewhere/Sub", "Renamed"])),
    st.tuples(st.just("delete"), _box),
)


async def _boxes(store: Store, user: UserId) -> list[Mailbox]:
    return await store.list_mailboxes(user)


async def _uids(store: Store, box: Mailbox, pick: list[int]) -> list[Uid]:
    uids = [m.uid for m in await store.list_messages(box.id, summaries=False)]
    return sorted({uids[i % len(uids)] for i in pick}) if uids else []


async def _apply(store: Store, user: UserId, op: tuple[Any, ...], serial: int) -> None:
    boxes = await _boxes(store, user)

    def box(i: int) -> Mailbox:
        return boxes[i % len(boxes)]

    kind = op[0]
    if kind == "deliver":
        _, targets, flags, size = op
        # one name that does not exist: the copy falls back to INBOX
        names = [box(i).name if i != 7 else "Nowhere" for i in targets]
        body = b"x" * (size * 100 + serial)
        await store.deliver(
            new_message(b"Subject: d\r\n\r\n" + body),
            [DeliveryTarget(user, name, flags) for name in names],
        )
    elif kind == "append":
        _, i, flags, size = op
        body = b"y" * (size * 1000 + serial)
        await store.append(box(i).id, new_message(b"Subject: a\r\n\r\n" + body), flags)
    elif kind == "flags":
        _, i, pick, flags, mode = op
        uids = await _uids(store, box(i), pick)
        if uids:
            await store.store_flags(box(i).id, uids, flags, mode)
    elif kind == "expunge":
        _, i, pick, flagged_only = op
        uids = await _uids(store, box(i), pick)
        if flagged_only:
            await store.expunge(box(i).id, uids or None)
        elif uids:
            await store.expunge(box(i).id, uids, flagged_only=False)
    elif kind in ("copy", "move"):
        _, i, pick, j = op
        uids = await _uids(store, box(i), pick)
        if uids and box(i).id != box(j).id:
            await (store.copy if kind == "copy" else store.move)(box(i).id, uids, box(j).id)
    elif kind == "create":
        if op[1] not in {b.name for b in boxes}:
            await store.create_mailbox(user, op[1])
    elif kind == "rename":
        _, i, new = op
        names = {b.name for b in boxes}
        old = box(i).name
        if new not in names and not new.startswith(old + "/"):
            await store.rename_mailbox(user, old, new)
    elif kind == "delete":
        name = box(op[1]).name
        if name != "INBOX" and not any(b.name.startswith(name + "/") for b in boxes):
            await store.delete_mailbox(user, name)


async def _check(store: Store, user: UserId, after: object) -> None:
    total = 0
    for listed in await _boxes(store, user):
        msgs = await store.list_messages(listed.id, summaries=False)
        want = (
            len(msgs),
            sum("\\Seen" not in m.flags for m in msgs),
            sum(m.size for m in msgs),
        )
        by_id = await store.get_mailbox_by_id(listed.id)
        by_name = await store.get_mailbox(user, listed.name)
        for got in (listed, by_id, by_name):
            assert got is not None
            assert (got.messages, got.unseen, got.size) == want, (listed.name, after)
        total += want[2]
    assert (await store.quota_usage(user))[0] == total, after


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(_op, min_size=1, max_size=14))
async def test_counts_match_a_recount_through_every_change(store: Store, ops: list[Any]) -> None:
    if await store.get_domain("example.test") is None:
        await store.add_domain("example.test")
    user = (await store.add_user(f"u{next(_users)}@example.test", "h")).id
    for serial, op in enumerate(ops):
        await _apply(store, user, op, serial)
        await _check(store, user, op)


async def test_counts_of_deleted_users_and_mailboxes_leave_others_alone(store: Store) -> None:
    """A mailbox or a user deleted with its messages (the cascades) changes no other
    mailbox's counts; a mailbox made again with the same name starts at zero."""
    await store.add_domain("example.test")
    a = await store.add_user("a@example.test", "h")
    b = await store.add_user("b@example.test", "h")
    raw = b"Subject: s\r\n\r\nbody\r\n"
    msg = new_message(raw)
    await store.deliver(msg, [DeliveryTarget(a.id), DeliveryTarget(b.id), DeliveryTarget(a.id)])
    work = await store.create_mailbox(a.id, "Work")
    inbox = await store.get_mailbox(a.id, "INBOX")
    assert inbox is not None
    await store.copy(inbox.id, [Uid(1), Uid(2)], work.id)
    await store.delete_mailbox(a.id, "Work")
    again = await store.create_mailbox(a.id, "Work")
    assert (again.messages, again.unseen, again.size) == (0, 0, 0)
    await store.delete_user("a@example.test")
    b_inbox = await store.get_mailbox(b.id, "INBOX")
    assert b_inbox is not None
    assert (b_inbox.messages, b_inbox.unseen, b_inbox.size) == (1, 1, len(raw))
