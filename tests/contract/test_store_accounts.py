"""Contract: domains, users, aliases, resolve, addresses_of."""

from __future__ import annotations

import pytest

from postier.store.errors import Conflict, Invalid, NotFound
from postier.store.models import SPECIAL_USE, DeliveryTarget
from tests.support.messages import new_message


async def test_domain_crud(store):
    d = await store.add_domain("Example.TEST.")
    assert d.name == "example.test"
    assert d.dkim_selector == ""
    await store.add_domain("b.test")
    assert [x.name for x in await store.list_domains()] == ["b.test", "example.test"]
    got = await store.get_domain("EXAMPLE.test")
    assert got is not None
    assert got.name == "example.test"
    assert got.created == d.created
    assert await store.get_domain("nope.test") is None
    assert await store.get_domain("not a domain!") is None
    await store.set_dkim_selector("example.test", "s2024")
    got = await store.get_domain("example.test")
    assert got is not None
    assert got.dkim_selector == "s2024"
    await store.delete_domain("b.test")
    assert [x.name for x in await store.list_domains()] == ["example.test"]


async def test_domain_errors(store):
    await store.add_domain("example.test")
    with pytest.raises(Conflict):
        await store.add_domain("EXAMPLE.TEST")
    with pytest.raises(Invalid):
        await store.add_domain("bad domain")
    with pytest.raises(NotFound):
        await store.delete_domain("nope.test")
    with pytest.raises(NotFound):
        await store.set_dkim_selector("nope.test", "s")


async def test_domain_delete_refused_while_used(store):
    await store.add_domain("example.test")
    await store.add_user("a@example.test", "h")
    with pytest.raises(Conflict, match="1 user"):
        await store.delete_domain("example.test")
    await store.delete_user("a@example.test")
    await store.add_alias("x@example.test", ["y@remote.test"])
    with pytest.raises(Conflict, match="1 alias"):
        await store.delete_domain("example.test")
    await store.delete_alias("x@example.test")
    await store.delete_domain("example.test")
    assert await store.list_domains() == []


async def test_user_crud(store):
    await store.add_domain("example.test")
    await store.add_domain("other.test")
    u = await store.add_user("Bob.Smith@Example.Test", "$argon2id$hash", quota_bytes=5000)
    assert u.address == "bob.smith@example.test"
    assert u.domain == "example.test"
    assert u.password_hash == "$argon2id$hash"
    assert u.quota_bytes == 5000
    assert not u.disabled
    assert await store.get_user("BOB.SMITH@example.test") == u
    assert await store.get_user_by_id(u.id) == u
    assert await store.get_user("nobody@example.test") is None
    assert await store.get_user("not an address") is None
    v = await store.add_user("ann@other.test", "h2")
    assert [x.address for x in await store.list_users()] == [
        "ann@other.test",
        "bob.smith@example.test",
    ]
    assert await store.list_users("other.test") == [v]
    await store.set_password("bob.smith@example.test", "new")
    await store.set_quota("bob.smith@example.test", 7)
    got = await store.get_user_by_id(u.id)
    assert got is not None
    assert (got.password_hash, got.quota_bytes) == ("new", 7)
    await store.delete_user("Bob.Smith@example.test")
    assert await store.get_user_by_id(u.id) is None
    assert await store.list_mailboxes(u.id) == []


async def test_user_errors(store):
    await store.add_domain("example.test")
    await store.add_user("a@example.test", "h")
    with pytest.raises(Conflict):
        await store.add_user("A@EXAMPLE.TEST", "h")
    with pytest.raises(NotFound):
        await store.add_user("a@nope.test", "h")
    with pytest.raises(Invalid):
        await store.add_user("no-at-sign", "h")
    for call in (
        store.set_password("z@example.test", "h"),
        store.set_quota("z@example.test", 1),
        store.delete_user("z@example.test"),
    ):
        with pytest.raises(NotFound):
            await call
    with pytest.raises(Invalid):
        await store.set_quota("a@example.test", -1)
    await store.add_alias("al@example.test", ["a@example.test"])
    with pytest.raises(Conflict):
        await store.add_user("al@example.test", "h")


