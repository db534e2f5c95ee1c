"""The webmail's pages: login and logout, a folder's message list, the reader.

Rules:
- Not logged in, `/` is the login page; every other webmail page sends the
  browser there. Login uses the login service every protocol uses
  (`AuthService.authenticate`, protocol "web"), so its failure delays and
  lockouts are shared with IMAP, SMTP and POP3.
- A state-changing request is a POST with an urlencoded form carrying the
  session's CSRF token; without it, or from another origin (an `Origin`
  header that is not ours), it is refused with 403 before anything happens.
  The cookie is HttpOnly, SameSite=Strict, and Secure when served over HTTPS.
- Mailboxes and messages are addressed by the store's ids; one that is not the
  logged-in user's is "not found", the same answer as one that does not exist.
- The store is read through its async API; parsing, sanitising and sorting run
  in this module's thread pool, never on the event loop.
- Opening a message marks it \\Seen (as IMAP's FETCH BODY[] does).
- Folders: create, rename and delete the user's own; INBOX and the special-use
  folders (Sent, Drafts, Junk, Trash, Archive) stay. The store checks names.
- Delete moves a message to Trash, and deletes it for good in Trash; Move,
  Flag/Unflag and Mark unread change one message, as IMAP's MOVE and STORE do.
  Junk and Not junk move between Junk and Inbox; every move into or out of
  Junk teaches the user's classifier (`filters.bayes.on_move`).
- Send goes through the server's one submission pipeline (`App.submission`,
  the rules of port 587); the copy in Sent is stored only once it accepted.
- Message bytes never come back as a page of ours: the HTML part is served
  sanitised to a sandboxed frame with `default-src 'none'`; raw source is
  text/plain and attachments are downloads (application/octet-stream), both
  with `nosniff` and a sandbox CSP.
"""

from __future__ import annotations

import asyncio
import functools
import math
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from postier.auth.service import AuthOutcome
from postier.filters import bayes
from postier.mail.address import Address
from postier.mime import summarize
from postier.smtp.submission import Refused
from postier.store.api import FlagMode
from postier.store.errors import StoreError
from postier.store.models import Mailbox, MailboxId, Message, NewMessage, Uid, UserId
from postier.web.webmail import render
from postier.web.webmail.compose import ComposeError, Draft, build, reply_draft
from postier.web.webmail.sessions import COOKIE, Session, Sessions

if TYPE_CHECKING:
    from postier.server.app import App

T = TypeVar("T")

WEB_DIR = Path(__file__).resolve().parent.parent
#: messages per page of a folder
PAGE_SIZE = 50
#: octets a form may have (login, logout: a few hundred)
MAX_FORM = 64 * 1024
#: octets the compose form may have (percent-encoded: a text of `compose.MAX_BODY`
#: characters fits while most of them are ASCII; beyond, the form is refused)
MAX_COMPOSE_FORM = 8 * 1024 * 1024
MAX_FIELDS = 32

#: the pages' own policy: no script at all, styles and frames from here only
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: the message body's frame: nothing loads, nothing runs (inline style is data)
FRAME_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
#: raw source and attachments: a sandbox in case a browser shows one inline
DOWNLOAD_CSP = "default-src 'none'; sandbox"

#: what a folder page says after an action sent the browser there (`?done=`)
NOTICES = {
    "sent": "Message sent.",
    "trashed": "Message moved to Trash.",
    "deleted": "Message deleted.",
    "moved": "Message moved.",
    "unread": "Marked as unread.",
    "junk": "Moved to Junk. Your filter learns from it.",
    "notjunk": "Moved to Inbox. Your filter learns from it.",
    "created": "Folder created.",
    "renamed": "Folder renamed.",
    "removed": "Folder deleted.",
}

#: display order of the special folders; the rest follow by name
FOLDER_ORDER = {"INBOX": 0, "Drafts": 1, "Sent": 2, "Archive": 3, "Junk": 4, "Trash": 5}

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="postier-web")


async def _in_pool(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, *args))


