"""The runner's parts on their own: routing, signing once at enqueue, the
Return-Path recorded at enqueue, and outcomes committed before a connection is
reused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from postier.config.schema import SmtpOutbound
from postier.dns.fake import SERVFAIL, FakeResolver
from postier.queue.enqueue import Enqueue, return_path_size, transmitted
from postier.queue.outcome import OutcomeKind
from postier.queue.routing import Router, Target, TlsMode, group
from postier.queue.runner import Runner
from postier.queue.schedule import Schedule
from postier.queue.signing import DkimSigner
from postier.store.models import NewMessage, NewQueueEntry, QueueEntry, QueueId, QueueRecipient
from postier.store.sqlite import SqliteStore
from tests.support.downgrade import SQLITE_12, SQLITE_13, SQLITE_14, sqlite_drop
from tests.support.messages import new_message
from tests.unit.queue.conftest import MSG, Net

RETURN_PATH = b"Return-Path: <alice@a.test>\r\n"
SIGNATURE = b"DKIM-Signature: v=1; d=a.test; s=test; b=fake\r\n"


class CountingSigner(DkimSigner):
    """Counts how often a message is signed; the signature is a fixed field."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.signed: list[bytes] = []

    async def signature(self, data: bytes, sender: str) -> bytes:
        self.signed.append(data)
        return SIGNATURE


# --- routing -------------------------------------------------------------------
def test_group_by_domain_or_all_to_the_smarthost() -> None:
    rcpts = [QueueRecipient(a) for a in ("a@B.test", "b@c.test", "c@b.TEST")]
    assert {k: [r.address for r in v] for k, v in group(rcpts, smarthost=False).items()} == {
        "b.test": ["a@B.test", "c@b.TEST"],
        "c.test": ["b@c.test"],
    }
    assert list(group(rcpts, smarthost=True)) == [""]


async def test_router_mx_implicit_mx_and_failures() -> None:
    resolver = FakeResolver(
        {
            "b.test": {"MX": [(10, "mx1.b.test"), (20, "mx2.b.test")]},
            "mx1.b.test": {"A": ["192.0.2.1"]},
            "mx2.b.test": {"A": ["192.0.2.2"]},
            "c.test": {"A": ["192.0.2.3"]},
            "null.test": {"MX": [(0, ".")]},
            "fail.test": SERVFAIL,
        }
    )
    router = Router(
        resolver, SmtpOutbound(port=2600, require_tls_domains=("c.test",)), max_addresses=1
    )
    b = await router.destination("b.test")
    assert (b.targets, b.tls, b.failure) == (
        (Target("mx1.b.test", "192.0.2.1", 2600),),  # max_addresses
        TlsMode.STARTTLS,
        None,
    )
    c = await router.destination("c.test")
    assert (c.targets, c.tls) == ((Target("c.test", "192.0.2.3", 2600),), TlsMode.REQUIRE)
    null = await router.destination("null.test")
    assert null.failure is not None
    assert (null.failure.kind, null.failure.status) == (OutcomeKind.PERMANENT, "5.1.10")
    nx = await router.destination("nowhere.test")
    assert nx.failure is not None
    assert (nx.failure.kind, nx.failure.status) == (OutcomeKind.PERMANENT, "5.1.2")
    servfail = await router.destination("fail.test")
    assert servfail.failure is not None
    assert (servfail.failure.kind, servfail.failure.status) == (OutcomeKind.TEMPORARY, "4.4.3")


@pytest.mark.parametrize(
    ("smarthost", "tls", "expected"),
    [
        ("[192.0.2.9]:587", "require", (Target("192.0.2.9", "192.0.2.9", 587),)),
        ("relay.test", "implicit", (Target("relay.test", "192.0.2.8", 25),)),
        ("relay.test:2525", "bogus", (Target("relay.test", "192.0.2.8", 2525),)),
    ],
)
async def test_router_smarthost(smarthost: str, tls: str, expected: tuple[Target, ...]) -> None:
    resolver = FakeResolver({"relay.test": {"A": ["192.0.2.8"]}})
    outbound = SmtpOutbound(
        smarthost=smarthost, smarthost_tls=tls, smarthost_username="u", smarthost_password="p"
    )
    dest = await Router(resolver, outbound).destination("anything.test")
    assert (dest.name, dest.targets, dest.auth) == ("smarthost", expected, ("u", "p"))
    assert dest.tls == (TlsMode(tls) if tls != "bogus" else TlsMode.STARTTLS)