async def test_new_user_gets_special_use_mailboxes(store):
    await store.add_domain("example.test")
    u = await store.add_user("a@example.test", "h")
    boxes = await store.list_mailboxes(u.id)
    assert {b.name: b.special_use for b in boxes} == SPECIAL_USE
    assert [b.name for b in boxes] == sorted(SPECIAL_USE)
    assert all(b.subscribed for b in boxes)
    assert all(b.uidnext == 1 and b.messages == 0 for b in boxes)
    assert len({b.uidvalidity for b in boxes}) == 6


async def test_default_quota(store_factory):
    store = await store_factory(default_quota=1000)
    await store.add_domain("example.test")
    u = await store.add_user("a@example.test", "h")
    assert u.quota_bytes == 1000
    assert await store.quota_usage(u.id) == (0, 1000)
    v = await store.add_user("b@example.test", "h", quota_bytes=5)
    assert v.quota_bytes == 5


async def test_alias_crud(store):
    await store.add_domain("example.test")
    await store.add_user("a@example.test", "h")
    al = await store.add_alias(
        "Info@Example.test", ["A@example.test", "x@remote.test", "a@example.test"]
    )
    assert al.source == "info@example.test"
    assert al.targets == ("a@example.test", "x@remote.test")  # lower-cased, de-duplicated
    ca = await store.add_alias("@EXAMPLE.test", ["a@example.test"])
    assert ca.source == "@example.test"
    assert await store.list_aliases() == [ca, al]
    assert await store.list_aliases("example.test") == [ca, al]
    assert await store.list_aliases("other.test") == []
    await store.delete_alias("INFO@example.test")
    assert await store.list_aliases() == [ca]


async def test_alias_errors(store):
    await store.add_domain("example.test")
    await store.add_user("a@example.test", "h")
    await store.add_alias("x@example.test", ["a@example.test"])
    with pytest.raises(Conflict):
        await store.add_alias("X@example.test", ["b@example.test"])
    with pytest.raises(Conflict):
        await store.add_alias("a@example.test", ["b@example.test"])
    with pytest.raises(NotFound):
        await store.add_alias("x@nope.test", ["a@example.test"])
    with pytest.raises(Invalid):
        await store.add_alias("y@example.test", [])
    with pytest.raises(Invalid):
        await store.add_alias("y@example.test", ["not an address"])
    with pytest.raises(NotFound):
        await store.delete_alias("y@example.test")


async def _setup_resolve(store):
    await store.add_domain("example.test")
    users = {n: await store.add_user(f"{n}@example.test", "h") for n in ("a", "b", "c")}
    return users


async def test_resolve_user_and_aliases(store):
    u = await _setup_resolve(store)
    r = await store.resolve("A@EXAMPLE.TEST")
    assert r.users == (u["a"],)
    assert r.remote == ()
    await store.add_alias(
        "team@example.test", ["a@example.test", "b@example.test", "friend@remote.test"]
    )
    await store.add_alias(
        "all@example.test", ["team@example.test", "c@example.test", "a@example.test"]
    )
    r = await store.resolve("all@example.test")
    assert r.users == (u["a"], u["b"], u["c"])
    assert r.remote == ("friend@remote.test",)
    assert r.found
    # a remote address given directly is nothing of ours
    r = await store.resolve("friend@remote.test")
    assert not r.found
    r = await store.resolve("nobody@example.test")
    assert not r.found
    assert (await store.resolve("garbage")).found is False


