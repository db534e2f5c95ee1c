"""URLAUTH (RFC 4467) signing and resolving against a real store: who may resolve
which access identifier, expiry, RESETKEY, stale and foreign URLs, sections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.auth.urlauth import Failure, Requester, UrlAuth, UrlAuthError, token
from postier.store.models import User
from postier.store.sqlite import SqliteStore
from tests.support.messages import new_message

HOST = "mail.example.test"
MSG = (
    b"From: a@example.test\r\nSubject: draft\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b\r\n"
    b"Content-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n"
)
A = "alice%40example.test"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "data")
    await s.open()
    await s.add_domain("example.test")
    yield s
    await s.close()


@pytest.fixture
async def users(store: SqliteStore) -> tuple[User, User]:
    return (
        await store.add_user("alice@example.test", "h"),
        await store.add_user("bob@example.test", "h"),
    )


@pytest.fixture
async def draft(store: SqliteStore, users: tuple[User, User]) -> tuple[int, int]:
    box = await store.get_mailbox(users[0].id, "Drafts")
    assert box is not None
    m = await store.append(box.id, new_message(MSG))
    return box.uidvalidity, m.uid


def service(store: SqliteStore, **kw: bool) -> UrlAuth:
    return UrlAuth(store, HOST, now=lambda: NOW, **kw)


async def refused(coro: object, failure: Failure, text: str) -> None:
    with pytest.raises(UrlAuthError) as info:
        await coro  # type: ignore[misc]
    assert (info.value.failure, info.value.text) == (failure, text)


async def test_generate_and_fetch(store, users, draft) -> None:
    alice, bob = users
    uv, uid = draft
    u = service(store)
    rump = f"imap://{A}@{HOST}/Drafts;UIDVALIDITY={uv}/;UID={uid};URLAUTH=submit+{A}"
    url = await u.generate(alice, rump, "INTERNAL")
    key = await store.access_key((await store.get_mailbox(alice.id, "Drafts")).id)
    assert key is not None and len(key) == 32
    assert url == f"{rump}:INTERNAL:{token(key, rump)}"
    assert len(url.rsplit(":", 1)[1]) == 64
    # the same rump signs the same way; the submission server acting for alice resolves it
    assert await u.generate(alice, rump, "internal") == f"{rump}:internal:{token(key, rump)}"
    assert await u.fetch(url, Requester(alice, submit=True)) == MSG
    # ... nobody else does (RFC 5092 §6.1.2)
    denied = "Access submit+alice%40example.test is not granted to you"
    await refused(u.fetch(url, Requester(alice)), Failure.DENIED, denied)
    await refused(u.fetch(url, Requester(bob, submit=True)), Failure.DENIED, denied)
    await refused(u.fetch(url, Requester(None)), Failure.DENIED, denied)


async def test_access_identifiers(store, users, draft) -> None:
    alice, bob = users
    _, uid = draft
    u = service(store)
    base = f"imap://{A}@{HOST}/Drafts/;UID={uid}"
    user_bob = await u.generate(alice, f"{base};URLAUTH=user+bob%40example.test", "INTERNAL")
    assert await u.fetch(user_bob, Requester(bob)) == MSG
    for who in (Requester(alice), Requester(bob, submit=True), Requester(None)):
        with pytest.raises(UrlAuthError):
            await u.fetch(user_bob, who)
    authuser = await u.generate(alice, f"{base};URLAUTH=authuser", "INTERNAL")
    assert await u.fetch(authuser, Requester(bob)) == MSG
    await refused(
        u.fetch(authuser, Requester(None)),
        Failure.DENIED,
        "Access authuser is not granted to you",
    )
    anon = f"{base};URLAUTH=anonymous"
    await refused(
        u.generate(alice, anon, "INTERNAL"),
        Failure.DENIED,
        "Anonymous URLAUTH is not allowed here",
    )
    open_ = service(store, allow_anonymous=True)
    signed = await open_.generate(alice, anon, "INTERNAL")
    assert await open_.fetch(signed, Requester(None)) == MSG
    await refused(
        u.fetch(signed, Requester(bob)), Failure.DENIED, "Access anonymous is not granted to you"
    )


async def test_sections_and_partial(store, users, draft) -> None:
    alice, _ = users
    _, uid = draft
    u = service(store)
    base = f"imap://{A}@{HOST}/Drafts/;UID={uid}"

    async def get(tail: str) -> bytes:
        url = await u.generate(alice, f"{base}{tail};URLAUTH=authuser", "INTERNAL")
        return await u.fetch(url, Requester(alice))

    assert await get("/;SECTION=2") == b"second part"
    assert await get("/;SECTION=1/;PARTIAL=2.3") == b"rst"
    assert await get("/;SECTION=HEADER.FIELDS%20(Subject)") == b"Subject: draft\r\n\r\n"
    url = await u.generate(alice, f"{base}/;SECTION=9;URLAUTH=authuser", "INTERNAL")
    await refused(u.fetch(url, Requester(alice)), Failure.MISSING, "No such part")


async def test_refusals(store, users, draft) -> None:
    alice, bob = users
    uv, uid = draft
    u = service(store)
    base = f"imap://{A}@{HOST}/Drafts/;UID={uid}"
    rump = f"{base};URLAUTH=authuser"
    url = await u.generate(alice, rump, "INTERNAL")
    await refused(
        u.generate(alice, rump, "HMAC"), Failure.INVALID, "Unsupported URLAUTH mechanism HMAC"
    )
    await refused(
        u.generate(bob, rump, "INTERNAL"),
        Failure.DENIED,
        "Only URLs of your own mailboxes can be signed",
    )
    await refused(
        u.generate(alice, url, "INTERNAL"),
        Failure.INVALID,
        "Not a rump URL: it carries a token already",
    )
    await refused(
        u.generate(alice, f"imap://{A}@{HOST}/Drafts;URLAUTH=authuser", "INTERNAL"),
        Failure.INVALID,
        "Invalid URL: Invalid URL",
    )
    await refused(
        u.generate(alice, f"imap://{A}@{HOST}/Drafts", "INTERNAL"),
        Failure.INVALID,
        "Not a URLAUTH URL of a message",
    )
    await refused(
        u.generate(alice, rump.replace(HOST, "other.test"), "INTERNAL"),
        Failure.FOREIGN,
        "The URL names another server",
    )
    await refused(
        u.generate(alice, f"imap://{A}@{HOST}/Nope/;UID=1;URLAUTH=authuser", "INTERNAL"),
        Failure.MISSING,
        "No such mailbox",
    )
    await refused(
        u.generate(alice, f"imap://{A}@{HOST}/Drafts;UIDVALIDITY={uv + 1}/;UID={uid};"
                   "URLAUTH=authuser", "INTERNAL"),
        Failure.MISSING,
        "No such mailbox",
    )  # fmt: skip
    await refused(
        u.generate(alice, f"{base}9;URLAUTH=authuser", "INTERNAL"),
        Failure.MISSING,
        "No such message",
    )
    expired = f"{base};EXPIRE=2026-03-01T11:59:59Z;URLAUTH=authuser"
    await refused(u.generate(alice, expired, "INTERNAL"), Failure.DENIED, "The URL has expired")
    soon = f"{base};EXPIRE=2026-03-01T12:00:01Z;URLAUTH=authuser"
    later = await u.generate(alice, soon, "INTERNAL")
    assert await u.fetch(later, Requester(alice)) == MSG
    tomorrow = UrlAuth(store, HOST, now=lambda: NOW.replace(day=2))
    await refused(tomorrow.fetch(later, Requester(alice)), Failure.DENIED, "The URL has expired")
    # an access user that is no UTF-8 matches nobody
    odd = await u.generate(alice, f"{base};URLAUTH=user+%FF", "INTERNAL")
    await refused(
        u.fetch(odd, Requester(bob)), Failure.DENIED, "Access user+%FF is not granted to you"
    )
    # a wrong token, a token for another URL, a URL without a token
    bad = url[:-1] + ("0" if url[-1] != "0" else "1")
    await refused(u.fetch(bad, Requester(alice)), Failure.DENIED, "URLAUTH verification failed")
    moved = url.replace(f";UID={uid}", ";UID=99")
    await refused(u.fetch(moved, Requester(alice)), Failure.DENIED, "URLAUTH verification failed")
    await refused(
        u.fetch(rump, Requester(alice)), Failure.INVALID, "The URL carries no URLAUTH token"
    )
    # the mailbox renamed away: the name no longer resolves, as if it never existed
    await store.rename_mailbox(alice.id, "Drafts", "Old")
    await refused(u.fetch(url, Requester(alice)), Failure.DENIED, "URLAUTH verification failed")
    await store.rename_mailbox(alice.id, "Old", "Drafts")
    assert await u.fetch(url, Requester(alice)) == MSG
    # RESETKEY invalidates every URL signed before
    await u.reset(alice)
    await refused(u.fetch(url, Requester(alice)), Failure.DENIED, "URLAUTH verification failed")
    again = await u.generate(alice, rump, "INTERNAL")
    assert again != url
    drafts = await store.get_mailbox(alice.id, "Drafts")
    await u.reset(alice, drafts)
    await refused(u.fetch(again, Requester(alice)), Failure.DENIED, "URLAUTH verification failed")
    # the message expunged
    third = await u.generate(alice, rump, "INTERNAL")
    await store.expunge(drafts.id, [uid], flagged_only=False)
    await refused(u.fetch(third, Requester(alice)), Failure.MISSING, "The message is gone")