def _filesize(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


@dataclass(frozen=True)
class Folder:
    id: MailboxId
    name: str
    label: str
    unseen: int
    current: bool = False


@dataclass(frozen=True)
class Managed:
    id: MailboxId
    name: str
    label: str
    messages: int
    unseen: int
    editable: bool


def _editable(mb: Mailbox) -> bool:
    """A folder the user may rename or delete: not INBOX, not special-use."""
    return mb.special_use is None and mb.name.upper() != "INBOX"


@dataclass(frozen=True)
class Row:
    uid: Uid
    subject: str
    from_: str
    preview: str
    when: str
    iso: str
    unread: bool
    flagged: bool


def _label(name: str) -> str:
    return "Inbox" if name.upper() == "INBOX" else name


def _folders(boxes: list[Mailbox], current: MailboxId | None) -> list[Folder]:
    ordered = sorted(boxes, key=lambda b: (FOLDER_ORDER.get(b.name, 99), b.name.casefold()))
    return [Folder(b.id, b.name, _label(b.name), b.unseen, b.id == current) for b in ordered]


def _is_junk(mb: Mailbox) -> bool:
    return (mb.special_use or "").lower() == "\\junk" or mb.name.lower() in ("junk", "spam")


def _when(m: Message) -> datetime:
    d = m.summary.date or m.internal_date
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def _page(msgs: list[Message], page: int, newest_first: bool) -> list[Row]:
    """One page of rows, sorted by date (the Date: header, else arrival)."""
    ordered = sorted(msgs, key=lambda m: (_when(m), m.uid), reverse=newest_first)
    rows = []
    for m in ordered[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]:
        d = _when(m)
        rows.append(
            Row(
                uid=m.uid,
                subject=m.summary.subject or "(no subject)",
                from_=m.summary.from_,
                preview=m.summary.preview,
                when=d.strftime("%Y-%m-%d %H:%M"),
                iso=d.isoformat(),
                unread="\\Seen" not in m.flags,
                flagged="\\Flagged" in m.flags,
            )
        )
    return rows


def _int(value: str | None, default: int) -> int:
    if value is None or not value.isdigit() or len(value) > 9:
        return default
    return int(value)


def _disposition(filename: str) -> str:
    """Content-Disposition: attachment with an ASCII fallback and RFC 6266 filename*."""
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename
    )
    quoted = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{ascii_name or 'attachment'}\"; filename*=UTF-8''{quoted}"


