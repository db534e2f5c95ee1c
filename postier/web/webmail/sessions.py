"""Webmail sessions: random ids in a cookie, logged-in sessions kept in the store,
so that every worker process (and every node over PostgreSQL) serves every session.

Rules:
- A logged-in session's id is 256 random bits (`secrets`), made here only: an id a
  client sends that the store does not hold is never adopted, and login always
  makes a new one (the pre-login token is dropped), so an id planted before login
  is useless after.
- The store keeps the SHA-256 of the id, never the id: a copy of the database (a
  backup) logs nobody in.
- Every logged-in session carries its own random CSRF token; a state-changing
  request must send it back in the form (`csrf`), compared in constant time.
- Before login (the login form's CSRF token) nothing is stored: the cookie is a
  token we made, ``a.<nonce>.<issued>.<mac>``, signed with the server's secret
  (`Store.server_secret`: the same in every process and node), and the form's
  token is a MAC of that cookie. A cookie we did not sign, or older than `IDLE`,
  is no session; a flood of login-page visits costs neither memory nor rows.
- A session ends after `IDLE` seconds without a request, or `MAX_AGE` after login.
  The store is written at login, at logout, and at most once per `TOUCH` seconds
  of a session's use (its last use is known to within `TOUCH`); reading a
  session is one look-up by key.
- Logout deletes the row: the next request to any worker finds nothing, and an
  open live-update stream ends at its next check (`alive`). A disabled account's
  sessions are deleted with the change (`Store.set_disabled`), a deleted one's
  with the account, and the look-up never returns a disabled account's.
- The admin flag is the account's role as the store has it now.
- At most `PER_USER` sessions per account (a login beyond it ends the least
  recently used); sessions idle past `IDLE` are swept at every login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from postier.store.api import Store
from postier.store.models import UserId

COOKIE = "postier_session"
#: seconds without a request before a session ends
IDLE = 8 * 3600.0
#: seconds after login before a session ends whatever its use
MAX_AGE = 7 * 24 * 3600.0
#: seconds between two writes of a session's last use
TOUCH = 60.0
#: logged-in sessions one account may have at once
PER_USER = 100
#: the name of the secret in the store (`Store.server_secret`)
SECRET_NAME = "web"  # noqa: S105  (the name of a secret, not one)
#: an anonymous token older than this is replaced when the login page is shown
#: again, so a form left open for a while still works
RENEW_ANONYMOUS = IDLE / 2
_ID_LEN = 43  # token_urlsafe(32)


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    last_seen: float
    user_id: UserId | None = None
    address: str = ""
    #: the account has the admin role: the pages show an "Admin" link; the admin
    #: pages check the store themselves
    admin: bool = False

    @property
    def logged_in(self) -> bool:
        return self.user_id is not None

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


def _key(sid: str) -> bytes:
    """What the store keeps of an id."""
    return hashlib.sha256(sid.encode()).digest()


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _mac(secret: bytes, purpose: bytes, data: str) -> str:
    digest = hmac.new(secret, purpose + b"\0" + data.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Sessions:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._secret: bytes | None = None

    async def secret(self, purpose: bytes) -> bytes:
        """A key of this server's for `purpose` (signing URLs, tokens), the same in
        every process and node."""
        if self._secret is None:
            self._secret = await self._store.server_secret(SECRET_NAME)
        return hmac.new(self._secret, purpose, hashlib.sha256).digest()

    async def get(self, sid: str | None) -> Session | None:
        """The live session of id `sid`, its use recorded; None if unknown or
        expired."""
        if not sid:
            return None
        if sid.startswith("a."):
            return await self._anonymous_of(sid)
        if len(sid) != _ID_LEN:
            return None
        key = _key(sid)
        row = await self._store.web_session_get(key)
        if row is None:
            return None
        now = self._clock()
        created, last = row.created.timestamp(), row.last_seen.timestamp()
        if now - last > IDLE or now - created > MAX_AGE:
            await self._store.web_session_delete(key)
            return None
        if now - last >= TOUCH:
            await self._store.web_session_touch(key, _when(now))
            last = now
        return Session(sid, row.csrf, created, last, row.user_id, row.address, row.admin)

    async def alive(self, session: Session) -> bool:
        """Whether `session` still lives, without counting this as a use: a live
        update stream open in a forgotten tab does not keep a session from idling
        out, and a logout (in any worker) ends the stream."""
        if not session.logged_in:
            return False
        row = await self._store.web_session_get(_key(session.id))
        if row is None or row.user_id != session.user_id:
            return False
        now = self._clock()
        return now - row.last_seen.timestamp() <= IDLE and now - row.created.timestamp() <= MAX_AGE

    async def anonymous(self) -> Session:
        """A new pre-login session (it holds the login form's CSRF token); nothing
        is stored."""
        now = self._clock()
        body = f"a.{secrets.token_urlsafe(16)}.{int(now)}"
        sid = f"{body}.{_mac(await self.secret(b'anonymous'), b'id', body)[:22]}"
        return await self._anonymous_of(sid)  # type: ignore[return-value]

    async def _anonymous_of(self, sid: str) -> Session | None:
        parts = sid.split(".")
        if len(parts) != 4 or len(sid) > 100 or not parts[2].isdigit():
            return None
        body = ".".join(parts[:3])
        secret = await self.secret(b"anonymous")
        if not hmac.compare_digest(parts[3].encode(), _mac(secret, b"id", body)[:22].encode()):
            return None
        issued = int(parts[2])
        now = self._clock()
        if not -60 <= now - issued <= IDLE:
            return None
        return Session(sid, _mac(secret, b"csrf", sid), float(issued), now)

    def renew(self, session: Session) -> bool:
        """Whether an anonymous `session` is old enough to be replaced."""
        return self._clock() - session.created > RENEW_ANONYMOUS

    async def login(
        self, old: Session | None, user_id: UserId, address: str, admin: bool = False
    ) -> Session:
        """A new logged-in session; `old` (the pre-login one) is dropped."""
        if old is not None:
            await self.drop(old)
        now = self._clock()
        s = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
            user_id=user_id,
            address=address,
            admin=admin,
        )
        await self._store.web_session_add(
            _key(s.id),
            user_id,
            s.csrf,
            _when(now),
            keep=PER_USER,
            idle_before=_when(now - IDLE),
        )
        return s

    async def drop(self, session: Session) -> None:
        """End `session` in every process (an anonymous one has nothing to end:
        the caller removes the cookie)."""
        if session.logged_in:
            await self._store.web_session_delete(_key(session.id))