async def test_router_smarthost_that_does_not_resolve_defers() -> None:
    dest = await Router(FakeResolver({}), SmtpOutbound(smarthost="gone.test:25")).destination("x")
    assert dest.failure is not None
    assert dest.failure.kind is OutcomeKind.TEMPORARY


# --- enqueue: Return-Path and signature worked out once ------------------------------
@pytest.mark.parametrize(
    ("data", "whole", "expected"),
    [
        (b"Return-Path: <a@b>\r\nX: 1\r\n\r\nbody", True, 20),
        (b"return-path: <a@b>\r\n\tfolded\r\nX: 1\r\n", True, 29),
        (b"X: 1\r\nReturn-Path: <a@b>\r\n", True, 0),
        (b"Return-Path: <a@b>", True, 18),
        (b"Return-Path: <a@b>", False, None),  # the head ends inside the field
        (b"Return-Path: <a@b>\r\n", False, None),  # a folded line may follow
        (b"Return-Path: <a@b>\r\nX", False, 20),
    ],
)
def test_return_path_size(data: bytes, whole: bool, expected: int | None) -> None:
    assert return_path_size(data, whole=whole) == expected


async def test_enqueue_records_return_path_and_signs_bytes_as_sent(
    net: Net, tmp_path: Path
) -> None:
    signer = CountingSigner(net.store)
    entry = NewQueueEntry("alice@a.test", (QueueRecipient("bob@b.test"),))
    done = await Enqueue(signer).prepare(new_message(MSG), entry)
    assert done.return_path_size == len(RETURN_PATH)
    assert done.dkim_signature == SIGNATURE
    assert signer.signed == [MSG[len(RETURN_PATH) :]]
    # a spooled message: the trace fields in the head, the client's bytes in the
    # file (with a header field dropped: `skip`), as intake stores it
    trace, client = MSG[: MSG.index(b"From:")], MSG[MSG.index(b"From:") :]
    spool = tmp_path / "spool.eml"
    spool.write_bytes(b"X-Dropped: 1\r\n" + client)
    spooled = NewMessage(spool, new_message(MSG).summary, head=trace, skip=len(b"X-Dropped: 1\r\n"))
    assert await Enqueue(signer).prepare(spooled, entry) == done  # the file read here
    assert await Enqueue(signer).prepare(spooled, entry, spool.read_bytes()) == done  # or given
    assert signer.signed == [MSG[len(RETURN_PATH) :]] * 3
    # no signer: the size only (the head and the file's start), signed later by the runner
    unsigned = await Enqueue(None).prepare(spooled, entry)
    assert (unsigned.return_path_size, unsigned.dkim_signature) == (len(RETURN_PATH), None)
    # a bounce is never signed
    bounce = await Enqueue(signer).prepare(
        new_message(MSG), NewQueueEntry("", entry.recipients, is_bounce=True)
    )
    assert bounce.dkim_signature == b""
    assert len(signer.signed) == 3


def setzone(net: Net) -> None:
    net.resolver.set("b.test", {"MX": [(10, "mx.b.test")]})
    net.resolver.set("mx.b.test", {"A": ["127.0.0.2"]})


async def test_signed_once_across_two_attempts_of_a_deferred_message(net: Net) -> None:
    setzone(net)
    peer = await net.peer("127.0.0.2", data_reply="451 4.3.0 try again later")
    signer = CountingSigner(net.store)
    entry = NewQueueEntry("alice@a.test", (QueueRecipient("bob@b.test"),))
    message = new_message(MSG)
    res = await net.store.deliver(message, [], queue=await Enqueue(signer).prepare(message, entry))
    assert res.queued is not None
    stored = await net.store.queue_get(res.queued)
    assert stored is not None
    assert (stored.return_path_size, stored.dkim_signature) == (len(RETURN_PATH), SIGNATURE)
    runner = net.runner(signer=signer)
    assert await net.round(runner) == 1  # deferred at DATA
    peer.data_reply = "250 2.0.0 Ok"
    assert await net.round(runner, advance=61) == 1  # delivered
    assert await net.store.queue_get(res.queued) is None
    assert len(signer.signed) == 1  # at enqueue, not at either attempt
    sent = [t.data for t in peer.transactions]
    assert sent == [SIGNATURE + MSG[len(RETURN_PATH) :]] * 2


