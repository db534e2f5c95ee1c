"""The webmail's pages: login and logout, a folder's message list, the reader.

Rules:
- Not logged in, `/` is the login page; every other webmail page sends the
  browser there. Login uses the login service every protocol uses
  (`AuthService.authenticate`, protocol "web"), so its failure delays and
  lockouts are shared with IMAP, SMTP and POP3.
- A state-changing request is a POST with an urlencoded form (compose alone:
  multipart/form-data, for files, read by `mime.parse` within a size limit)
  carrying the session's CSRF token; without it, or from another origin (an
  `Origin` header that is not ours), it is refused with 403 before anything
  happens. Search, sort, filters and "load remote images" are GETs that change
  nothing.
  The cookie is HttpOnly, SameSite=Strict, and Secure when served over HTTPS.
- Mailboxes and messages are addressed by the store's ids; one that is not the
  logged-in user's is "not found", the same answer as one that does not exist.
- The store is read through its async API; parsing, sanitising and sorting run
  in this module's thread pool, never on the event loop.
- Opening a message marks it \\Seen (as IMAP's FETCH BODY[] does).
- Folders: create, rename and delete the user's own; INBOX and the special-use
  folders (Sent, Drafts, Junk, Trash, Archive) stay. The store checks names.
- Delete moves a message to Trash, and deletes it for good in Trash; Move,
  Flag/Unflag and Mark unread change one message, as IMAP's MOVE and STORE do;
  the list's checkboxes do the same to several at once.
- The search box is answered by IMAP's matcher (`search.py`), never by a scan
  of our own.
- Live updates: `/events` streams the store's change feed as server-sent
  events, one per burst of changes; the page's script re-reads what it shows.
  Junk and Not junk move between Junk and Inbox; every move into or out of
  Junk teaches the user's classifier (`filters.bayes.on_move`).
- Send goes through the server's one submission pipeline (`App.submission`,
  the rules of port 587); the copy in Sent is stored only once it accepted.
- Message bytes never come back as a page of ours: the HTML part is served
  sanitised to a sandboxed frame with `default-src 'none'` (images: our origin
  only, for `cid:` parts behind a signed URL; remote ones only in a view the
  reader asked for); raw source is
  text/plain and attachments are downloads (application/octet-stream), both
  with `nosniff` and a sandbox CSP.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import re
import urllib.parse
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from postier.auth.service import AuthOutcome
from postier.filters import bayes
from postier.imap.matcher import TooComplex
from postier.mail.address import Address
from postier.mime import Part, summarize
from postier.smtp.submission import Refused
from postier.store.api import FlagMode, Subscription
from postier.store.errors import StoreError
from postier.store.feed import SubscriptionClosed
from postier.store.models import (
    BlobId,
    Mailbox,
    MailboxId,
    Message,
    NewMessage,
    Uid,
    UserId,
)
from postier.web.forms import local_path
from postier.web.webmail import listing, render, search
from postier.web.webmail.compose import (
    ComposeError,
    Draft,
    Upload,
    build,
    correspondents,
    form_data,
    forward_draft,
    reply_draft,
    with_bcc,
)
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
#: messages at the end of Sent and of the Inbox whose addresses the To field
#: suggests
SUGGEST_FROM = 500

#: the pages' own policy: scripts, styles, frames and fetches from here only (no
#: inline script: the one script is /static/webmail.js)
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
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
    "read": "Marked as read.",
    "flagged": "Flagged.",
    "unflagged": "Flag removed.",
    "none": "Select one or more messages first.",
    "draft": "Draft saved.",
}
#: the list's query parameters a link or a redirect carries on
LIST_PARAMS = ("q", "sort", "order", "filter", "view", "page")
#: folder orders kept (`Webmail._order`): at 8 octets a message, 64 folders of
#: 10,000 messages are 5 MB
ORDER_CACHE = 64
#: rendered list rows kept (`Webmail._row_html`), about 1.5 KB each with their key
ROW_CACHE = 4096
#: messages whose inline images were served last, kept parsed (`Webmail._images`):
#: a frame of 3,000 `cid:` images asks for each, and each parse of an 8 MB
#: message costs ~26 ms
IMAGE_CACHE = 4
#: octets of those messages kept at most (a larger one is parsed per image)
IMAGE_CACHE_OCTETS = 64 * 1024 * 1024
#: attachments a message's page lists (a message may have 10,000: their list
#: was 74 ms of Jinja on the event loop and a 1.3 MB page); the rest are counted
ATTACHMENTS_SHOWN = 200
#: seconds between keep-alive comments on a live update stream (proxies close
#: silent connections; a logged-out session's stream ends at the next one)
HEARTBEAT = 20.0

#: display order of the special folders; the rest follow by name
FOLDER_ORDER = {"INBOX": 0, "Drafts": 1, "Sent": 2, "Archive": 3, "Junk": 4, "Trash": 5}

#: a Host header that may stand in a CSP source (host, IPv4, [IPv6], port)
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")

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


def _state(boxes: list[Mailbox]) -> str:
    """A digest of what the user's folders hold (every change takes a new MODSEQ
    or UID): a page carries the one it was made from, so its live update stream
    reports at once a change made before it connected."""
    seen = sorted((int(b.id), b.highestmodseq, b.uidnext, b.messages, b.unseen) for b in boxes)
    return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]


def _label(name: str) -> str:
    return "Inbox" if name.upper() == "INBOX" else name


def _folders(boxes: list[Mailbox], current: MailboxId | None) -> list[Folder]:
    ordered = sorted(boxes, key=lambda b: (FOLDER_ORDER.get(b.name, 99), b.name.casefold()))
    return [Folder(b.id, b.name, _label(b.name), b.unseen, b.id == current) for b in ordered]


def _is_drafts(mb: Mailbox) -> bool:
    return (mb.special_use or "").lower() == "\\drafts" or mb.name.lower() == "drafts"


def _is_junk(mb: Mailbox) -> bool:
    return (mb.special_use or "").lower() == "\\junk" or mb.name.lower() in ("junk", "spam")


def _int(value: str | None, default: int) -> int:
    if value is None or not value.isdigit() or len(value) > 9:
        return default
    return int(value)


def _list_url(mid: int, params: dict[str, str], **changes: str) -> str:
    """The folder's list URL with `params` (the current ones) changed by
    `changes`; empty values are left out, and the page unless it is given."""
    merged = {k: v for k, v in params.items() if k != "page"}
    merged.update(changes)
    query = urllib.parse.urlencode(
        {k: v for k, v in merged.items() if v and (k in LIST_PARAMS or k == "done")}
    )
    return f"/folder/{mid}" + (f"?{query}" if query else "")


def _list_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return {k: v[: search.MAX_QUERY] for k, v in pairs if k in LIST_PARAMS}


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
        self.search_seconds = app.settings.imap.search_time_limit
        #: octets of attachments one message may carry: what base64 turns into
        #: the largest message the server accepts
        self.max_upload = app.settings.smtp.limits.max_message_size * 3 // 4
        self.sessions = Sessions(app.store)
        #: folders' list orders (`_order`), least recently used dropped first
        self.orders: OrderedDict[tuple[int, int, int, str, bool], Sequence[int]] = OrderedDict()
        #: list rows by (folder, UID, MODSEQ) (`_page_rows`), least recently used
        #: dropped first
        self.row_of: OrderedDict[tuple[int, int, int], listing.Row] = OrderedDict()
        #: rendered list rows (`_row_html`), least recently used dropped first
        self.row_cache: OrderedDict[tuple[int, listing.Row, bool], Markup] = OrderedDict()
        #: messages by blob: the task that reads their bytes and inline images
        #: (`_images`), least recently used dropped first
        self.images: OrderedDict[BlobId, asyncio.Future[tuple[bytes, dict[int, Part]]]] = (
            OrderedDict()
        )
        #: open live update streams, ended when the server stops
        self.streams: set[Subscription] = set()
        app.stopping_hooks.add(self.end_streams)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            # templates change only with the code: no stat() of each one per page
            auto_reload=False,
        )
        self.env.filters["filesize"] = _filesize
        self.env.globals["list_url"] = _list_url

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
            Route("/events", self.events),
            Route("/nav", self.nav),
            Route("/folder/{mid:int}", self.folder),
            Route("/folder/{mid:int}/selected", self.selected, methods=["POST"]),
            Route("/folder/{mid:int}/{uid:int}", self.message),
            Route("/folder/{mid:int}/{uid:int}/html", self.message_html),
            Route("/folder/{mid:int}/{uid:int}/raw", self.message_raw),
            Route("/folder/{mid:int}/{uid:int}/part/{index:int}", self.message_part),
            Route("/folder/{mid:int}/{uid:int}/cid/{index:int}", self.inline_image),
            Route("/folder/{mid:int}/{uid:int}/reply", self.reply),
            Route("/folder/{mid:int}/{uid:int}/reply-all", self.reply),
            Route("/folder/{mid:int}/{uid:int}/forward", self.forward),
            Route("/folder/{mid:int}/{uid:int}/edit", self.edit),
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

    async def _session(self, request: Request) -> Session | None:
        return await self.sessions.get(request.cookies.get(COOKIE))

    async def _user(self, request: Request) -> Session | None:
        s = await self._session(request)
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
    async def _form(
        request: Request, limit: int = MAX_FORM, fields: int = MAX_FIELDS
    ) -> list[tuple[str, str]] | None:
        """The urlencoded form of a POST as (name, value) pairs in order, None if
        it is another type or too big."""
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
                max_num_fields=fields,
            )
        except ValueError:
            return None
        return pairs

    async def _checked_pairs(
        self,
        request: Request,
        session: Session | None,
        limit: int = MAX_FORM,
        fields: int = MAX_FIELDS,
    ) -> list[tuple[str, str]] | None:
        """The form's pairs when it carries `session`'s CSRF token from our
        origin, else None."""
        pairs = await self._form(request, limit, fields)
        if pairs is None or session is None or not self._same_origin(request):
            return None
        return pairs if session.csrf_ok(dict(pairs).get("csrf")) else None

    async def _checked_form(
        self, request: Request, session: Session | None, limit: int = MAX_FORM
    ) -> dict[str, str] | None:
        """The form when it carries `session`'s CSRF token from our origin, else None."""
        pairs = await self._checked_pairs(request, session, limit)
        return None if pairs is None else dict(pairs)

    async def _mailbox(self, s: Session, mid: int) -> Mailbox | None:
        mb = await self.store.get_mailbox_by_id(MailboxId(mid))
        return mb if mb is not None and mb.user_id == s.user_id else None

    async def _frame(
        self, s: Session, current: MailboxId | None, boxes: list[Mailbox] | None = None
    ) -> dict[str, Any]:
        """What every page around the list or a message shows: the folders with
        their counts (`boxes` when the caller read them already), the form token."""
        assert s.user_id is not None
        if boxes is None:
            boxes = await self.store.list_mailboxes(s.user_id)
        folders = _folders(boxes, current)
        # the search box looks in the folder shown, else in the Inbox
        search_in = next((f.id for f in folders if f.current), folders[0].id if folders else 0)
        return {
            "address": s.address,
            "admin": s.admin,
            "csrf": s.csrf,
            "folders": folders,
            "search_in": search_in,
            "state": _state(boxes),
        }

    async def _login_page(
        self, request: Request, session: Session | None, status: int = 200, **context: Any
    ) -> Response:
        if session is None or session.logged_in or self.sessions.renew(session):
            session = await self.sessions.anonymous()
        context.setdefault("error", "")
        context.setdefault("email", "")
        context.setdefault("next", local_path(request.query_params.get("next")))
        resp = self._page(
            "login.html", status, hostname=self.hostname, csrf=session.csrf, **context
        )
        self._set_cookie(request, resp, session)
        return resp

    # --- login and logout ---------------------------------------------------
    async def index(self, request: Request) -> Response:
        s = await self._session(request)
        if s is None or not s.logged_in:
            return await self._login_page(request, s)
        after = local_path(request.query_params.get("next"))
        if after:
            return RedirectResponse(after, 303)
        assert s.user_id is not None
        inbox = await self.store.get_mailbox(s.user_id, "INBOX")
        if inbox is None:
            return self._not_found()
        return RedirectResponse(f"/folder/{inbox.id}", 303)

    async def login(self, request: Request) -> Response:
        s = await self._session(request)
        if s is not None and s.logged_in:
            s = None  # a new login replaces the session whatever it was
        form = await self._checked_form(request, s)
        if form is None:
            return await self._login_page(
                request, None, 403, error="The login form expired. Please try again."
            )
        # where the login page was sent from (/admin): a path on this site only
        after = local_path(form.get("next"))
        email = form.get("email", "")[:320]
        client = request.client.host if request.client else ""
        result = await self.auth.authenticate(email, form.get("password", ""), client, "web")
        if result.ok and result.user is not None:
            new = await self.sessions.login(
                s, result.user.id, result.user.address, admin=result.user.admin
            )
            resp = RedirectResponse(after or "/", 303)
            self._set_cookie(request, resp, new)
            return resp
        if result.outcome is AuthOutcome.LOCKED:
            minutes = max(1, math.ceil(result.retry_after / 60))
            error = f"Too many failed logins. Try again in {minutes} minute{'s' * (minutes > 1)}."
            return await self._login_page(request, s, 429, error=error, email=email, next=after)
        return await self._login_page(
            request, s, 401, error="Wrong email or password.", email=email, next=after
        )

    async def logout(self, request: Request) -> Response:
        s = await self._user(request)
        if s is None:
            return self._to_login()
        if await self._checked_form(request, s) is None:
            return self._refused("The form was not sent from this page. Reload and try again.")
        await self.sessions.drop(s)
        resp = RedirectResponse("/", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # --- reading --------------------------------------------------------------
    async def folder(self, request: Request) -> Response:
        """The list: a page of the folder's messages, filtered (unread, flagged),
        searched (the box, `search.program`), sorted, or grouped in conversations."""
        s = await self._user(request)
        if s is None:
            return self._to_login()
        assert s.user_id is not None
        # the user's folders, counts included (one read of the mailboxes table):
        # the folder shown (only one of theirs) and the folder list beside it
        boxes = await self.store.list_mailboxes(s.user_id)
        mid = request.path_params["mid"]
        mb = next((b for b in boxes if b.id == mid), None)
        if mb is None:
            return self._not_found()
        params = _list_params(list(request.query_params.multi_items()))
        sort = params.get("sort", "date")
        if sort not in listing.SORTS:
            sort = "date"
        order = params.get("order", "")
        if order in ("newest", "oldest"):
            descending = order == "newest"
        elif order in ("asc", "desc"):
            descending = order == "desc"
        else:
            descending = sort in ("date", "size")
        filter_ = params.get("filter", "all")
        if filter_ not in listing.FILTERS:
            filter_ = "all"
        threads = params.get("view") == "threads"
        query = params.get("q", "").strip()
        total = mb.messages
        error = ""
        found = 0
        if not query and not threads:
            # the usual list: the folder's order comes from the cache while no
            # message came or went, and only the page's rows are read
            ordered: Sequence[int] = await self._order(mb, sort, descending)
            if filter_ != "all":
                flagged = await self.store.list_messages(mb.id, summaries=False)
                ordered = await _in_pool(listing.kept_order, ordered, flagged, filter_)
            pages = max(1, math.ceil(len(ordered) / PAGE_SIZE))
            page = min(max(1, _int(params.get("page"), 1)), pages)
            rows = await self._page_rows(mb, ordered[(page - 1) * PAGE_SIZE : page * PAGE_SIZE])
        else:
            msgs: list[Message] = []
            try:
                key = search.program(query) if query else None
                if key is None:
                    msgs = await self.store.list_messages(mb.id, structures=False)
                else:
                    # only the messages the header index leaves possible are read
                    msgs, answers = await search.candidates(self.store, mb.id, key)
                    msgs = await search.search(self.store, msgs, key, self.search_seconds, answers)
            except search.QueryError as e:
                error, msgs = str(e), []
            except TooComplex:
                error = "The search took too long: add words or a date to narrow it."
                msgs = []
            if filter_ != "all":
                msgs = await _in_pool(listing.keep, msgs, filter_)
            found = len(msgs)
            entries = await _in_pool(listing.arrange, msgs, sort, descending, threads)
            pages = max(1, math.ceil(len(entries) / PAGE_SIZE))
            page = min(max(1, _int(params.get("page"), 1)), pages)
            rows = await _in_pool(listing.page_rows, entries, page, PAGE_SIZE)
        frame = await self._frame(s, mb.id, boxes)
        folder = next(f for f in frame["folders"] if f.id == mb.id)
        return self._page(
            "folder.html",
            folder=folder,
            rows=rows,
            # one piece of markup (each row is markup already): the template
            # passes it once, not escapes 50 times
            row_html=Markup("".join(self._row_html(mb.id, rows, sort))),  # noqa: S704
            total=total,
            found=found,
            page=page,
            pages=pages,
            params=params,
            query=query,
            sort=sort,
            descending=descending,
            newest_first=descending,
            filter=filter_,
            threads=threads,
            error=error,
            back=urllib.parse.urlencode(params),
            notice=NOTICES.get(request.query_params.get("done", ""), ""),
            **frame,
        )

    def _row_html(self, mid: MailboxId, rows: list[listing.Row], sort: str) -> list[Markup]:
        """Each row of the list as `folder_row.html` renders it. A row's markup
        depends only on its `listing.Row` (every field it shows, the flags among
        them), the folder and whether sizes are shown, so a row already rendered
        with the same values is reused: a list page seen again (paging back, the
        page's script re-reading it after a change elsewhere) renders only the
        rows that changed. Half of a list page's time was Jinja escaping 50 rows."""
        template = self.env.get_template("folder_row.html")
        cache = self.row_cache
        out = []
        for r in rows:
            key = (int(mid), r, sort == "size")
            html = cache.get(key)
            if html is None:
                # an autoescaped template's output is markup already
                html = Markup(template.render(m=r, folder_id=mid, sort=sort))  # noqa: S704
                cache[key] = html
                if len(cache) > ROW_CACHE:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(key)
            out.append(html)
        return out

    async def _order(self, mb: Mailbox, sort: str, descending: bool) -> Sequence[int]:
        """The folder's UIDs in list order. Cached by what identifies the set of
        messages (UIDs only grow and are never reused, so UIDNEXT and the count
        change whenever one comes or goes) and the order asked: a folder of 10,000
        is read whole and sorted only after a change, not on every page view."""
        key = (int(mb.id), mb.uidnext, mb.messages, sort, descending)
        order = self.orders.get(key)
        if order is not None:
            self.orders.move_to_end(key)
            return order
        rows = await self.store.list_sort_keys(mb.id)
        order = await _in_pool(listing.uid_order, rows, sort, descending)
        del rows
        self.orders[key] = order
        while len(self.orders) > ORDER_CACHE:
            self.orders.popitem(last=False)
        return order

    async def _page_rows(self, mb: Mailbox, uids: Sequence[int]) -> list[listing.Row]:
        """The list rows of `uids` (one page), in that order; one expunged
        meanwhile is left out. A row is what its message shows, and all of that is
        immutable but the flags, which never change without a new MODSEQ: so rows
        are cached by (folder, UID, MODSEQ), and a page seen again reads only the
        page's (UID, MODSEQ, flags), not its summaries."""
        if not uids:
            return []
        lo, hi = min(uids), max(uids)
        if hi - lo >= 4 * PAGE_SIZE:  # UIDs far apart: read the messages themselves
            return [self._cached_row(mb.id, m) for m in await self._rows(mb, uids)]
        modseqs = {int(u): int(ms) for u, ms, _ in await self.store.list_flags(mb.id, lo, hi)}
        cache, mid = self.row_of, int(mb.id)
        missing = [u for u in uids if u in modseqs and (mid, u, modseqs[u]) not in cache]
        if missing:
            for m in await self._rows(mb, missing):
                self._cached_row(mb.id, m)
        out = []
        for u in uids:
            if u not in modseqs:
                continue
            r = cache.get((mid, u, modseqs[u]))
            if r is None:  # changed between the two reads: read it alone
                alone = await self.store.get_message(mb.id, Uid(u))
                if alone is None:
                    continue
                r = self._cached_row(mb.id, alone)
            else:
                cache.move_to_end((mid, u, modseqs[u]))
            out.append(r)
        return out

    def _cached_row(self, mid: MailboxId, m: Message) -> listing.Row:
        r = listing.row(m)
        self.row_of[(int(mid), int(m.uid), int(m.modseq))] = r
        while len(self.row_of) > ROW_CACHE:
            self.row_of.popitem(last=False)
        return r

    async def _rows(self, mb: Mailbox, uids: Sequence[int]) -> list[Message]:
        """The messages of `uids` (one page), in that order, with their summaries;
        one expunged meanwhile is left out."""
        if not uids:
            return []
        lo, hi = min(uids), max(uids)
        if hi - lo < 4 * PAGE_SIZE:  # the usual page: UIDs close together, one read
            by_uid = {m.uid: m for m in await self.store.list_messages(mb.id, lo, hi)}
        else:
            got = await asyncio.gather(*(self.store.get_message(mb.id, Uid(u)) for u in uids))
            by_uid = {m.uid: m for m in got if m is not None}
        return [by_uid[Uid(u)] for u in uids if u in by_uid]

    async def selected(self, request: Request) -> Response:
        """The list's checkboxes: mark read or unread, flag, unflag, delete (to
        Trash; in Trash for good) or move every selected message at once, with
        the store calls IMAP's STORE, MOVE and EXPUNGE use."""
        s = await self._user(request)
        if s is None:
            return self._to_login()
        pairs = await self._checked_pairs(request, s, fields=PAGE_SIZE + 16)
        if pairs is None:
            return self._refused("The form was not sent from this page. Reload and try again.")
        mb = await self._mailbox(s, request.path_params["mid"])
        if mb is None:
            return self._not_found()
        form = dict(pairs)
        back = _list_params(urllib.parse.parse_qsl(form.get("back", "")[:2000]))
        uids = sorted({int(v) for k, v in pairs if k == "sel" and v.isdigit() and len(v) <= 9})
        what = form.get("what", "")
        if not uids:
            return RedirectResponse(_list_url(mb.id, back, done="none"), 303)
        msgs = await self.store.list_messages(mb.id, uids[0], uids[-1], summaries=False)
        wanted = set(uids)
        chosen = [m for m in msgs if m.uid in wanted]
        picked = [m.uid for m in chosen]
        flag_changes: dict[str, tuple[str, FlagMode]] = {
            "read": ("\\Seen", "add"),
            "unread": ("\\Seen", "remove"),
            "flag": ("\\Flagged", "add"),
            "unflag": ("\\Flagged", "remove"),
        }
        done = {"read": "read", "unread": "unread", "flag": "flagged", "unflag": "unflagged"}
        if what in flag_changes:
            flag, mode = flag_changes[what]
            if picked:
                await self.store.store_flags(mb.id, picked, frozenset({flag}), mode)
            return RedirectResponse(_list_url(mb.id, back, done=done[what]), 303)
        if what == "delete":
            trash = await self._special(s, "Trash")
            if trash is None or trash.id == mb.id:
                if picked:
                    await self.store.expunge(mb.id, picked, flagged_only=False)
                return RedirectResponse(_list_url(mb.id, back, done="deleted"), 303)
            dst: Mailbox | None = trash
        elif what == "move":
            dst = await self._mailbox(s, _int(form.get("to"), 0))
        else:
            return self._refused("Unknown action.")
        if dst is None:
            return self._not_found()
        if dst.id != mb.id and chosen:
            await self._move(s, mb, chosen, dst)
        word = "trashed" if what == "delete" else "moved"
        return RedirectResponse(_list_url(mb.id, back, done=word), 303)

    # --- live updates -----------------------------------------------------------
    async def events(self, request: Request) -> Response:
        """Server-sent events from the store's change feed: one `change` event
        (the folder ids changed) per burst of changes, so the page's script
        re-reads what it shows. A feed that overflowed or closed sends one last
        event and ends; the browser reconnects by itself."""
        s = await self._user(request)
        if s is None:
            return Response("Not logged in.", 401, media_type="text/plain")
        assert s.user_id is not None
        sub = self.store.subscribe(s.user_id)
        self.streams.add(sub)
        since = request.query_params.get("since", "")
        stale = since != _state(await self.store.list_mailboxes(s.user_id))

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 3000\n\n"
                if stale:  # changed between the page and this stream
                    yield b"event: change\ndata: []\n\n"
                while True:
                    try:
                        first = await asyncio.wait_for(sub.get(), HEARTBEAT)
                    except TimeoutError:
                        if not await self.sessions.alive(s):
                            return
                        yield b": keep-alive\n\n"
                        continue
                    except SubscriptionClosed:
                        yield b"event: change\ndata: []\n\n"
                        return
                    changed = {int(first.mailbox_id)}
                    try:
                        while (more := sub.get_nowait()) is not None:
                            changed.add(int(more.mailbox_id))
                    except SubscriptionClosed:
                        pass
                    if not await self.sessions.alive(s):
                        return
                    ids = ",".join(str(i) for i in sorted(changed))
                    yield f"event: change\ndata: [{ids}]\n\n".encode()
            finally:
                sub.close()
                self.streams.discard(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def end_streams(self) -> None:
        """The server is stopping: end every live update stream (their
        subscriptions close, so each generator returns)."""
        for sub in list(self.streams):
            sub.close()

    async def nav(self, request: Request) -> Response:
        """The folder list alone, for the script to refresh unread counts."""
        s = await self._user(request)
        if s is None:
            return Response("Not logged in.", 401, media_type="text/plain")
        current = _int(request.query_params.get("current"), 0)
        frame = await self._frame(s, MailboxId(current))
        return self._page("nav.html", **frame)

    async def _load(self, request: Request) -> tuple[Session, Mailbox, Message, bytes] | Response:
        s = await self._user(request)
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
        # opening it marks it read: that commit runs while the message is rendered
        seen = (
            None
            if "\\Seen" in m.flags
            else asyncio.ensure_future(
                self.store.store_flags(mb.id, [m.uid], frozenset({"\\Seen"}), "add")
            )
        )
        try:
            msg = await _in_pool(functools.partial(render.render, authserv_id=self.hostname), data)
        finally:
            if seen is not None:
                await seen  # the folder list below counts it read
        frame = await self._frame(s, mb.id)
        folder = next(f for f in frame["folders"] if f.id == mb.id)
        return self._page(
            "message.html",
            folder=folder,
            msg=msg,
            flagged="\\Flagged" in m.flags,
            images=request.query_params.get("images") == "1",
            in_junk=_is_junk(mb),
            in_drafts=_is_drafts(mb),
            base=f"/folder/{mb.id}/{m.uid}",
            attachments_shown=ATTACHMENTS_SHOWN,
            **frame,
        )

    @staticmethod
    def _inline_token(secret: bytes, user_id: UserId, mid: int, uid: int, index: int) -> str:
        """The signature of a `cid:` image's URL under `secret` (the server's,
        `Sessions.secret`: the same in every worker)."""
        key = f"{int(user_id)}/{mid}/{uid}/{index}".encode()
        return hmac.new(secret, key, hashlib.sha256).hexdigest()[:32]

    async def message_html(self, request: Request) -> Response:
        """The sanitised HTML part for the sandboxed frame. Its CSP lets images
        load from our origin only (`cid:` images, served by `inline_image`), or
        from anywhere once the reader asked for remote images (`?images=1`), for
        this view only: the next view blocks them again."""
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        s, mb, m, data = loaded
        assert s.user_id is not None
        remote = request.query_params.get("images") == "1"
        host = request.headers.get("host", "")
        origin = f"{request.url.scheme}://{host}" if _HOST.fullmatch(host) else ""
        user_id = s.user_id
        secret = await self.sessions.secret(b"cid")

        def inline_url(index: int) -> str:
            token = self._inline_token(secret, user_id, mb.id, m.uid, index)
            return f"{origin}/folder/{mb.id}/{m.uid}/cid/{index}?t={token}"

        msg = await _in_pool(
            functools.partial(
                render.render, remote=remote, inline_url=inline_url if origin else None
            ),
            data,
        )
        if remote:
            images = "img-src http: https:"
        else:
            images = f"img-src {origin}" if origin else "img-src 'none'"
        return HTMLResponse(
            render.frame_document(msg.html or ""),
            headers={
                "Content-Security-Policy": f"{FRAME_CSP}; {images}",
                "Cache-Control": "no-store",
            },
        )

    async def inline_image(self, request: Request) -> Response:
        """A `cid:` image of a message, for its HTML frame. The frame is
        sandboxed (an origin of its own), so the browser may not send the
        session cookie with it: the URL carries a token instead, an HMAC of
        (user, folder, message, part) under the server's key, made only for a
        logged-in reader of that message. Raster images only, as their type."""
        mid, uid, index = (request.path_params[k] for k in ("mid", "uid", "index"))
        mb = await self.store.get_mailbox_by_id(MailboxId(mid))
        token = request.query_params.get("t", "")
        secret = await self.sessions.secret(b"cid")
        if mb is None or not hmac.compare_digest(
            token.encode(), self._inline_token(secret, mb.user_id, mid, uid, index).encode()
        ):
            return self._not_found()
        m = await self.store.get_message(mb.id, Uid(uid))
        if m is None:
            return self._not_found()
        data, parts = await self._images(m.blob_id)
        found = await _in_pool(render.inline_image, data, index, parts)
        if found is None:
            return self._not_found()
        ctype, body = found
        return Response(
            body,
            media_type=ctype,
            headers={
                "Content-Security-Policy": DOWNLOAD_CSP,
                "Cache-Control": "private, max-age=3600",
            },
        )

    async def _images(self, blob_id: BlobId) -> tuple[bytes, dict[int, Part]]:
        """A message's bytes and inline images (`render.images`), parsed once for
        the requests of all its images (they come together, from one frame):
        without it, a message of n images costs n parses of the whole message.
        Blobs never change, so what is kept stays true. The parse is a task of
        its own: a request that goes away does not end it for the others."""
        task = self.images.get(blob_id)
        if task is None:
            task = self.images[blob_id] = asyncio.ensure_future(self._parse_images(blob_id))
        else:
            self.images.move_to_end(blob_id)
        return await asyncio.shield(task)

    async def _parse_images(self, blob_id: BlobId) -> tuple[bytes, dict[int, Part]]:
        try:
            data = await self.store.read_blob(blob_id)
            parts = await _in_pool(render.images, data)
        except BaseException:
            self.images.pop(blob_id, None)  # the next request tries again
            raise
        this = asyncio.current_task()

        def octets() -> int:
            """Of the messages kept: those parsed, and this one while it is kept."""
            done = (t for t in self.images.values() if t.done() and not t.cancelled())
            done = (t for t in done if t.exception() is None)
            mine = len(data) if this in self.images.values() else 0
            return sum(len(t.result()[0]) for t in done) + mine

        while self.images and (len(self.images) > IMAGE_CACHE or octets() > IMAGE_CACHE_OCTETS):
            self.images.popitem(last=False)
        return data, parts

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
    async def _compose_page(
        self, s: Session, draft: Draft, status: int = 200, error: str = ""
    ) -> Response:
        """The compose form for `draft`, with the attachments that go along from
        the message it forwards (or the draft it edits) and the addresses the
        user wrote to or heard from, for the browser to suggest."""
        assert s.user_id is not None
        carried = await self._carried(s, draft.forward)
        known = await self._correspondents(s)
        frame = await self._frame(s, None)
        return self._page(
            "compose.html",
            status,
            draft=draft,
            error=error,
            carried=[a.filename for a in carried[1][:ATTACHMENTS_SHOWN]] if carried else [],
            carried_more=max(0, len(carried[1]) - ATTACHMENTS_SHOWN) if carried else 0,
            correspondents=known,
            max_upload=self.max_upload,
            **frame,
        )

    async def _carried(self, s: Session, ref: str) -> tuple[bytes, list[render.Attachment]] | None:
        """(bytes, attachments) of the user's message at `ref` ("folder/uid"),
        None when there is none."""
        mid, _, uid = ref.partition("/")
        if not mid.isdigit() or not uid.isdigit() or len(mid) > 9 or len(uid) > 9:
            return None
        mb = await self._mailbox(s, int(mid))
        if mb is None:
            return None
        m = await self.store.get_message(mb.id, Uid(int(uid)))
        if m is None:
            return None
        data = await self.store.read_blob(m.blob_id)
        rendered = await _in_pool(render.render, data)
        return data, rendered.attachments

    async def _uploads_from(self, s: Session, ref: str) -> list[Upload]:
        carried = await self._carried(s, ref)
        if carried is None:
            return []
        found = await _in_pool(render.attachments, carried[0])
        return [Upload(a.filename, a.content_type, body) for a, body in found]

    async def _correspondents(self, s: Session) -> list[str]:
        """Addresses of the recent messages in Sent (To, Cc) and Inbox (From),
        for the To field's suggestions; at most `compose.MAX_SUGGESTIONS`."""
        assert s.user_id is not None
        texts: list[str] = []
        for use, fields in (("Sent", ("to", "cc")), ("INBOX", ("from_",))):
            mb = await (self._special(s, use) if use != "INBOX" else self._inbox(s))
            if mb is None or mb.messages == 0:
                continue
            low = max(1, mb.uidnext - SUGGEST_FROM)
            for m in await self.store.list_messages(mb.id, low, structures=False):
                texts.extend(getattr(m.summary, f) for f in fields)
        return await _in_pool(correspondents, texts, s.address)

    async def _inbox(self, s: Session) -> Mailbox | None:
        assert s.user_id is not None
        return await self.store.get_mailbox(s.user_id, "INBOX")

    async def _compose_form(
        self, request: Request, s: Session
    ) -> tuple[dict[str, str], list[Upload]] | Response:
        """The compose form, urlencoded or multipart (with files), when it carries
        the CSRF token from our origin; else the refusal to answer."""
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() != "multipart/form-data":
            form = await self._checked_form(request, s, MAX_COMPOSE_FORM)
            if form is None:
                return self._refused("The form was not sent from this page. Reload and try again.")
            return form, []
        if not self._same_origin(request):
            return self._refused("The form was not sent from this page. Reload and try again.")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_upload + MAX_COMPOSE_FORM:
                return self._page(
                    "error.html",
                    413,
                    title="Attachments too large",
                    detail=f"At most {_filesize(self.max_upload)} of attachments in all. "
                    "Go back to keep what you wrote, and attach less.",
                )
        try:
            fields, files = await _in_pool(form_data, bytes(body), ctype)
        except ComposeError as e:
            return self._page("error.html", 400, title="Cannot read the form", detail=str(e))
        if not s.csrf_ok(fields.get("csrf")):
            return self._refused("The form was not sent from this page. Reload and try again.")
        return fields, files

    async def compose(self, request: Request) -> Response:
        """GET: the form. POST: send through the submission pipeline (the rules
        of port 587: own addresses only, DKIM, the queue), then keep a copy in
        Sent; or save it in Drafts. A refusal brings the form back, filled in,
        with the reason (files chosen must be chosen again: browsers never
        refill a file field)."""
        s = await self._user(request)
        if s is None:
            return self._to_login()
        assert s.user_id is not None
        if request.method == "GET":
            return await self._compose_page(s, Draft())
        got = await self._compose_form(request, s)
        if isinstance(got, Response):
            return got
        form, files = got
        draft = Draft(
            to=form.get("to", ""),
            cc=form.get("cc", ""),
            bcc=form.get("bcc", ""),
            subject=form.get("subject", ""),
            body=form.get("body", ""),
            in_reply_to=form.get("in_reply_to", ""),
            references=form.get("references", ""),
            forward=form.get("forward", "")[:40],
            draft_uid=form.get("draft_uid", "")[:12],
        )
        if sum(len(f.data) for f in files) > self.max_upload:
            return await self._compose_page(
                s, draft, 400, f"At most {_filesize(self.max_upload)} of attachments in all."
            )
        user = await self.store.get_user_by_id(s.user_id)
        if user is None or user.disabled:
            await self.sessions.drop(s)
            return self._to_login()
        saving = form.get("action") == "draft"
        attachments = await self._uploads_from(s, draft.forward) + files
        try:
            rcpts, data = await _in_pool(
                functools.partial(build, need_recipients=not saving),
                user.address,
                draft,
                self.hostname,
                attachments,
            )
            if saving:
                return await self._save_draft(s, draft, data)
            client = request.client.host if request.client else "127.0.0.1"
            await self.submission.accept(
                user, Address.parse(user.address), rcpts, data, peer_ip=client, peer_name="webmail"
            )
        except (ComposeError, Refused) as e:
            return await self._compose_page(s, draft, 400, str(e))
        await self._drop_draft(s, draft)
        sent = await self._sent_folder(s)
        if sent is None:
            return RedirectResponse("/", 303)
        copy = with_bcc(data, draft)
        summary = await _in_pool(summarize, copy)
        await self.store.append(sent.id, NewMessage(copy, summary), frozenset({"\\Seen"}))
        return RedirectResponse(f"/folder/{sent.id}?done=sent", 303)

    async def _save_draft(self, s: Session, draft: Draft, data: bytes) -> Response:
        """Keep the message in Drafts (\\Draft, as IMAP clients mark theirs),
        replacing the draft the form was editing."""
        drafts = await self._special(s, "Drafts")
        if drafts is None:
            return self._not_found()
        copy = with_bcc(data, draft)
        summary = await _in_pool(summarize, copy)
        await self.store.append(
            drafts.id, NewMessage(copy, summary), frozenset({"\\Seen", "\\Draft"})
        )
        await self._drop_draft(s, draft)
        return RedirectResponse(f"/folder/{drafts.id}?done=draft", 303)

    async def _drop_draft(self, s: Session, draft: Draft) -> None:
        """Remove the draft `draft` was edited from (it was sent or saved anew)."""
        if not draft.draft_uid.isdigit():
            return
        drafts = await self._special(s, "Drafts")
        if drafts is not None:
            await self.store.expunge(drafts.id, [Uid(int(draft.draft_uid))], flagged_only=False)

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
        return await self._compose_page(s, reply_draft(msg, s.address, to_all=to_all))

    async def forward(self, request: Request) -> Response:
        """The compose form forwarding the message: its text quoted under its
        header lines, its attachments going along."""
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        s, mb, m, data = loaded
        msg = await _in_pool(render.render, data)
        return await self._compose_page(s, forward_draft(msg, f"{mb.id}/{m.uid}"))

    async def edit(self, request: Request) -> Response:
        """A message in Drafts back in the compose form; saving or sending it
        replaces it."""
        loaded = await self._load(request)
        if isinstance(loaded, Response):
            return loaded
        s, mb, m, data = loaded
        drafts = await self._special(s, "Drafts")
        if drafts is None or drafts.id != mb.id:
            return self._not_found()
        msg = await _in_pool(render.render, data)
        draft = Draft(
            to=msg.to,
            cc=msg.cc,
            bcc=msg.bcc,
            subject=msg.subject,
            body=msg.text or "",
            in_reply_to=msg.in_reply_to,
            references=msg.references,
            forward=f"{mb.id}/{m.uid}" if msg.attachments else "",
            draft_uid=str(m.uid),
        )
        return await self._compose_page(s, draft)

    async def _action(
        self, request: Request
    ) -> tuple[Session, Mailbox, Message, dict[str, str]] | Response:
        """The checks every POST on one message makes: logged in, the CSRF
        token, the user's folder, the message exists."""
        s = await self._user(request)
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

    async def _move(self, s: Session, src: Mailbox, msgs: list[Message], dst: Mailbox) -> None:
        """Move messages; into or out of Junk it also teaches the user's
        classifier (`bayes.on_move`)."""
        assert s.user_id is not None
        await self.store.move(src.id, [m.uid for m in msgs], dst.id)
        await bayes.on_move(self.store, s.user_id, src, dst, msgs)

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
        await self._move(s, mb, [m], trash)
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
            await self._move(s, mb, [m], dst)
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
            await self._move(s, mb, [m], dst)
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
        s = await self._user(request)
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
        s = await self._user(request)
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