async def test_resolve_catch_all(store):
    u = await _setup_resolve(store)
    await store.add_alias("@example.test", ["c@example.test"])
    await store.add_alias("sales@example.test", ["b@example.test"])
    assert (await store.resolve("anything@example.test")).users == (u["c"],)
    assert (await store.resolve("a@example.test")).users == (u["a"],)  # users first
    assert (await store.resolve("sales@example.test")).users == (u["b"],)  # aliases next
    # an alias pointing at an unknown local address falls into the catch-all
    await store.add_alias("old@example.test", ["gone@example.test"])
    assert (await store.resolve("old@example.test")).users == (u["c"],)


async def test_resolve_loops_are_cut(store):
    u = await _setup_resolve(store)
    await store.add_alias("x@example.test", ["y@example.test"])
    await store.add_alias("y@example.test", ["x@example.test", "b@example.test"])
    assert (await store.resolve("x@example.test")).users == (u["b"],)
    await store.add_alias("p@example.test", ["q@example.test"])
    await store.add_alias("q@example.test", ["p@example.test"])
    assert not (await store.resolve("p@example.test")).found
    # a catch-all pointing into its own domain's void
    await store.add_alias("@example.test", ["void@example.test"])
    assert not (await store.resolve("void@example.test")).found


async def test_resolve_depth_limit(store):
    u = await _setup_resolve(store)
    # a chain of ten aliases (l1..l10) reaches the user; eleven (l0..l10) do not
    for i in range(10):
        await store.add_alias(f"l{i}@example.test", [f"l{i + 1}@example.test"])
    await store.add_alias("l10@example.test", ["a@example.test"])
    assert (await store.resolve("l1@example.test")).users == (u["a"],)
    assert not (await store.resolve("l0@example.test")).found


async def test_addresses_of(store):
    u = await _setup_resolve(store)
    await store.add_alias("solo@example.test", ["a@example.test"])
    await store.add_alias("via@example.test", ["solo@example.test"])
    await store.add_alias("shared@example.test", ["a@example.test", "b@example.test"])
    await store.add_alias("fwd@example.test", ["a@example.test", "x@remote.test"])
    await store.add_alias("@example.test", ["a@example.test"])
    assert await store.addresses_of(u["a"].id) == [
        "a@example.test",
        "solo@example.test",
        "via@example.test",
    ]
    assert await store.addresses_of(u["b"].id) == ["b@example.test"]


async def test_delete_user_frees_blobs(store):
    await store.add_domain("example.test")
    a = await store.add_user("a@example.test", "h")
    b = await store.add_user("b@example.test", "h")
    only_a = await store.deliver(new_message(b"only a\r\n"), [DeliveryTarget(a.id)])
    both = await store.deliver(
        new_message(b"both\r\n"), [DeliveryTarget(a.id), DeliveryTarget(b.id)]
    )
    await store.delete_user("a@example.test")
    with pytest.raises(NotFound):
        await store.read_blob(only_a.blob_id)
    assert await store.read_blob(both.blob_id) == b"both\r\n"
    assert (await store.resolve("a@example.test")).found is False


async def test_user_admin_and_disabled_flags(store):
    await store.add_domain("example.test")
    u = await store.add_user("a@example.test", "h")
    assert (u.admin, u.disabled) == (False, False)
    await store.set_admin("A@Example.TEST", True)
    got = await store.get_user("a@example.test")
    assert got is not None
    assert (got.admin, got.disabled) == (True, False)
    await store.set_disabled("a@example.test", True)
    got = await store.get_user_by_id(u.id)
    assert got is not None
    assert (got.admin, got.disabled) == (True, True)
    [listed] = await store.list_users("example.test")
    assert (listed.admin, listed.disabled) == (True, True)
    await store.set_admin("a@example.test", False)
    await store.set_disabled("a@example.test", False)
    got = await store.get_user("a@example.test")
    assert got is not None
    assert (got.admin, got.disabled) == (False, False)
    with pytest.raises(NotFound):
        await store.set_admin("nobody@example.test", True)
    with pytest.raises(NotFound):
        await store.set_disabled("nobody@example.test", True)
