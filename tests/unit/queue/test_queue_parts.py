"""The runner's parts on their own: routing."""

from __future__ import annotations

import pytest

from postier.config.schema import SmtpOutbound
from postier.dns.fake import SERVFAIL, FakeResolver
from postier.queue.outcome import OutcomeKind
from postier.queue.routing import Router, Target, TlsMode, group
from postier.store.models import QueueRecipient


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
