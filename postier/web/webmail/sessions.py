"""Webmail sessions: random ids in a cookie, kept in this process's memory.

Rules:
- An id is 256 random bits (`secrets`), made here only: an id a client sends that
  is not in the table is never adopted, and login always makes a new one (the
  pre-login id is dropped), so a session id planted before login is useless after.
- Every session carries its own CSRF token; a state-changing request must send it
  back in the form (`csrf`), compared in constant time.
- Anonymous sessions (the login form's CSRF token) and logged-in ones are kept in
  separate tables, each bounded (least recently used dropped first): a flood of
  login-page visits can evict other visitors' login forms, never a logged-in user.
- A session ends after `IDLE` seconds without a request, or `MAX_AGE` after login.
- Memory only: a restart logs everyone out (a session is cheap to make again).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from postier.store.models import UserId

COOKIE = "postier_session"
#: seconds without a request before a session ends
IDLE = 8 * 3600.0
#: seconds after login before a session ends whatever its use
MAX_AGE = 7 * 24 * 3600.0
MAX_ANONYMOUS = 10_000
MAX_LOGGED_IN = 50_000


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    last_seen: float
    user_id: UserId | None = None
    address: str = ""
    #: the account had the admin role at login (or at its last admin page): the
    #: pages show an "Admin" link; the admin pages check the store themselves
    admin: bool = False

    @property
    def logged_in(self) -> bool:
        return self.user_id is not None

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._anonymous: OrderedDict[str, Session] = OrderedDict()
        self._logged_in: OrderedDict[str, Session] = OrderedDict()

    def get(self, sid: str | None) -> Session | None:
        """The live session of id `sid`, refreshed; None if unknown or expired."""
        if not sid:
            return None
        now = self._clock()
        for table in (self._logged_in, self._anonymous):
            s = table.get(sid)
            if s is None:
                continue
            if now - s.last_seen > IDLE or (s.logged_in and now - s.created > MAX_AGE):
                del table[sid]
                return None
            s.last_seen = now
            table.move_to_end(sid)
            return s
        return None

    def alive(self, session: Session) -> bool:
        """Whether `session` still lives, without counting this as a use: a live
        update stream open in a forgotten tab does not keep a session from idling
        out, and a logout ends the stream."""
        now = self._clock()
        if self._logged_in.get(session.id) is not session:
            return False
        return now - session.last_seen <= IDLE and now - session.created <= MAX_AGE

    def anonymous(self) -> Session:
        """A new pre-login session (it holds the login form's CSRF token)."""
        s = self._new()
        self._add(self._anonymous, s, MAX_ANONYMOUS)
        return s

    def login(
        self, old: Session | None, user_id: UserId, address: str, admin: bool = False
    ) -> Session:
        """A new logged-in session; `old` (the pre-login one) is dropped."""
        if old is not None:
            self.drop(old)
        s = self._new()
        s.user_id = user_id
        s.address = address
        s.admin = admin
        self._add(self._logged_in, s, MAX_LOGGED_IN)
        return s

    def drop(self, session: Session) -> None:
        self._anonymous.pop(session.id, None)
        self._logged_in.pop(session.id, None)

    def __len__(self) -> int:
        return len(self._anonymous) + len(self._logged_in)

    def _new(self) -> Session:
        now = self._clock()
        return Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
        )

    @staticmethod
    def _add(table: OrderedDict[str, Session], s: Session, limit: int) -> None:
        table[s.id] = s
        while len(table) > limit:
            table.popitem(last=False)