async def test_entry_queued_without_signature_is_signed_at_each_attempt(net: Net) -> None:
    """Entries queued before schema 9 (or without a signer): as the runner always did."""
    setzone(net)
    peer = await net.peer("127.0.0.2", data_reply="451 4.3.0 try again later")
    signer = CountingSigner(net.store)
    qid = await net.enqueue(["bob@b.test"])
    stored = await net.store.queue_get(qid)
    assert stored is not None
    assert (stored.return_path_size, stored.dkim_signature) == (None, None)
    runner = net.runner(signer=signer)
    await net.round(runner)
    peer.data_reply = "250 2.0.0 Ok"
    await net.round(runner, advance=61)
    assert len(signer.signed) == 2
    assert [t.data for t in peer.transactions] == [SIGNATURE + MSG[len(RETURN_PATH) :]] * 2


async def test_entry_from_before_the_migration_is_delivered(tmp_path: Path) -> None:
    """A queue row written by schema 8 (no Return-Path size, no signature columns)
    reads back with None for both after the migration, and goes out as before."""
    data_dir = tmp_path / "data"
    store = SqliteStore(data_dir)
    await store.open()
    res = await store.deliver(
        new_message(MSG), [], queue=NewQueueEntry("alice@a.test", (QueueRecipient("bob@b.test"),))
    )
    await store.close()
    with sqlite3.connect(data_dir / "postier.db") as conn:  # back to schema 8
        conn.execute("ALTER TABLE queue DROP COLUMN return_path_size")
        conn.execute("ALTER TABLE queue DROP COLUMN dkim_signature")
        conn.execute("ALTER TABLE users DROP COLUMN admin")  # schema 10
        sqlite_drop(conn, SQLITE_14)
        conn.execute("DROP TRIGGER header_index_add")  # schema 11
        conn.execute("DROP TRIGGER header_index_remove")
        conn.execute("DROP TABLE header_index")
        conn.execute("ALTER TABLE blobs DROP COLUMN bcc")
        sqlite_drop(conn, SQLITE_13, SQLITE_12)
        conn.execute("UPDATE schema_version SET version = 8")
    conn.close()
    store = SqliteStore(data_dir)
    await store.open()
    try:
        entry = await store.queue_get(QueueId(res.qid))
        assert entry is not None
        assert (entry.return_path_size, entry.dkim_signature) == (None, None)
        raw = await store.read_blob(entry.blob_id)
        assert transmitted(raw, entry) == MSG[len(RETURN_PATH) :]
    finally:
        await store.close()


# --- commit before reuse ---------------------------------------------------------
class SlowCommits:
    """The store, with queue commits taking a while: what the runner has made
    durable is `committed`, in order."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.committed: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def queue_update(self, qid: QueueId, *args: Any, **kw: Any) -> None:
        await asyncio.sleep(0.05)
        await self._store.queue_update(qid, *args, **kw)
        self.committed.append(("update", qid))

    async def queue_delete(self, qid: QueueId) -> None:
        await asyncio.sleep(0.05)
        await self._store.queue_delete(qid)
        self.committed.append(("delete", qid))


async def test_outcome_committed_before_the_connection_carries_the_next_message(
    net: Net,
) -> None:
    """A reused connection starts the next transaction only after the previous
    message's outcome is durable: a crash re-sends at most the one in flight."""
    setzone(net)
    slow = SlowCommits(net.store)
    seen: dict[str, list[tuple[str, str]]] = {}
    peer = await net.peer("127.0.0.2")

    def rcpt(address: str) -> None:
        seen[address] = list(slow.committed)  # what was durable when this RCPT came

    peer.rcpt_reply = rcpt
    qids = {a: await net.enqueue([a]) for a in ("one@b.test", "two@b.test")}
    runner = Runner(
        slow,  # type: ignore[arg-type]
        net.resolver,
        "mail.a.test",
        outbound=SmtpOutbound(
            port=net.port, max_per_destination=1, connect_timeout=2, command_timeout=5
        ),
        schedule=Schedule(first_retry=60, max_backoff=600, lifetime=3600),
        now=net.now,
    )
    net.runners.append(runner)
    due: list[QueueEntry] = await net.store.queue_due(net.now(), 10)
    assert len(due) == 2
    await asyncio.gather(*(runner.process(e) for e in due))
    assert peer.connections == 1  # the second message reused the connection
    [earlier], [later] = (t.rcpts for t in peer.transactions)
    assert ("delete", qids[earlier]) in seen[later]
    for qid in qids.values():
        assert await net.store.queue_get(qid) is None
