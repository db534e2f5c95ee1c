"""Interop with a real Postfix (Debian package) on its own loopback address:
postier delivers to it through MX routing, and receives mail relayed by it."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from tests.conftest import need_root, need_tool
from tests.integration.test_outbound import World, submit, wait_for
from tests.integration.test_outbound import world as world
from tests.support.postfix import PostfixInstance

pytestmark = pytest.mark.tools


@pytest.fixture
def postfix(world: World) -> Iterator[PostfixInstance]:
    need_tool("postfix")
    need_root("Postfix's daemons start as root and drop to the postfix user")
    pf = PostfixInstance(
        "127.0.0.9", world.port, "pf.test", f"[127.0.0.2]:{world.port}", users=("paul@pf.test",)
    ).start()
    world.dns.set("pf.test", {"MX": [(10, "mx.pf.test")]})
    world.dns.set("mx.pf.test", {"A": ["127.0.0.9"]})
    try:
        yield pf
    finally:
        pf.stop()


def test_postier_to_postfix_and_back(world: World, postfix: PostfixInstance) -> None:
    a = world.postier("a", "127.0.0.2", "a.test")
    a.add_user("alice@a.test")
    submit(a, "alice@a.test", ["paul@pf.test"], body="to postfix", subject="interop out")
    [got] = wait_for(lambda: postfix.maildir("paul"), timeout=20)
    assert b"Subject: interop out" in got
    assert b"to postfix" in got
    assert b"Return-Path: <alice@a.test>" in got  # Postfix's, ours was not transmitted
    assert got.count(b"Return-Path:") == 1
    assert "status=sent (delivered to maildir)" in postfix.log()
    # and back: Postfix relays to postier's MX
    with smtplib.SMTP("127.0.0.9", world.port, timeout=10) as c:
        c.sendmail(
            "paul@pf.test",
            ["alice@a.test"],
            "From: paul@pf.test\r\nSubject: interop in\r\n\r\nfrom postfix\r\n",
        )

    def alice() -> list[bytes]:
        async def go() -> list[bytes]:
            user = await a.store.get_user("alice@a.test")
            mb = await a.store.get_mailbox(user.id, "INBOX")
            return [await a.store.read_blob(m.blob_id) for m in await a.store.list_messages(mb.id)]

        return a.call(go())  # type: ignore[no-any-return]

    [back] = wait_for(alice, timeout=20)
    assert b"Subject: interop in" in back
    assert "relay=127.0.0.2[127.0.0.2]" in postfix.log()
