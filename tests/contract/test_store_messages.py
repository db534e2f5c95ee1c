"""Contract: deliver, append, UIDs, MODSEQ, flags, expunge, copy/move, CONDSTORE/QRESYNC,
quota, and 200 concurrent deliveries."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from postier.store.errors import Invalid, NotFound, QuotaExceeded
from postier.store.models import DeliveryTarget, NewQueueEntry, QueueRecipient, Uid
from tests.support.messages import new_message

MSG = b"From: a@remote.test\r\nSubject: Hello\r\n\r\nHi there\r\n"
WHEN = datetime(2024, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


@pytest.fixture
async def users(store):
    await store.add_domain("example.test")
    return [await store.add_user(f"u{i}@example.test", "h") for i in range(3)]


async def inbox(store, user):
    m = await store.get_mailbox(user.id, "INBOX")
    assert m is not None
    return m


async def test_deliver_to_three_users_shares_one_blob(store, users):
    r = await store.deliver(
        new_message(MSG), [DeliveryTarget(u.id) for u in users], internal_date=WHEN
    )
    assert r.blob_id is not None
    assert r.queued is None
    assert len(r.qid) == 16
    assert [d.user_id for d in r.delivered] == [u.id for u in users]
    assert [d.uid for d in r.delivered] == [1, 1, 1]
    for d in r.delivered:
        m = await store.get_message(d.mailbox_id, d.uid)
        assert m.blob_id == r.blob_id
        assert m.size == len(MSG)
        assert m.internal_date == WHEN
        assert m.flags == frozenset()
        assert m.summary.header_size == MSG.index(b"\r\n\r\n") + 4
    assert await store.read_blob(r.blob_id) == MSG
    path = await store.blob_path(r.blob_id)
    if path is not None:
        assert path.read_bytes() == MSG


async def test_summary_date_keeps_the_header_zone(store, users):
    """SEARCH SENTON compares the Date: header's own day (RFC 9051 §6.4.4): the
    summary date comes back in the zone it was written in, not only as an instant."""
    data = b"Date: Mon, 2 Mar 2026 23:30:00 -0500\r\nSubject: late\r\n\r\nx\r\n"
    r = await store.deliver(new_message(data), [DeliveryTarget(users[0].id)], internal_date=WHEN)
    m = await store.get_message(r.delivered[0].mailbox_id, r.delivered[0].uid)
    assert m.summary.date == datetime(2026, 3, 3, 4, 30, tzinfo=UTC)
    assert m.summary.date.utcoffset() == timedelta(hours=-5)
    assert m.summary.date.date() == date(2026, 3, 2)
    # the text fields alone, for IMAP SEARCH: no ENVELOPE, BODYSTRUCTURE, preview
    (light,) = await store.list_messages(m.mailbox_id, m.uid, m.uid, structures=False)
    assert light.summary == replace(
        m.summary, envelope=b"NIL", bodystructure=b"NIL", body=b"NIL", preview=""
    )
    assert light.summary.subject == "late" and light.summary.date == m.summary.date


async def test_deliver_target_mailbox_and_fallback(store, users):
    u = users[0]
    r = await store.deliver(
        new_message(MSG),
        [
            DeliveryTarget(u.id, "Junk", frozenset({"$Junk", "\\seen"})),
            DeliveryTarget(u.id, "No/Such/Box"),
            DeliveryTarget(u.id, "bad//name"),
        ],
        qid="MYQID",
    )
    assert r.qid == "MYQID"
    junk = await store.get_mailbox(u.id, "Junk")
    box = await inbox(store, u)
    assert [d.mailbox_id for d in r.delivered] == [junk.id, box.id, box.id]
    assert [d.uid for d in r.delivered] == [1, 1, 2]
    m = await store.get_message(junk.id, 1)
    assert m.flags == frozenset({"$Junk", "\\Seen"})


async def test_deliver_from_spool_file(store, users, tmp_path):
    spool = tmp_path / "spool.eml"
    spool.write_bytes(MSG)
    r = await store.deliver(new_message(spool), [DeliveryTarget(users[0].id)])
    assert not spool.exists()  # consumed
    assert await store.read_blob(r.blob_id) == MSG
    m = await store.get_message(r.delivered[0].mailbox_id, r.delivered[0].uid)
    assert m.size == len(MSG)


async def test_deliver_is_all_or_nothing(store, users):
    with pytest.raises(NotFound):
        await store.deliver(new_message(MSG), [DeliveryTarget(users[0].id), DeliveryTarget(9999)])
    assert (await inbox(store, users[0])).messages == 0
    assert (await inbox(store, users[0])).uidnext == 1
    with pytest.raises(Invalid):
        await store.deliver(new_message(MSG), [])


async def test_deliver_with_queue_entry(store, users):
    q = NewQueueEntry(
        sender="u0@example.test",
        recipients=(QueueRecipient("x@remote.test"),),
        envid="E1",
        ret="HDRS",
        smtputf8=True,
        body_8bit=True,
        auth_user="u0@example.test",
    )
    r = await store.deliver(new_message(MSG), [DeliveryTarget(users[1].id)], queue=q)
    assert r.queued == r.qid
    entry = await store.queue_get(r.qid)
    assert entry.blob_id == r.blob_id
    assert entry.size == len(MSG)
    assert (entry.envid, entry.ret, entry.smtputf8, entry.body_8bit, entry.auth_user) == (
        "E1",
        "HDRS",
        True,
        True,
        "u0@example.test",
    )
    only_queue = await store.deliver(new_message(b"out\r\n"), [], queue=q)
    assert only_queue.delivered == ()
    assert await store.read_blob(only_queue.blob_id) == b"out\r\n"


async def test_uids_increase_and_are_never_reused(store_factory):
    store = await store_factory()
    await store.add_domain("example.test")
    u = await store.add_user("a@example.test", "h")
    for _ in range(3):
        await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    box = await inbox(store, u)
    await store.store_flags(box.id, [2, 3], frozenset({"\\Deleted"}), "add")
    assert await store.expunge(box.id) == [2, 3]
    r = await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    assert r.delivered[0].uid == 4
    await store.store_flags(box.id, [4], frozenset({"\\Deleted"}), "add")
    assert await store.expunge(box.id) == [4]
    await store.close()
    store2 = await store_factory()
    r = await store2.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    assert r.delivered[0].uid == 5
    assert [m.uid for m in await store2.list_messages(box.id)] == [1, 5]
    assert (await store2.get_mailbox_by_id(box.id)).uidvalidity == box.uidvalidity


async def test_modseq_increases_on_every_change(store, users):
    u = users[0]
    box = await inbox(store, u)
    seen = [box.highestmodseq]

    async def hms():
        m = await store.get_mailbox_by_id(box.id)
        assert m.highestmodseq > seen[-1]
        seen.append(m.highestmodseq)
        return m.highestmodseq

    r = await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    assert (await store.get_message(box.id, 1)).modseq == await hms()
    await store.append(box.id, new_message(MSG))
    assert (await store.get_message(box.id, 2)).modseq == await hms()
    changed, refused = await store.store_flags(box.id, [1], frozenset({"\\Flagged"}), "add")
    assert refused == []
    assert changed[0].modseq == await hms()
    await store.copy(box.id, [1], box.id)
    await hms()
    await store.store_flags(box.id, [1], frozenset({"\\Deleted"}), "add")
    await hms()
    await store.expunge(box.id)
    await hms()
    await store.move(box.id, [2], box.id)
    await hms()
    assert r.delivered[0].uid == 1


async def test_store_flags_modes(store, users):
    box = await inbox(store, users[0])
    for _ in range(3):
        await store.deliver(new_message(MSG), [DeliveryTarget(users[0].id)])
    changed, refused = await store.store_flags(
        box.id, [1, 2, 99], frozenset({"\\seen", "foo"}), "add"
    )
    assert [m.uid for m in changed] == [1, 2]
    assert all(m.flags == frozenset({"\\Seen", "foo"}) for m in changed)
    assert changed[0].modseq < changed[1].modseq
    assert refused == []
    changed, _ = await store.store_flags(box.id, [1], frozenset({"foo"}), "remove")
    assert changed[0].flags == frozenset({"\\Seen"})
    changed, _ = await store.store_flags(box.id, [1, 2, 3], frozenset({"\\Answered"}), "replace")
    assert [m.flags for m in changed] == [frozenset({"\\Answered"})] * 3
    # no change, no new MODSEQ, not reported
    before = (await store.get_mailbox_by_id(box.id)).highestmodseq
    changed, _ = await store.store_flags(box.id, [1], frozenset({"\\Answered"}), "add")
    assert changed == []
    assert (await store.get_mailbox_by_id(box.id)).highestmodseq == before
    # \Recent is never stored
    changed, _ = await store.store_flags(box.id, [1], frozenset({"\\Recent"}), "add")
    assert changed == []
    with pytest.raises(Invalid):
        await store.store_flags(box.id, [1], frozenset({"two words"}), "add")
    with pytest.raises(NotFound):
        await store.store_flags(9999, [1], frozenset({"x"}), "add")


async def test_store_flags_unchanged_since(store, users):
    box = await inbox(store, users[0])
    for _ in range(2):
        await store.deliver(new_message(MSG), [DeliveryTarget(users[0].id)])
    m1 = await store.get_message(box.id, 1)
    changed, _ = await store.store_flags(box.id, [2], frozenset({"a"}), "add")
    m2 = changed[0]
    # RFC 7162 §3.1.3: MODSEQ > UNCHANGEDSINCE → refused, the rest is done
    changed, refused = await store.store_flags(
        box.id, [1, 2], frozenset({"b"}), "add", unchanged_since=m1.modseq
    )
    assert refused == [2]
    assert [m.uid for m in changed] == [1]
    assert (await store.get_message(box.id, 2)).flags == frozenset({"a"})
    changed, refused = await store.store_flags(
        box.id, [2], frozenset({"b"}), "add", unchanged_since=m2.modseq
    )
    assert refused == []
    assert changed[0].flags == frozenset({"a", "b"})


async def test_expunge(store, users):
    box = await inbox(store, users[0])
    for _ in range(4):
        await store.deliver(new_message(MSG), [DeliveryTarget(users[0].id)])
    assert await store.expunge(box.id) == []
    await store.store_flags(box.id, [1, 3, 4], frozenset({"\\Deleted"}), "add")
    assert await store.expunge(box.id, [3, 4, 2]) == [3, 4]
    assert [m.uid for m in await store.list_messages(box.id)] == [1, 2]
    assert await store.expunge(box.id) == [1]
    assert [m.uid for m in await store.list_messages(box.id)] == [2]


async def test_changed_and_vanished_since(store, users):
    box = await inbox(store, users[0])
    for _ in range(4):
        await store.deliver(new_message(MSG), [DeliveryTarget(users[0].id)])
    mark = (await store.get_mailbox_by_id(box.id)).highestmodseq
    assert await store.changed_since(box.id, mark) == []
    assert await store.vanished_since(box.id, mark) == []
    await store.store_flags(box.id, [2], frozenset({"\\Seen"}), "add")
    await store.store_flags(box.id, [3, 4], frozenset({"\\Deleted"}), "add")
    await store.expunge(box.id, [4])
    assert [m.uid for m in await store.changed_since(box.id, mark)] == [2, 3]
    assert await store.vanished_since(box.id, mark) == [4]
    assert [m.uid for m in await store.changed_since(box.id, 0)] == [1, 2, 3]
    assert await store.vanished_since(box.id, 0) == [4]


async def test_copy_and_move_keep_flags_and_date(store, users):
    u = users[0]
    src = await inbox(store, u)
    dst = await store.get_mailbox(u.id, "Archive")
    for flags in ({"\\Seen"}, {"\\Flagged", "kw"}, set()):
        await store.deliver(
            new_message(MSG), [DeliveryTarget(u.id, flags=frozenset(flags))], internal_date=WHEN
        )
    await store.deliver(new_message(MSG), [DeliveryTarget(u.id, "Archive")])
    originals = await store.list_messages(src.id)
    pairs = await store.copy(src.id, [1, 2, 77], dst.id)
    assert pairs == [(1, 2), (2, 3)]
    for s, d in pairs:
        a, b = originals[s - 1], await store.get_message(dst.id, d)
        assert (b.flags, b.internal_date, b.blob_id, b.size) == (
            a.flags,
            a.internal_date,
            a.blob_id,
            a.size,
        )
    mark = (await store.get_mailbox_by_id(src.id)).highestmodseq
    pairs = await store.move(src.id, [2, 3], dst.id)
    assert pairs == [(2, 4), (3, 5)]
    assert [m.uid for m in await store.list_messages(src.id)] == [1]
    assert await store.vanished_since(src.id, mark) == [2, 3]
    moved = await store.get_message(dst.id, 5)
    assert (moved.flags, moved.internal_date) == (frozenset(), WHEN)
    assert await store.copy(src.id, [99], dst.id) == []
    with pytest.raises(NotFound):
        await store.copy(src.id, [1], 9999)


async def test_blob_freed_with_last_reference(store, users):
    u = users[0]
    box = await inbox(store, u)
    r = await store.deliver(new_message(MSG), [DeliveryTarget(u.id)])
    await store.copy(box.id, [1], box.id)
    await store.store_flags(box.id, [1], frozenset({"\\Deleted"}), "add")
    await store.expunge(box.id)
    assert await store.read_blob(r.blob_id) == MSG  # the copy still needs it
    await store.store_flags(box.id, [2], frozenset({"\\Deleted"}), "add")
    await store.expunge(box.id)
    with pytest.raises(NotFound):
        await store.read_blob(r.blob_id)
    assert await store.blob_path(r.blob_id) is None


async def test_append(store, users):
    box = await inbox(store, users[0])
    m = await store.append(box.id, new_message(MSG), frozenset({"\\Draft", "\\SEEN"}), WHEN)
    assert (m.uid, m.flags, m.internal_date, m.size) == (
        1,
        frozenset({"\\Draft", "\\Seen"}),
        WHEN,
        len(MSG),
    )
    assert await store.get_message(box.id, 1) == m
    assert await store.read_blob(m.blob_id) == MSG
    with pytest.raises(NotFound):
        await store.append(9999, new_message(MSG))
    assert await store.get_message(box.id, 2) is None


async def test_quota(store, users):
    await store.set_quota("u0@example.test", 100)
    u = users[0]
    box = await inbox(store, u)
    assert await store.quota_usage(u.id) == (0, 100)
    await store.append(box.id, new_message(b"x" * 60))
    with pytest.raises(QuotaExceeded):
        await store.append(box.id, new_message(b"y" * 41))
    await store.append(box.id, new_message(b"y" * 40))
    assert await store.quota_usage(u.id) == (100, 100)
    # delivery never refuses (intake decides); copy does
    await store.deliver(new_message(b"z" * 10), [DeliveryTarget(u.id)])
    assert await store.quota_usage(u.id) == (110, 100)
    with pytest.raises(QuotaExceeded):
        await store.copy(box.id, [1], box.id)
    # unlimited
    assert await store.quota_usage(users[1].id) == (0, 0)
    with pytest.raises(NotFound):
        await store.quota_usage(9999)
    assert len(await store.list_messages(box.id)) == 3


async def test_list_messages_ranges(store, users):
    box = await inbox(store, users[0])
    for _ in range(5):
        await store.deliver(new_message(MSG), [DeliveryTarget(users[0].id)])
    assert [m.uid for m in await store.list_messages(box.id, 2, 4)] == [2, 3, 4]
    assert [m.uid for m in await store.list_messages(box.id, 4)] == [4, 5]
    assert await store.list_messages(box.id, 6) == []
    assert await store.list_messages(9999) == []


async def test_maildrop_lists_uid_blob_crlf_size_and_seen(store, users):
    box = await inbox(store, users[0])
    bare_lf = b"Subject: lf\n\nbody\n"
    for body in (MSG, bare_lf, MSG):
        await store.deliver(new_message(body), [DeliveryTarget(users[0].id)])
    await store.store_flags(box.id, [2], frozenset({"\\Seen", "x"}), "add")
    await store.expunge(box.id, [1], flagged_only=False)
    listed = await store.list_messages(box.id)
    drop = await store.maildrop(box.id)
    assert [(d.uid, d.blob_id, d.seen) for d in drop] == [
        (2, listed[0].blob_id, True),
        (3, listed[1].blob_id, False),
    ]
    assert [d.crlf_size for d in drop] == [len(bare_lf.replace(b"\n", b"\r\n")), len(MSG)]
    assert await store.maildrop(9999) == []


async def test_list_meta_is_list_messages_as_plain_rows(store, users):
    """IMAP's metadata FETCH listing: (UID, size, internal date in microseconds,
    ENVELOPE, BODYSTRUCTURE, BODY) as `list_messages` has them, by UID range."""
    box = await inbox(store, users[0])
    for i in range(5):
        data = MSG.replace(b"Subject:", b"X-N: %d\r\nSubject:" % i)
        await store.append(box.id, new_message(data), internal_date=WHEN + timedelta(hours=i))
    await store.store_flags(box.id, [2], frozenset({"\\Deleted"}), "add")
    await store.expunge(box.id, [2])
    full = await store.list_messages(box.id)
    rows = await store.list_meta(box.id)
    assert rows == [
        (
            m.uid,
            m.size,
            (m.internal_date - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
            m.summary.envelope,
            m.summary.bodystructure,
            m.summary.body,
        )
        for m in full
    ]
    assert all(type(v) is bytes for row in rows for v in row[3:])
    assert [row[0] for row in await store.list_meta(box.id, 2, 4)] == [3, 4]
    assert await store.list_meta(box.id, 6) == []
    assert await store.list_meta(9999) == []


async def test_get_messages_by_uid_is_list_messages_picked(store, users):
    """The webmail's narrowed search: the messages of some UIDs in one call,
    ascending, absent ones left out, with or without the structures."""
    box = await inbox(store, users[0])
    for i in range(6):
        data = MSG.replace(b"Subject:", b"X-N: %d\r\nSubject:" % i)
        await store.append(box.id, new_message(data))
    await store.store_flags(box.id, [3], frozenset({"\\Deleted"}), "add")
    await store.expunge(box.id, [3])
    wanted = [Uid(5), Uid(1), Uid(3), Uid(99), Uid(2)]
    assert await store.get_messages(box.id, wanted) == [
        m for m in await store.list_messages(box.id) if m.uid in (1, 2, 5)
    ]
    assert await store.get_messages(box.id, wanted, structures=False) == [
        m for m in await store.list_messages(box.id, structures=False) if m.uid in (1, 2, 5)
    ]
    assert await store.get_messages(box.id, []) == []
    assert await store.get_messages(9999, wanted) == []


async def test_list_bodies_reads_the_bytes_of_a_uid_range(store, users):
    """IMAP's whole-message FETCH: (UID, bytes) by UID range in one call, small
    messages and large ones (a file of its own on sqlite) alike."""
    box = await inbox(store, users[0])
    datas = [MSG.replace(b"Subject:", b"X-N: %d\r\nSubject:" % i) for i in range(4)]
    datas[2] = MSG + b"y" * (100 * 1024) + b"\r\n"
    for data in datas:
        await store.append(box.id, new_message(data))
    await store.store_flags(box.id, [2], frozenset({"\\Deleted"}), "add")
    await store.expunge(box.id, [2])
    assert await store.list_bodies(box.id, 1, 4) == [(1, datas[0]), (3, datas[2]), (4, datas[3])]
    assert await store.list_bodies(box.id, 3, 3) == [(3, datas[2])]
    assert await store.list_bodies(box.id, 5, 9) == []


async def test_list_flags_is_list_messages_without_the_rest(store, users):
    """SELECT's light listing: (UID, MODSEQ, flags) as `list_messages` has them, by
    UID range; equal flag sets are equal whether shared or not."""
    box = await inbox(store, users[0])
    for i in range(5):
        flags = frozenset({"\\Seen", "$Work"}) if i % 2 else frozenset()
        await store.append(box.id, new_message(MSG), flags)
    await store.store_flags(box.id, [3], frozenset({"\\Flagged"}), "add")
    await store.store_flags(box.id, [2], frozenset({"\\Deleted"}), "add")
    await store.expunge(box.id, [2])
    full = await store.list_messages(box.id, summaries=False)
    assert await store.list_flags(box.id) == [(m.uid, m.modseq, m.flags) for m in full]
    assert [u for u, _, _ in await store.list_flags(box.id, 2, 4)] == [3, 4]
    assert (await store.list_flags(box.id, 3, 3))[0][2] == {"\\Flagged"}
    assert await store.list_flags(box.id, 6) == []
    assert await store.list_flags(9999) == []


async def test_messages_read_share_their_flag_sets(store, users):
    """Equal flags read back are one set: a listing of many messages holds a few sets,
    not one each (fewer objects for the cyclic GC to scan)."""
    box = await inbox(store, users[0])
    for i in range(6):
        await store.append(box.id, new_message(MSG), frozenset({"\\Seen", f"$k{i % 2}"}))
    for listed in (
        await store.list_messages(box.id, summaries=False),
        await store.list_messages(box.id, structures=False),
        await store.list_messages(box.id),
        await store.get_messages(box.id, [1, 2, 3, 4, 5, 6]),
    ):
        assert len(listed) == 6
        assert len({id(m.flags) for m in listed}) == 2


async def test_list_sort_keys_is_list_messages_as_untracked_rows(store, users):
    """The webmail's order of a folder: (UID, the Date: header's instant else the
    arrival, size, From, Subject) as `list_messages` has them, in tuples of atoms
    the cyclic GC stops tracking."""
    box = await inbox(store, users[0])
    await store.append(box.id, new_message(MSG), frozenset(), WHEN)
    dated = b"From: Zed <z@x.test>\r\nDate: Mon, 2 Mar 2026 23:30:00 -0500\r\n\r\nx\r\n"
    await store.append(box.id, new_message(dated), frozenset(), WHEN)
    want = [
        (
            m.uid,
            round((m.summary.date or m.internal_date).timestamp() * 1_000_000),
            m.size,
            m.summary.from_,
            m.summary.subject,
        )
        for m in await store.list_messages(box.id, structures=False)
    ]
    rows = await store.list_sort_keys(box.id)
    assert rows == want
    assert rows[1][1] != rows[0][1]  # the Date: header's, not the arrival
    gc.collect()
    assert not any(gc.is_tracked(r) for r in rows)
    assert await store.list_sort_keys(9999) == []


async def test_read_blob_unknown(store, users):
    for bad in ("0" * 32, "../../etc/passwd", ""):
        with pytest.raises(NotFound):
            await store.read_blob(bad)
        assert await store.blob_path(bad) is None


async def test_200_concurrent_deliveries(store, users):
    u = users[0]
    bodies = [b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i) for i in range(200)]
    results = await asyncio.gather(
        *(store.deliver(new_message(b), [DeliveryTarget(u.id)]) for b in bodies)
    )
    uids = [r.delivered[0].uid for r in results]
    assert sorted(uids) == list(range(1, 201))
    assert len({r.qid for r in results}) == 200
    box = await inbox(store, u)
    assert (box.messages, box.uidnext) == (200, 201)
    msgs = await store.list_messages(box.id)
    by_uid = {r.delivered[0].uid: body for r, body in zip(results, bodies, strict=True)}
    for m in msgs:
        assert await store.read_blob(m.blob_id) == by_uid[m.uid]
    modseqs = [m.modseq for m in msgs]
    assert len(set(modseqs)) == 200


async def test_read_blobs_many_at_once(store, users):
    alice = users[0]
    small = await store.deliver(
        new_message(b"Subject: a\r\n\r\nsmall\r\n"), [DeliveryTarget(alice.id)]
    )
    big_bytes = b"Subject: b\r\n\r\n" + b"y" * (200 * 1024)
    big = await store.deliver(new_message(big_bytes), [DeliveryTarget(alice.id)])
    got = await store.read_blobs([small.blob_id, big.blob_id, small.blob_id])
    assert got == {small.blob_id: b"Subject: a\r\n\r\nsmall\r\n", big.blob_id: big_bytes}
    assert await store.read_blobs([]) == {}
