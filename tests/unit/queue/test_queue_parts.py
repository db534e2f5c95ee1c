"""The runner's parts on their own: routing, and outcomes committed before a
connection is reused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from postier.config.schema import SmtpOutbound
from postier.dns.fake import SERVFAIL, FakeResolver
from postier.queue.outcome import OutcomeKind
from postier.queue.routing import Router, Target, TlsMode, group
from postier.queue.runner import Runner
from postier.queue.schedule import Schedule
from postier.store.models import QueueEntry, QueueId, QueueRecipient
from postier.store.sqlite import SqliteStore
from tests.unit.queue.conftest import Net


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


def setzone(net: Net) -> None:
    net.resolver.set("b.test", {"MX": [(10, "mx.b.test")]})
    net.resolver.set("mx.b.test", {"A": ["127.0.0.2"]})


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
