"""The web admin at /admin: accounts, aliases, domains, the queue, status, the outbox.

Rules:
- Only a logged-in account with the admin role (`User.admin`: `postier user add
  --admin`, `postier user admin`) may see any page here; it is looked up in the
  store on every request, so taking the role away (or disabling the account)
  takes effect at once. Not logged in: the browser goes to the login page at
  `/`; logged in without the role: 403.
- The login, session and CSRF machinery is the webmail's (one session table:
  `webmail.sessions`; `web.forms` for the token and origin checks). Every change
  is a POST with the session's CSRF token, refused with 403 before anything
  happens without it.
- The work is the operator commands' (`postier.ops`): account checks and role
  aliases (`ops.accounts`), DNS records and DKIM keys (`ops.dnsrecords`), the
  DNS checks (`ops.dnscheck`, run with a time limit so a slow resolver cannot
  hold a page), the queue actions and what became of a message (`ops.queue`);
  the Status page reads what `postier status` and `/metrics` read, and the
  messages of the day from the store's traces (`ops.traffic`).
- The outbox (development: ``smtp.outbound.capture``) shows what the server
  would have sent, with the DKIM verdict against its own keys; message bytes
  are shown as escaped text, the raw source as text/plain with a sandbox CSP.
- Everything a user typed is checked before it reaches the store; store refusals
  (Conflict, Invalid, NotFound) come back as the form's error with status 400.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from postier import metrics
from postier.auth.passwords import ahash_password
from postier.mail.address import Address, AddressError, Domain
from postier.mail.queueid import QueueId, is_qid
from postier.mailauth import dkim
from postier.ops import accounts, traffic
from postier.ops import queue as ops_queue
from postier.ops.dnscheck import Check, check_domain
from postier.ops.dnsrecords import ensure_dkim, public_address, records
from postier.queue.capture import Outbox, dkim_verdict, outbox_dir
from postier.store.errors import StoreError
from postier.store.models import QueueEntry, RcptState, User
from postier.web.forms import checked_form
from postier.web.webmail import render
from postier.web.webmail.sessions import COOKIE, Session, Sessions

if TYPE_CHECKING:
    from postier.server.app import App

#: seconds the Domains page waits for the DNS checks
DNS_CHECK_TIMEOUT = 10.0
DOWNLOAD_CSP = "default-src 'none'; sandbox"

NOTICES = {
    "created": "Account created.",
    "password": "Password changed.",
    "quota": "Quota changed.",
    "disabled": "Account disabled: it can no longer log in.",
    "enabled": "Account enabled.",
    "admin-on": "The account is now an admin.",
    "admin-off": "The account is no longer an admin.",
    "deleted": "Account deleted with all its mail.",
    "alias-added": "Alias added.",
    "alias-deleted": "Alias deleted.",
    "domain-added": "Domain added; publish its DNS records below.",
    "retry": "The message is due now.",
    "hold": "The message is held: no more attempts until it is released.",
    "release": "The message is released.",
    "queue-deleted": "The message was removed from the queue (no bounce).",
}


@dataclass(frozen=True)
class AccountRow:
    user: User
    used: int
    limit: int


#: queue entries a page of the Queue screen shows (newest first); senders fill
#: the queue, and 10,000 rows were 200 ms of Jinja on the event loop and 3 MB
QUEUE_PAGE = 200
#: recipients a queue row names; the rest are counted
QUEUE_ROW_RECIPIENTS = 5


@dataclass(frozen=True)
class QueueRow:
    entry: QueueEntry
    state: str  # held, deferred, new
    pending: int
    to: str  # the first recipients, "and n more"


def queue_rows(entries: list[QueueEntry], want: str, text: str) -> list[QueueRow]:
    """The entries in state `want` ("all": any) whose sender or a recipient
    contains `text`, newest first. Linear in the entries and their recipients
    (the Queue screen runs it in a thread)."""
    rows = []
    for e in sorted(entries, key=lambda e: e.created, reverse=True):
        state = _state(e)
        if want != "all" and state != want:
            continue
        if text and not (
            text in e.sender.lower() or any(text in r.address.lower() for r in e.recipients)
        ):
            continue
        pending = sum(1 for r in e.recipients if r.state == RcptState.PENDING)
        shown = [r.address for r in e.recipients[:QUEUE_ROW_RECIPIENTS]]
        more = len(e.recipients) - len(shown)
        to = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        rows.append(QueueRow(e, state, pending, to))
    return rows


def _state(e: QueueEntry) -> str:
    if e.held:
        return "held"
    return "deferred" if e.attempts else "new"


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return " ".join(parts[:2]) or f"{s}s"


def _counter(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The current values of counter family `name`, by label set (every worker's)."""
    return metrics.samples(name + "_total")


