"""Webmail sessions: ids made here only, a new one at login, bounded tables, expiry."""

from __future__ import annotations

import pytest

from postier.store.models import UserId
from postier.web.webmail import sessions as sessions_module
from postier.web.webmail.sessions import IDLE, MAX_AGE, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_makes_a_new_id_and_drops_the_old() -> None:
    s = Sessions()
    anon = s.anonymous()
    assert s.get(anon.id) is anon and not anon.logged_in
    user = s.login(anon, UserId(7), "a@example.test")
    assert user.id != anon.id and user.csrf != anon.csrf
    assert s.get(anon.id) is None
    assert s.get(user.id) is user and user.logged_in
    assert s.get("made-up-by-a-client") is None
    assert s.get("") is None and s.get(None) is None


def test_csrf_check() -> None:
    sess = Sessions().anonymous()
    assert sess.csrf_ok(sess.csrf)
    assert not sess.csrf_ok(None)
    assert not sess.csrf_ok("")
    assert not sess.csrf_ok(sess.csrf + "x")


def test_idle_and_absolute_expiry() -> None:
    clock = Clock()
    s = Sessions(clock)
    user = s.login(None, UserId(1), "a@example.test")
    clock.now += IDLE - 1
    assert s.get(user.id) is user  # use refreshes the idle timer
    clock.now += IDLE + 1
    assert s.get(user.id) is None
    user = s.login(None, UserId(1), "a@example.test")
    for _ in range(int(MAX_AGE // (IDLE / 2)) + 1):
        clock.now += IDLE / 2
        s.get(user.id)
    assert s.get(user.id) is None  # kept busy, it still ends at MAX_AGE


def test_anonymous_flood_evicts_no_logged_in_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "MAX_ANONYMOUS", 5)
    s = Sessions()
    user = s.login(None, UserId(1), "a@example.test")
    first = s.anonymous()
    for _ in range(20):
        s.anonymous()
    assert len(s) == 6
    assert s.get(first.id) is None
    assert s.get(user.id) is user


def test_alive_does_not_refresh_and_ends_with_logout() -> None:
    clock = Clock()
    s = Sessions(clock)
    user = s.login(None, UserId(1), "a@example.test")
    assert s.alive(user)
    clock.now += IDLE - 1
    assert s.alive(user)  # a live update stream asking...
    clock.now += 2
    assert not s.alive(user)  # ...did not keep the session from idling out
    other = s.login(None, UserId(1), "a@example.test")
    s.drop(other)
    assert not s.alive(other)
    assert not s.alive(s.anonymous())