class Webmail:
    def __init__(self, app: App) -> None:
        self.store = app.store
        self.auth = app.auth
        self.submission = app.submission
        self.hostname = app.settings.server.hostname
        self.sessions = Sessions()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["filesize"] = _filesize

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/compose", self.compose, methods=["GET", "POST"]),
            Route("/folders", self.folders),
            Route("/folders/create", self.folder_create, methods=["POST"]),
            Route("/folders/{mid:int}/rename", self.folder_rename, methods=["POST"]),
            Route("/folders/{mid:int}/delete", self.folder_delete, methods=["POST"]),
            Route("/folder/{mid:int}", self.folder),
            Route("/folder/{mid:int}/{uid:int}", self.message),
            Route("/folder/{mid:int}/{uid:int}/html", self.message_html),
            Route("/folder/{mid:int}/{uid:int}/raw", self.message_raw),
            Route("/folder/{mid:int}/{uid:int}/part/{index:int}", self.message_part),
            Route("/folder/{mid:int}/{uid:int}/reply", self.reply),
            Route("/folder/{mid:int}/{uid:int}/reply-all", self.reply),
            Route("/folder/{mid:int}/{uid:int}/delete", self.delete, methods=["POST"]),
            Route("/folder/{mid:int}/{uid:int}/move", self.move, methods=["POST"]),
            Route("/folder/{mid:int}/{uid:int}/mark", self.mark, methods=["POST"]),
            Route("/folder/{mid:int}/{uid:int}/junk", self.junk, methods=["POST"]),
            Mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static"),
        ]

    # --- helpers -------------------------------------------------------------
    def _page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})

    @staticmethod
    def _set_cookie(request: Request, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            session.id,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _user(self, request: Request) -> Session | None:
        s = self._session(request)
        return s if s is not None and s.logged_in else None

    @staticmethod
    def _to_login() -> Response:
        return RedirectResponse("/", 303)

    def _refused(self, why: str) -> Response:
        return self._page("error.html", 403, title="Request refused", detail=why)

    def _not_found(self) -> Response:
        return self._page(
            "error.html", 404, title="Not found", detail="There is no such folder or message."
        )

    @staticmethod
    def _same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return True  # SameSite=Strict and the token still apply
        return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"

    @staticmethod
    async def _form(request: Request, limit: int = MAX_FORM) -> dict[str, str] | None:
        """The urlencoded form of a POST, None if it is another type or too big."""
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("ascii", "replace"),
                keep_blank_values=True,
                max_num_fields=MAX_FIELDS,
            )
        except ValueError:
            return None
        return dict(pairs)

    async def _checked_form(
        self, request: Request, session: Session | None, limit: int = MAX_FORM
    ) -> dict[str, str] | None:
        """The form when it carries `session`'s CSRF token from our origin, else None."""
        form = await self._form(request, limit)
        if form is None or session is None or not self._same_origin(request):
            return None
        return form if session.csrf_ok(form.get("csrf")) else None

    async def _mailbox(self, s: Session, mid: int) -> Mailbox | None:
        mb = await self.store.get_mailbox_by_id(MailboxId(mid))
        return mb if mb is not None and mb.user_id == s.user_id else None

    async def _frame(self, s: Session, current: MailboxId | None) -> dict[str, Any]:
        assert s.user_id is not None
        boxes = await self.store.list_mailboxes(s.user_id)
        return {"address": s.address, "csrf": s.csrf, "folders": _folders(boxes, current)}

    def _login_page(
        self, request: Request, session: Session | None, status: int = 200, **context: Any
    ) -> Response:
        if session is None or session.logged_in:
            session = self.sessions.anonymous()
        context.setdefault("error", "")
        context.setdefault("email", "")
        resp = self._page(
            "login.html", status, hostname=self.hostname, csrf=session.csrf, **context
        )
        self._set_cookie(request, resp, session)
        return resp

    # --- login and logout ---------------------------------------------------
    async def index(self, request: Request) -> Response:
        s = self._session(request)
        if s is None or not s.logged_in:
            return self._login_page(request, s)
        assert s.user_id is not None
        inbox = await self.store.get_mailbox(s.user_id, "INBOX")
        if inbox is None:
            return self._not_found()
        return RedirectResponse(f"/folder/{inbox.id}", 303)

    async def login(self, request: Request) -> Response:
        s = self._session(request)
        if s is not None and s.logged_in:
            s = None  # a new login replaces the session whatever it was
        form = await self._checked_form(request, s)
        if form is None:
            return self._login_page(
                request, None, 403, error="The login form expired. Please try again."
            )
        email = form.get("email", "")[:320]
        client = request.client.host if request.client else ""
        result = await self.auth.authenticate(email, form.get("password", ""), client, "web")
        if result.ok and result.user is not None:
            new = self.sessions.login(s, result.user.id, result.user.address)
            resp = RedirectResponse("/", 303)
            self._set_cookie(request, resp, new)
            return resp
        if result.outcome is AuthOutcome.LOCKED:
            minutes = max(1, math.ceil(result.retry_after / 60))
            error = f"Too many failed logins. Try again in {minutes} minute{'s' * (minutes > 1)}."
            return self._login_page(request, s, 429, error=error, email=email)
        return self._login_page(request, s, 401, error="Wrong email or password.", email=email)

    async def logout(self, request: Request) -> Response:
        s = self._user(request)
        if s is None:
            return self._to_login()
        if await self._checked_form(request, s) is None:
            return self._refused("The form was not sent from this page. Reload and try again.")
        self.sessions.drop(s)
        resp = RedirectResponse("/", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # --- reading --------------------------------------------------------------
    async def folder(self, request: Request) -> Response:
        s = self._user(request)
        if s is None:
            return self._to_login()
        mb = await self._mailbox(s, request.path_params["mid"])
        if mb is None:
            return self._not_found()
        newest_first = request.query_params.get("order", "newest") != "oldest"
        msgs = await self.store.list_messages(mb.id, structures=False)
        pages = max(1, math.ceil(len(msgs) / PAGE_SIZE))
        page = min(max(1, _int(request.query_params.get("page"), 1)), pages)
        rows = await _in_pool(_page, msgs, page, newest_first)
        frame = await self._frame(s, mb.id)
        folder = next(f for f in frame["folders"] if f.id == mb.id)
        return self._page(
            "folder.html",
            folder=folder,
            rows=rows,
            total=len(msgs),
            page=page,
            pages=pages,
            newest_first=newest_first,
            order="newest" if newest_first else "oldest",
            notice=NOTICES.get(request.query_params.get("done", ""), ""),
            **frame,
        )

    async def _load(self, request: Request) -> tuple[Session, Mailbox, Message, bytes] | Response:
        s = self._user(request)
        if s is None:
            return self._to_login()
        mb = await self._mailbox(s, request.path_params["mid"])
        if mb is None:
            return self._not_found()
        m = await self.store.get_message(mb.id, Uid(request.path_params["uid"]))
        if m is None:
            return self._not_found()
        data = await self.store.read_blob(m.blob_id)
        return s, mb, m, data

    async def message(self, request: Request) -> Response:
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        s, mb, m, data = loaded
        msg = await _in_pool(render.render, data)
        if "\\Seen" not in m.flags:
            await self.store.store_flags(mb.id, [m.uid], frozenset({"\\Seen"}), "add")
        frame = await self._frame(s, mb.id)
        folder = next(f for f in frame["folders"] if f.id == mb.id)
        return self._page(
            "message.html",
            folder=folder,
            msg=msg,
            flagged="\\Flagged" in m.flags,
            in_junk=_is_junk(mb),
            base=f"/folder/{mb.id}/{m.uid}",
            **frame,
        )

    async def message_html(self, request: Request) -> Response:
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        msg = await _in_pool(render.render, loaded[3])
        return HTMLResponse(
            render.frame_document(msg.html or ""),
            headers={"Content-Security-Policy": FRAME_CSP, "Cache-Control": "no-store"},
        )

    async def message_raw(self, request: Request) -> Response:
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        return Response(
            loaded[3],
            media_type="text/plain; charset=utf-8",
            headers={"Content-Security-Policy": DOWNLOAD_CSP, "Cache-Control": "no-store"},
        )

    async def message_part(self, request: Request) -> Response:
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        found = await _in_pool(render.attachment, loaded[3], request.path_params["index"])
        if found is None:
            return self._not_found()
        filename, body = found
        return Response(
            body,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": _disposition(filename),
                "Content-Security-Policy": DOWNLOAD_CSP,
                "Cache-Control": "no-store",
            },
        )

    # --- compose and send -----------------------------------------------------
    async def compose(self, request: Request) -> Response:
        """GET: the form. POST: send through the submission pipeline (the rules
        of port 587: own addresses only, DKIM, the queue), then keep a copy in
        Sent; a refusal brings the form back, filled in, with the reason."""
        s = self._user(request)
        if s is None:
            return self._to_login()
        assert s.user_id is not None
        if request.method == "GET":
            return self._page("compose.html", draft=Draft(), error="", **await self._frame(s, None))
        form = await self._checked_form(request, s, MAX_COMPOSE_FORM)
        if form is None:
            return self._refused("The form was not sent from this page. Reload and try again.")
        draft = Draft(
            to=form.get("to", ""),
            cc=form.get("cc", ""),
            subject=form.get("subject", ""),
            body=form.get("body", ""),
            in_reply_to=form.get("in_reply_to", ""),
            references=form.get("references", ""),
        )
        user = await self.store.get_user_by_id(s.user_id)
        if user is None or user.disabled:
            self.sessions.drop(s)
            return self._to_login()
        try:
            rcpts, data = await _in_pool(build, user.address, draft, self.hostname)
            client = request.client.host if request.client else "127.0.0.1"
            await self.submission.accept(
                user, Address.parse(user.address), rcpts, data, peer_ip=client, peer_name="webmail"
            )
        except (ComposeError, Refused) as e:
            frame = await self._frame(s, None)
            return self._page("compose.html", 400, draft=draft, error=str(e), **frame)
        sent = await self._sent_folder(s)
        if sent is None:
            return RedirectResponse("/", 303)
        summary = await _in_pool(summarize, data)
        await self.store.append(sent.id, NewMessage(data, summary), frozenset({"\\Seen"}))
        return RedirectResponse(f"/folder/{sent.id}?done=sent", 303)

    async def _special(self, s: Session, use: str) -> Mailbox | None:
        """The user's folder of special use `use` ("Sent", "Trash"), else of that name."""
        assert s.user_id is not None
        boxes = await self.store.list_mailboxes(s.user_id)
        by_use = [b for b in boxes if (b.special_use or "").lower() == f"\\{use.lower()}"]
        return by_use[0] if by_use else await self.store.get_mailbox(s.user_id, use)

    async def _sent_folder(self, s: Session) -> Mailbox | None:
        return await self._special(s, "Sent")

    async def reply(self, request: Request) -> Response:
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        s, _, _, data = loaded
        msg = await _in_pool(render.render, data)
        to_all = request.url.path.endswith("/reply-all")
        draft = reply_draft(msg, s.address, to_all=to_all)
        return self._page("compose.html", draft=draft, error="", **await self._frame(s, None))

    async def _action(
        self, request: Request
    ) -> tuple[Session, Mailbox, Message, dict[str, str]] | Response:
        """The checks every POST on one message makes: logged in, the CSRF
        token, the user's folder, the message exists."""
        s = self._user(request)
        if s is None:
            return self._to_login()
        form = await self._checked_form(request, s)
        if form is None:
            return self._refused("The form was not sent from this page. Reload and try again.")
        mb = await self._mailbox(s, request.path_params["mid"])
        if mb is None:
            return self._not_found()
        m = await self.store.get_message(mb.id, Uid(request.path_params["uid"]))
        if m is None:
            return self._not_found()
        return s, mb, m, form

    async def _move(self, s: Session, src: Mailbox, m: Message, dst: Mailbox) -> None:
        """Move one message; into or out of Junk it also teaches the user's
        classifier (`bayes.on_move`)."""
        assert s.user_id is not None
        await self.store.move(src.id, [m.uid], dst.id)
        await bayes.on_move(self.store, s.user_id, src, dst, [m])

    async def delete(self, request: Request) -> Response:
        """Move to Trash; in Trash, delete for good."""
        checked = await self._action(request)
        if isinstance(checked, Response):
            return checked
        s, mb, m, _ = checked
        trash = await self._special(s, "Trash")
        if trash is None or trash.id == mb.id:
            await self.store.expunge(mb.id, [m.uid], flagged_only=False)
            return RedirectResponse(f"/folder/{mb.id}?done=deleted", 303)
        await self._move(s, mb, m, trash)
        return RedirectResponse(f"/folder/{mb.id}?done=trashed", 303)

    async def move(self, request: Request) -> Response:
        """Move to another of the user's folders (form field `to`: its id)."""
        checked = await self._action(request)
        if isinstance(checked, Response):
            return checked
        s, mb, m, form = checked
        dst = await self._mailbox(s, _int(form.get("to"), 0))
        if dst is None:
            return self._not_found()
        if dst.id != mb.id:
            await self._move(s, mb, m, dst)
        return RedirectResponse(f"/folder/{mb.id}?done=moved", 303)

    async def junk(self, request: Request) -> Response:
        """Junk: move to Junk; Not junk: move from Junk to Inbox. Either teaches
        the user's classifier."""
        checked = await self._action(request)
        if isinstance(checked, Response):
            return checked
        s, mb, m, form = checked
        assert s.user_id is not None
        what = form.get("what", "")
        if what == "junk":
            dst = await self._special(s, "Junk")
        elif what == "notjunk":
            dst = await self.store.get_mailbox(s.user_id, "INBOX")
        else:
            return self._refused("Unknown action.")
        if dst is None:
            return self._not_found()
        if dst.id != mb.id:
            await self._move(s, mb, m, dst)
        return RedirectResponse(f"/folder/{mb.id}?done={what}", 303)

    async def mark(self, request: Request) -> Response:
        """Flag, unflag (back to the message) or mark unread (back to the folder)."""
        checked = await self._action(request)
        if isinstance(checked, Response):
            return checked
        _, mb, m, form = checked
        uid = m.uid
        what = form.get("what", "")
        if what == "unread":
            await self.store.store_flags(mb.id, [uid], frozenset({"\\Seen"}), "remove")
            return RedirectResponse(f"/folder/{mb.id}?done=unread", 303)
        if what not in ("flag", "unflag"):
            return self._refused("Unknown action.")
        mode: FlagMode = "add" if what == "flag" else "remove"
        await self.store.store_flags(mb.id, [uid], frozenset({"\\Flagged"}), mode)
        return RedirectResponse(f"/folder/{mb.id}/{uid}", 303)

    # --- folder management ------------------------------------------------------
    async def _folders_page(
        self, s: Session, status: int = 200, *, error: str = "", notice: str = ""
    ) -> Response:
        assert s.user_id is not None
        boxes = await self.store.list_mailboxes(s.user_id)
        order = {f.id: i for i, f in enumerate(_folders(boxes, None))}
        managed = sorted(
            (
                Managed(b.id, b.name, _label(b.name), b.messages, b.unseen, _editable(b))
                for b in boxes
            ),
            key=lambda m: order[m.id],
        )
        frame = await self._frame(s, None)
        return self._page(
            "folders.html", status, managed=managed, error=error, notice=notice, **frame
        )

    async def folders(self, request: Request) -> Response:
        s = self._user(request)
        if s is None:
            return self._to_login()
        return await self._folders_page(
            s, notice=NOTICES.get(request.query_params.get("done", ""), "")
        )

    async def _folder_form(
        self, request: Request, *, own: bool
    ) -> tuple[Session, Mailbox | None, str] | Response:
        """Logged in, the CSRF token, and with `own` one of the user's editable
        folders; (session, folder, the name typed)."""
        s = self._user(request)
        if s is None:
            return self._to_login()
        form = await self._checked_form(request, s)
        if form is None:
            return self._refused("The form was not sent from this page. Reload and try again.")
        mb = None
        if own:
            mb = await self._mailbox(s, request.path_params["mid"])
            if mb is None or not _editable(mb):
                return self._not_found()
        return s, mb, form.get("name", "").strip()

    async def folder_create(self, request: Request) -> Response:
        return await self._folder_change(
            request,
            own=False,
            change=lambda uid, _mb, name: self.store.create_mailbox(uid, name),
            failed=lambda name: f"Cannot create {name!r}",
            done="created",
        )

    async def folder_rename(self, request: Request) -> Response:
        return await self._folder_change(
            request,
            own=True,
            change=lambda uid, mb, name: self.store.rename_mailbox(uid, mb.name, name),
            failed=lambda name: f"Cannot rename to {name!r}",
            done="renamed",
        )

    async def folder_delete(self, request: Request) -> Response:
        return await self._folder_change(
            request,
            own=True,
            change=lambda uid, mb, _name: self.store.delete_mailbox(uid, mb.name),
            failed=lambda _name: "Cannot delete it",
            done="removed",
        )

    async def _folder_change(
        self,
        request: Request,
        *,
        own: bool,
        change: Callable[[UserId, Any, str], Awaitable[object]],  # Any: a Mailbox when own
        failed: Callable[[str], str],
        done: str,
    ) -> Response:
        """The three folder forms differ only in the store call and the words: the
        checks, the 400 page with the store's reason and the redirect are shared."""
        checked = await self._folder_form(request, own=own)
        if isinstance(checked, Response):
            return checked
        s, mb, name = checked
        assert s.user_id is not None
        try:
            await change(s.user_id, mb, name)
        except StoreError as e:
            return await self._folders_page(s, 400, error=f"{failed(name)}: {e}.")
        return RedirectResponse(f"/folders?done={done}", 303)