def _sum(values: dict[tuple[tuple[str, str], ...], float], **want: str) -> int:
    return int(
        sum(v for labels, v in values.items() if all((k, w) in labels for k, w in want.items()))
    )


class Admin:
    def __init__(self, app: App, sessions: Sessions, env: jinja2.Environment) -> None:
        self.app = app
        self.store = app.store
        self.settings = app.settings
        self.sessions = sessions
        self.env = env
        self.outbox = Outbox(outbox_dir(app.settings.server.data_dir))

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin", self.status),
            Route("/admin/accounts", self.accounts, methods=["GET", "POST"]),
            Route("/admin/accounts/{address}", self.account),
            Route("/admin/accounts/{address}/{action}", self.account_action, methods=["POST"]),
            Route("/admin/aliases", self.aliases, methods=["GET", "POST"]),
            Route("/admin/aliases/delete", self.alias_delete, methods=["POST"]),
            Route("/admin/domains", self.domains, methods=["GET", "POST"]),
            Route("/admin/domains/{name}", self.domain),
            Route("/admin/queue", self.queue),
            Route("/admin/queue/{qid}", self.queue_entry),
            Route("/admin/queue/{qid}/{action}", self.queue_action, methods=["POST"]),
            Route("/admin/outbox", self.outbox_list),
            Route("/admin/outbox/{id}", self.outbox_message),
            Route("/admin/outbox/{id}/raw", self.outbox_raw),
        ]

    # --- access -------------------------------------------------------------
    def _page(self, template: str, s: Session, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("notice", "")
        context.setdefault("error", "")
        html = self.env.get_template(template).render(
            address=s.address,
            csrf=s.csrf,
            capture=self.settings.smtp.outbound.capture,
            **context,
        )
        return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})

    def _error(self, status: int, title: str, detail: str) -> HTMLResponse:
        html = self.env.get_template("error.html").render(title=title, detail=detail)
        return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})

    async def _admin(self, request: Request) -> Session | Response:
        """The session of a logged-in admin, else the response to send."""
        s = await self.sessions.get(request.cookies.get(COOKIE))
        if s is None or not s.logged_in or s.user_id is None:
            # the login page, which comes back here (a GET: a form is not replayed)
            back = request.url.path if request.method == "GET" else "/admin"
            if request.method == "GET" and request.url.query:
                back += "?" + request.url.query
            return RedirectResponse("/?" + urllib.parse.urlencode({"next": back}), 303)
        user = await self.store.get_user_by_id(s.user_id)
        s.admin = user is not None and user.admin and not user.disabled
        if user is None or user.disabled or not user.admin:
            return self._error(
                403, "Not an administrator", "This account may not use the admin pages."
            )
        return s

    async def _post(self, request: Request) -> tuple[Session, dict[str, str]] | Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        form = await checked_form(request, s)
        if form is None:
            return self._error(
                403,
                "Request refused",
                "The form was not sent from this page. Reload and try again.",
            )
        return s, form

    @staticmethod
    def _done(path: str, notice: str) -> Response:
        return RedirectResponse(f"{path}?done={notice}", 303)

    @staticmethod
    def _notice(request: Request) -> str:
        return NOTICES.get(request.query_params.get("done", ""), "")

    # --- status ---------------------------------------------------------------
    async def status(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        doc = self.app.status.document("running")
        started = datetime.fromisoformat(doc["started"])
        now = datetime.now(UTC)
        transactions = _counter("postier_smtp_transactions")
        delivered = _counter("postier_messages_delivered")
        greylist = _counter("postier_greylist_decisions")
        spam = _counter("postier_spam_verdicts")
        rejections = _counter("postier_smtp_rejections")
        entries = await self.store.queue_list()
        today = await traffic.today(self.store, now)
        figures = {
            "received": _sum(transactions, result="accepted"),
            "refused": _sum(transactions, result="rejected") + _sum(rejections),
            "local": _sum(delivered, destination="local"),
            "remote": _sum(delivered, destination="remote"),
            "greylist_defer": _sum(greylist, decision="defer"),
            "greylist_pass": _sum(greylist, decision="pass"),
            "greylist_allow": _sum(greylist, decision="allow"),
            "ham": _sum(spam, verdict="ham"),
            "spam": _sum(spam, verdict="spam"),
            "spam_reject": _sum(spam, verdict="reject"),
            "queued": len(entries),
            "held": sum(1 for e in entries if e.held),
            "captured": len(await asyncio.to_thread(self.outbox.list)),
        }
        return self._page(
            "admin/status.html",
            s,
            section="status",
            hostname=self.settings.server.hostname,
            started=started.strftime("%Y-%m-%d %H:%M:%S UTC"),
            uptime=_duration((now - started).total_seconds()),
            listeners=sorted(doc["listeners"].items()),
            tls=self.settings.web.tls,
            workers=self.app.worker.count if self.app.worker is not None else 1,
            figures=figures,
            today=today,
            refusals=metrics.REFUSALS.newest_first()[:20],
            errors=list(reversed(doc["errors"]))[:10],
        )

    # --- accounts ---------------------------------------------------------------
    async def _account_rows(self) -> list[AccountRow]:
        rows = []
        for u in sorted(await self.store.list_users(), key=lambda u: u.address):
            used, limit = await self.store.quota_usage(u.id)
            rows.append(AccountRow(u, used, limit))
        return rows

    async def accounts(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._create_account(request)
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        return await self._accounts_page(s, notice=self._notice(request))

    async def _accounts_page(
        self,
        s: Session,
        status: int = 200,
        notice: str = "",
        error: str = "",
        address: str = "",
        quota: str = "",
    ) -> Response:
        return self._page(
            "admin/accounts.html",
            s,
            status,
            section="accounts",
            rows=await self._account_rows(),
            domains=[d.name for d in await self.store.list_domains()],
            notice=notice,
            error=error,
            form={"address": address, "quota": quota},
            format_size=accounts.format_size,
        )

    async def _create_account(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        s, form = got
        text = form.get("address", "").strip()[:320]
        quota_text = form.get("quota", "").strip()

        async def refuse(why: str) -> Response:
            return await self._accounts_page(s, 400, error=why, address=text, quota=quota_text)

        try:
            address = Address.parse(text)
        except AddressError as e:
            return await refuse(f"Not a mail address: {e}.")
        if await self.store.get_domain(address.domain.ascii) is None:
            return await refuse(f"{address.domain.ascii} is not a domain of this server.")
        quota = accounts.parse_size(quota_text) if quota_text else self.settings.store.default_quota
        if quota is None:
            return await refuse(f"{quota_text!r} is not a size (like 500M or 2G).")
        password = form.get("password", "")
        try:
            accounts.check_password(password, self.settings.auth.min_password_length)
        except accounts.PasswordRefused as e:
            return await refuse(str(e).capitalize() + ".")
        canonical = str(address)
        if await self.store.get_user(canonical) is not None:
            return await refuse(f"{address.key} exists already.")
        try:
            user = await self.store.add_user(canonical, await ahash_password(password), quota)
            if user.quota_bytes != quota:  # add_user reads 0 as "the default quota"
                await self.store.set_quota(canonical, quota)
            if form.get("admin") == "on":
                await self.store.set_admin(canonical, True)
            await accounts.role_aliases_for_new_user(self.store, user)
        except StoreError as e:
            return await refuse(str(e))
        return self._done("/admin/accounts", "created")

    async def _user(self, request: Request) -> User | None:
        return await self.store.get_user(request.path_params["address"])

    async def account(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        user = await self._user(request)
        if user is None:
            return self._error(404, "Not found", "There is no such account.")
        return await self._account_page(s, user, notice=self._notice(request))

    async def _account_page(
        self, s: Session, user: User, status: int = 200, notice: str = "", error: str = ""
    ) -> Response:
        used, limit = await self.store.quota_usage(user.id)
        addresses = await self.store.addresses_of(user.id)
        return self._page(
            "admin/account.html",
            s,
            status,
            section="accounts",
            user=user,
            used=used,
            limit=limit,
            addresses=[a for a in addresses if a != user.address],
            is_self=user.id == s.user_id,
            notice=notice,
            error=error,
            format_size=accounts.format_size,
        )

    async def account_action(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        s, form = got
        user = await self._user(request)
        if user is None:
            return self._error(404, "Not found", "There is no such account.")
        action = request.path_params["action"]
        path = f"/admin/accounts/{urllib.parse.quote(user.address, safe='@')}"
        try:
            if action == "password":
                password = form.get("password", "")
                try:
                    accounts.check_password(password, self.settings.auth.min_password_length)
                except accounts.PasswordRefused as e:
                    return await self._account_page(s, user, 400, error=str(e).capitalize() + ".")
                await self.store.set_password(user.address, await ahash_password(password))
                return self._done(path, "password")
            if action == "quota":
                size = accounts.parse_size(form.get("quota", ""))
                if size is None:
                    return await self._account_page(
                        s, user, 400, error="Not a size (like 500M or 2G; 0 = unlimited)."
                    )
                await self.store.set_quota(user.address, size)
                return self._done(path, "quota")
            if action in ("disable", "enable"):
                if user.id == s.user_id and action == "disable":
                    return await self._account_page(
                        s, user, 400, error="You cannot disable your own account."
                    )
                await self.store.set_disabled(user.address, action == "disable")
                return self._done(path, "disabled" if action == "disable" else "enabled")
            if action in ("admin-on", "admin-off"):
                if user.id == s.user_id and action == "admin-off":
                    return await self._account_page(
                        s, user, 400, error="You cannot take the admin role from yourself."
                    )
                await self.store.set_admin(user.address, action == "admin-on")
                return self._done(path, action)
            if action == "delete":
                if user.id == s.user_id:
                    return await self._account_page(
                        s, user, 400, error="You cannot delete your own account."
                    )
                if form.get("confirm") != "on":
                    return await self._account_page(
                        s, user, 400, error="Tick the box to confirm: all its mail is deleted."
                    )
                await self.store.delete_user(user.address)
                return self._done("/admin/accounts", "deleted")
        except StoreError as e:
            return await self._account_page(s, user, 400, error=str(e))
        return self._error(404, "Not found", "There is no such action.")

    # --- aliases ------------------------------------------------------------------
    async def aliases(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._add_alias(request)
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        return await self._aliases_page(s, notice=self._notice(request))

    async def _aliases_page(
        self,
        s: Session,
        status: int = 200,
        notice: str = "",
        error: str = "",
        source: str = "",
        targets: str = "",
    ) -> Response:
        aliases = sorted(await self.store.list_aliases(), key=lambda a: a.source)
        return self._page(
            "admin/aliases.html",
            s,
            status,
            section="aliases",
            aliases=aliases,
            notice=notice,
            error=error,
            form={"source": source, "targets": targets},
        )

    async def _add_alias(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        s, form = got
        source = form.get("source", "").strip()[:320]
        targets_text = form.get("targets", "")[:4000]

        async def refuse(why: str) -> Response:
            return await self._aliases_page(s, 400, error=why, source=source, targets=targets_text)

        targets = [t for t in targets_text.replace(",", " ").split() if t]
        if not targets:
            return await refuse("Give at least one address to forward to.")
        try:
            if source.startswith("@"):
                domain = Domain.parse(source[1:]).ascii
                canonical = f"@{domain}"
            else:
                address = Address.parse(source)
                domain, canonical = address.domain.ascii, str(address)
            parsed = [Address.parse(t) for t in targets]
        except AddressError as e:
            return await refuse(f"Not a mail address: {e}.")
        if await self.store.get_domain(domain) is None:
            return await refuse(f"{domain} is not a domain of this server.")
        if not canonical.startswith("@") and await self.store.get_user(canonical) is not None:
            return await refuse(f"{canonical} is an account; an alias cannot take its address.")
        try:
            await self.store.add_alias(canonical, [str(t) for t in parsed])
        except StoreError as e:
            return await refuse(str(e))
        return self._done("/admin/aliases", "alias-added")

    async def alias_delete(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        s, form = got
        try:
            await self.store.delete_alias(form.get("source", ""))
        except StoreError as e:
            return await self._aliases_page(s, 400, error=str(e))
        return self._done("/admin/aliases", "alias-deleted")

    # --- domains ------------------------------------------------------------------
    async def domains(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._add_domain(request)
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        return await self._domains_page(s)

    async def _domains_page(
        self, s: Session, status: int = 200, error: str = "", name: str = ""
    ) -> Response:
        rows = []
        for d in await self.store.list_domains():
            users = len(await self.store.list_users(d.name))
            rows.append((d, users))
        return self._page(
            "admin/domains.html",
            s,
            status,
            section="domains",
            rows=rows,
            error=error,
            name=name,
        )

    async def _add_domain(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        s, form = got
        text = form.get("domain", "").strip()[:255]
        try:
            name = Domain.parse(text).ascii
        except AddressError as e:
            return await self._domains_page(s, 400, f"Not a domain name: {e}.", text)
        if await self.store.get_domain(name) is not None:
            return await self._domains_page(s, 400, f"{name} is a domain here already.", text)
        try:
            await self.store.add_domain(name)
            await ensure_dkim(self.store, self.settings, name)
            await accounts.role_aliases_for_new_domain(self.store, name)
        except StoreError as e:
            return await self._domains_page(s, 400, str(e), text)
        return self._done(f"/admin/domains/{name}", "domain-added")

    async def domain(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        d = await self.store.get_domain(request.path_params["name"])
        if d is None:
            return self._error(404, "Not found", "There is no such domain here.")
        keys = await dkim.stored_keys(self.store, d.name, d.dkim_selector)
        checks: list[Check] = []
        unchecked = ""
        if self.settings.dns.offline:
            unchecked = (
                "Not checked: dns.offline = true, so no DNS query is sent. "
                "Mail to this domain on this server is delivered without DNS."
            )
        else:
            ip = public_address(self.settings)
            try:
                checks = await asyncio.wait_for(
                    check_domain(
                        self.app.queue.resolver,
                        d.name,
                        hostname=self.settings.server.hostname,
                        ips=[ip] if ip else [],
                        dkim_keys=keys,
                    ),
                    DNS_CHECK_TIMEOUT,
                )
            except TimeoutError:
                unchecked = f"Not checked: DNS did not answer within {DNS_CHECK_TIMEOUT:.0f} s."
        return self._page(
            "admin/domain.html",
            s,
            section="domains",
            domain=d,
            records=records(self.settings, d.name, keys),
            checks=checks,
            failed=sum(1 for c in checks if c.failed),
            unchecked=unchecked,
            notice=self._notice(request),
        )

    # --- queue ----------------------------------------------------------------------
    async def queue(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        want = request.query_params.get("state", "all")
        text = request.query_params.get("q", "").strip().lower()[:320]
        if text and is_qid(text):
            return RedirectResponse(f"/admin/queue/{text.upper()}", 303)
        entries = await self.store.queue_list()
        rows = await asyncio.to_thread(queue_rows, entries, want, text)
        pages = max(1, -(-len(rows) // QUEUE_PAGE))
        try:
            page = min(max(1, int(request.query_params.get("page", "1"))), pages)
        except ValueError:
            page = 1
        return self._page(
            "admin/queue.html",
            s,
            section="queue",
            rows=rows[(page - 1) * QUEUE_PAGE : page * QUEUE_PAGE],
            found=len(rows),
            page=page,
            pages=pages,
            total=len(entries),
            state=want,
            q=text,
            now=datetime.now(UTC),
            notice=self._notice(request),
        )

    async def queue_entry(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        text = request.path_params["qid"]
        if not is_qid(text):
            return self._error(404, "Not found", "That is not a queue id.")
        qid = QueueId(text.upper())
        entry = await self.store.queue_get(qid)
        events = await self.store.trace_get(qid)
        if entry is None and not events:
            return self._error(404, "Not found", f"Nothing is known about {qid}.")
        return self._page(
            "admin/queue_entry.html",
            s,
            section="queue",
            qid=qid,
            entry=entry,
            state=_state(entry) if entry else ops_queue.gone_state(events),
            events=events,
            notice=self._notice(request),
            error="",
        )

    async def queue_action(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        text = request.path_params["qid"]
        if not is_qid(text):
            return self._error(404, "Not found", "That is not a queue id.")
        qid = QueueId(text.upper())
        action = request.path_params["action"]
        try:
            if action == "retry":
                await ops_queue.retry_now(self.store, qid)
                self.app.queue.wake()
            elif action in ("hold", "release"):
                await ops_queue.hold(self.store, qid, action == "hold")
            elif action == "delete":
                await ops_queue.delete(self.store, qid)
                return self._done("/admin/queue", "queue-deleted")
            else:
                return self._error(404, "Not found", "There is no such action.")
        except ops_queue.QueueActionError as e:
            return self._error(400, "Not done", str(e))
        return self._done(f"/admin/queue/{qid}", action)

    # --- outbox ---------------------------------------------------------------------
    async def outbox_list(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        items = await asyncio.to_thread(self.outbox.list)
        return self._page("admin/outbox.html", s, section="outbox", items=items)

    async def outbox_message(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        id_ = request.path_params["id"]
        item = await asyncio.to_thread(self.outbox.get, id_)
        data = await asyncio.to_thread(self.outbox.read, id_)
        if item is None or data is None:
            return self._error(404, "Not found", "There is no such captured message.")
        verdicts = await dkim_verdict(data, self.store)
        msg = await asyncio.to_thread(render.render, data)
        return self._page(
            "admin/outbox_message.html",
            s,
            section="outbox",
            item=item,
            msg=msg,
            verdicts=verdicts,
        )

    async def outbox_raw(self, request: Request) -> Response:
        s = await self._admin(request)
        if isinstance(s, Response):
            return s
        data = await asyncio.to_thread(self.outbox.read, request.path_params["id"])
        if data is None:
            return self._error(404, "Not found", "There is no such captured message.")
        return PlainTextResponse(
            data.decode("utf-8", "replace"),
            headers={
                "Content-Security-Policy": DOWNLOAD_CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )
