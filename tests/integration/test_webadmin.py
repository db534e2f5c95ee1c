"""The web admin in a real browser: Playwright driving Debian's Chromium, headless,
against a server in a thread on loopback, with the development outbox on
(``smtp.outbound.capture``) and the fixture DNS server for the domain checks.

What a browser does here is checked with the real protocols: an account the
admin creates logs in over IMAP (imaplib), a message sent over SMTP submission
to a remote domain shows up in the outbox, signed. Screenshots of the admin
screens go to $POSTIER_SCREENSHOTS (docs/img holds copies made that way).
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postier.mailauth import dkim
from postier.ops.dnsrecords import records
from postier.store.models import NewQueueEntry, QueueRecipient
from tests.support.browser import Browser, Web
from tests.support.dnsserver import DnsTestServer
from tests.support.messages import new_message
from tests.support.server import PASSWORD, ServerThread, thread_server

pytestmark = pytest.mark.tools

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

HOST = "mail.example.test"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def srv(tmp_path: Path, dns: DnsTestServer) -> Iterator[ServerThread]:
    """alice@example.test is an admin, bob@example.test is not; example.test has
    DKIM keys and its records published on the fixture DNS server."""
    server = thread_server(
        tmp_path,
        "[smtp.outbound]\ncapture = true\n"
        f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\ntimeout = "2s"\n'
        "[greylist]\nenabled = false\n",
        hostname=HOST,
    )
    try:
        server.add_user("alice@example.test")
        server.add_user("bob@example.test")

        async def setup() -> None:
            await server.store.set_admin("alice@example.test", True)
            data_dir = server.settings.server.data_dir
            rsa, ed = dkim.generate_keys(data_dir, "example.test", rsa_bits=1024)
            await server.store.set_dkim_selector("example.test", rsa.selector)
            zone: dict[str, dict[str, list[object]]] = {HOST: {"A": ["127.0.0.2"]}}
            for r in records(server.settings, "example.test", [rsa, ed]):
                name = r.name.rstrip(".")
                if r.type == "MX":
                    zone.setdefault(name, {})["MX"] = [(10, HOST)]
                elif r.type == "TXT":
                    value = "".join(r.value.strip('"').split('" "'))
                    zone.setdefault(name, {}).setdefault("TXT", []).append(value)
            zone["2.0.0.127.in-addr.arpa"] = {"PTR": [HOST]}
            for name, data in zone.items():
                dns.set(name, data)

        server.call(setup())
        yield server
    finally:
        server.stop()


@pytest.fixture
def web(chromium: Browser, srv: ServerThread) -> Iterator[Web]:
    w = Web(chromium, srv)
    try:
        yield w
    finally:
        assert w.offsite == []
        w.close()


def imap_login(srv: ServerThread, address: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10) as imap:
        try:
            imap.login(address, password)
        except imaplib.IMAP4.error:
            return False
        imap.select("INBOX")
        imap.logout()
        return True


def test_admin_creates_an_account_that_logs_in_over_imap(web: Web, srv: ServerThread) -> None:
    page = web.page
    web.login("alice@example.test")
    page.goto(web.base + "/admin/accounts")
    expect(page.get_by_role("heading", name="Accounts", exact=True)).to_be_visible()
    page.get_by_label("Address").fill("carol@example.test")
    page.get_by_label("Password").fill("carol's long password")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("status")).to_have_text("Account created.")
    expect(page.get_by_role("link", name="carol@example.test")).to_be_visible()
    web.shot("admin-accounts")
    assert imap_login(srv, "carol@example.test", "carol's long password")

    # a refused form comes back filled in, with the reason
    page.get_by_label("Address").fill("dave@nowhere.test")
    page.get_by_label("Password").fill("dave's long password")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_have_text("nowhere.test is not a domain of this server.")
    expect(page.get_by_label("Address")).to_have_value("dave@nowhere.test")

    # the account's page: reset the password, set the quota, disable, delete
    page.get_by_role("link", name="carol@example.test").click()
    expect(page.get_by_role("heading", name="carol@example.test")).to_be_visible()
    page.get_by_label("New password").fill("a brand new password")
    page.get_by_role("button", name="Reset password").click()
    expect(page.get_by_role("status")).to_have_text("Password changed.")
    assert not imap_login(srv, "carol@example.test", "carol's long password")
    assert imap_login(srv, "carol@example.test", "a brand new password")
    page.get_by_role("textbox", name="Quota").fill("2G")
    page.get_by_role("button", name="Set quota").click()
    expect(page.get_by_role("status")).to_have_text("Quota changed.")
    expect(page.get_by_text("of 2G")).to_be_visible()
    page.get_by_role("button", name="Disable account").click()
    expect(page.get_by_role("status")).to_have_text("Account disabled: it can no longer log in.")
    web.shot("admin-account")
    assert not imap_login(srv, "carol@example.test", "a brand new password")
    page.get_by_role("button", name="Enable account").click()
    assert imap_login(srv, "carol@example.test", "a brand new password")
    page.get_by_role("button", name="Delete account").click()  # not confirmed
    expect(page.get_by_role("alert")).to_contain_text("Tick the box")
    page.get_by_label("Delete all its mail too").check()
    page.get_by_role("button", name="Delete account").click()
    expect(page.get_by_role("status")).to_have_text("Account deleted with all its mail.")
    assert srv.call(srv.store.get_user("carol@example.test")) is None

    # aliases
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Aliases").click()
    page.get_by_role("textbox", name="Alias").fill("team@example.test")
    page.get_by_role("textbox", name="Forward to").fill("alice@example.test, bob@example.test")
    page.get_by_role("button", name="Add alias").click()
    expect(page.get_by_role("status")).to_have_text("Alias added.")
    got = srv.call(srv.store.resolve("team@example.test"))
    assert sorted(u.address for u in got.users) == ["alice@example.test", "bob@example.test"]
    page.get_by_role("button", name="Delete alias team@example.test").click()
    expect(page.get_by_role("status")).to_have_text("Alias deleted.")
    assert not srv.call(srv.store.resolve("team@example.test")).found


def test_admin_pages_are_for_admins_only(web: Web, srv: ServerThread, chromium: Browser) -> None:
    page = web.page
    # not logged in: the login page
    page.goto(web.base + "/admin/accounts")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    # logged in without the role: 403 on every page, GET or POST
    web.login("bob@example.test")
    for path in ("/admin", "/admin/accounts", "/admin/queue", "/admin/outbox", "/admin/domains"):
        response = page.goto(web.base + path)
        assert response is not None
        assert response.status == 403, path
    expect(page.get_by_role("heading", name="Not an administrator")).to_be_visible()
    r = page.request.post(
        web.base + "/admin/accounts",
        form={"address": "x@example.test", "password": "long enough pw"},
    )
    assert r.status == 403
    assert srv.call(srv.store.get_user("x@example.test")) is None

    # an admin's POST without the CSRF token is refused too
    admin = Web(chromium, srv)
    try:
        admin.login("alice@example.test")
        r = admin.page.request.post(
            admin.base + "/admin/accounts",
            form={"address": "x@example.test", "password": "long enough pw"},
        )
        assert r.status == 403
        assert srv.call(srv.store.get_user("x@example.test")) is None
        # the role is read at every request: taken away, the next page is 403
        srv.call(srv.store.set_admin("alice@example.test", False))
        response = admin.page.goto(admin.base + "/admin")
        assert response is not None
        assert response.status == 403
    finally:
        admin.close()


def test_login_from_admin_returns_there_and_webmail_links_to_it(
    web: Web, srv: ServerThread, chromium: Browser
) -> None:
    page = web.page
    # not logged in: the login page, and after it the admin page asked for
    page.goto(web.base + "/admin/queue?state=held&q=bob")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.get_by_label("Email").fill("alice@example.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(web.base + "/admin/queue?state=held&q=bob")
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    # the webmail links to the admin for an admin
    page.get_by_role("link", name="Mail", exact=True).click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    page.get_by_role("link", name="Admin", exact=True).click()
    page.wait_for_url(web.base + "/admin")
    expect(page.get_by_role("heading", name="Status")).to_be_visible()
    # a wrong password keeps where to go next
    other = Web(chromium, srv)
    try:
        other.page.goto(other.base + "/admin/domains")
        other.page.get_by_label("Email").fill("alice@example.test")
        other.page.get_by_label("Password").fill("wrong")
        other.page.get_by_role("button", name="Log in").click()
        expect(other.page.get_by_role("alert")).to_have_text("Wrong email or password.")
        other.page.get_by_label("Password").fill(PASSWORD)
        other.page.get_by_role("button", name="Log in").click()
        other.page.wait_for_url(other.base + "/admin/domains")
    finally:
        other.close()
    # and not for anyone else
    bob = Web(chromium, srv)
    try:
        bob.login("bob@example.test")
        expect(bob.page.get_by_role("button", name="Log out")).to_be_visible()
        expect(bob.page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    finally:
        bob.close()


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/admin",
        "https://evil.example/",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_login_next_is_never_another_site(web: Web, srv: ServerThread, target: str) -> None:
    """`next` goes to a path on this site only: anything a browser could resolve
    to another host lands on the mailbox instead (no open redirect)."""
    page = web.page
    page.goto(web.base + "/?" + urllib.parse.urlencode({"next": target}))
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.locator("input[name=next]").count() == 0
    csrf = page.locator("input[name=csrf]").get_attribute("value")
    assert csrf
    r = page.request.post(
        web.base + "/login",
        form={"csrf": csrf, "email": "alice@example.test", "password": PASSWORD, "next": target},
        max_redirects=0,
    )
    assert r.status == 303
    assert r.headers["location"] == "/"
    # logged in, `/?next=` does not leave the site either
    r = page.request.get(
        web.base + "/?" + urllib.parse.urlencode({"next": target}), max_redirects=0
    )
    assert r.status == 303
    assert r.headers["location"].startswith("/folder/")
    # the same with a path on this site goes there (so the refusals are about the target)
    r = page.request.get(web.base + "/?next=/admin/queue", max_redirects=0)
    assert r.headers["location"] == "/admin/queue"


def test_outbox_shows_mail_captured_for_a_remote_domain(web: Web, srv: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as c:
        c.login("alice@example.test", PASSWORD)
        c.sendmail(
            "alice@example.test",
            ["zed@remote.test"],
            b"From: Alice <alice@example.test>\r\nTo: Zed <zed@remote.test>\r\n"
            b"Subject: Lunch on Friday\r\n\r\nNoon at the usual place?\r\n",
        )
    page = web.page
    web.login("alice@example.test")
    page.goto(web.base + "/admin/outbox")
    link = page.get_by_role("link", name="Lunch on Friday")
    deadline = time.monotonic() + 10
    while not link.count():
        assert time.monotonic() < deadline, "nothing captured"
        time.sleep(0.1)
        page.reload()
    expect(page.get_by_role("cell", name="zed@remote.test")).to_be_visible()
    web.shot("admin-outbox")
    link.click()
    expect(page.get_by_role("heading", name="Lunch on Friday")).to_be_visible()
    expect(page.get_by_text("Noon at the usual place?")).to_be_visible()
    dkim_section = page.get_by_role("region", name="DKIM")
    expect(dkim_section.get_by_text("pass: d=example.test")).to_have_count(2)
    web.shot("admin-outbox-message")
    raw = page.request.get(page.url + "/raw")
    assert raw.status == 200
    assert raw.body().startswith(b"DKIM-Signature:")
    assert raw.headers["content-security-policy"] == "default-src 'none'; sandbox"

    # the queue entry's timeline ends with captured and done
    page.get_by_role("link", name=re.compile(r"^[0-9A-Z]{16}$")).click()
    expect(page.get_by_role("heading", name=re.compile("^Message "))).to_be_visible()
    timeline = page.locator("ol.timeline")
    expect(timeline.get_by_text("captured", exact=True)).to_be_visible()
    expect(timeline.get_by_text("done", exact=True)).to_be_visible()
    expect(page.get_by_text("State: no longer queued")).to_be_visible()


def test_a_long_queue_is_shown_a_page_at_a_time(web: Web, srv: ServerThread) -> None:
    """Senders fill the queue: the screen shows `QUEUE_PAGE` entries, newest
    first, with the first recipients of each (10,000 rows were 200 ms of the
    event loop and a 3 MB page)."""
    from postier.web.admin.routes import QUEUE_PAGE

    later = datetime.now(UTC) + timedelta(days=1)
    many = tuple(QueueRecipient(f"r{i}@remote.test") for i in range(50))

    async def fill() -> None:
        for i in range(QUEUE_PAGE + 3):
            res = await srv.store.deliver(
                new_message(b"Subject: q\r\n\r\nhi\r\n"),
                [],
                queue=NewQueueEntry("alice@example.test", many if i == 0 else many[:1]),
            )
            await srv.store.queue_set_next_attempt(res.queued, later)

    srv.call(fill())
    total = QUEUE_PAGE + 3
    page = web.page
    web.login("alice@example.test")
    page.goto(web.base + "/admin/queue")
    expect(
        page.get_by_text(f"{total} of {total} queued messages, newest first: page 1 of 2.")
    ).to_be_visible()
    assert page.locator("table.grid tbody tr").count() == QUEUE_PAGE
    page.get_by_role("link", name="Older").click()
    expect(page.get_by_text("page 2 of 2.")).to_be_visible()
    assert page.locator("table.grid tbody tr").count() == 3
    # the oldest, sent to 50: five named, the rest counted
    expect(page.get_by_text("r4@remote.test and 45 more")).to_be_visible()
    page.get_by_role("link", name="Newer").click()
    expect(page.get_by_text("page 1 of 2.")).to_be_visible()


def test_queue_hold_release_retry_delete(web: Web, srv: ServerThread) -> None:
    later = datetime.now(UTC) + timedelta(days=1)

    async def queue_two() -> list[str]:
        qids = []
        for subject in (b"first", b"second"):
            res = await srv.store.deliver(
                new_message(b"Subject: " + subject + b"\r\n\r\nhi\r\n"),
                [],
                queue=NewQueueEntry("alice@example.test", (QueueRecipient("Zed@Remote.test"),)),
            )
            await srv.store.queue_set_next_attempt(res.queued, later)
            qids.append(res.queued)
        return qids

    first, second = srv.call(queue_two())
    page = web.page
    web.login("alice@example.test")
    page.goto(web.base + "/admin/queue")
    expect(page.get_by_text("2 of 2 queued messages.")).to_be_visible()
    web.shot("admin-queue")
    # filters: by sender or recipient text, by state
    for text, shown in (("zed@REMOTE", 2), ("Alice@", 2), ("nobody@", 0)):
        page.get_by_label("Sender, recipient or queue id").fill(text)
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_text(f"{shown} of 2 queued messages.")).to_be_visible()
    page.get_by_label("Sender, recipient or queue id").fill("")
    page.get_by_label("State").select_option("Held")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("0 of 2 queued messages.")).to_be_visible()
    page.get_by_label("State").select_option("All")
    page.get_by_label("Sender, recipient or queue id").fill(first)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("heading", name=f"Message {first}")).to_be_visible()
    page.get_by_role("button", name="Hold").click()
    expect(page.get_by_role("status")).to_contain_text("held")
    expect(page.get_by_text("State: held")).to_be_visible()
    assert srv.call(srv.store.queue_get(first)).held
    page.goto(web.base + "/admin/queue?state=held")
    expect(page.get_by_text("1 of 2 queued messages.")).to_be_visible()
    page.get_by_role("link", name=first).click()
    page.get_by_role("button", name="Release").click()
    expect(page.get_by_role("status")).to_have_text("The message is released.")
    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_role("status")).to_have_text("The message is due now.")
    # due now, the runner takes it at once: captured, it leaves the queue
    deadline = time.monotonic() + 10
    while srv.call(srv.store.queue_get(first)) is not None:
        assert time.monotonic() < deadline, "retry now did not deliver"
        time.sleep(0.05)
    page.reload()
    timeline = page.locator("ol.timeline")
    for event in ("hold", "release", "captured", "done"):
        expect(timeline.get_by_text(event, exact=True)).to_be_visible()
    web.shot("admin-trace")

    page.goto(web.base + f"/admin/queue/{second}")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text(
        "The message was removed from the queue (no bounce)."
    )
    assert srv.call(srv.store.queue_get(second)) is None


def test_domains_with_dns_checks(web: Web, srv: ServerThread) -> None:
    page = web.page
    web.login("alice@example.test")
    page.goto(web.base + "/admin/domains")
    page.get_by_role("link", name="example.test").click()
    expect(page.get_by_role("heading", name="example.test")).to_be_visible()
    checks = page.get_by_role("region", name="DNS checks")
    expect(checks.get_by_text("All required records are in place.")).to_be_visible()
    expect(checks.get_by_text("passed: MX:")).to_be_attached()
    web.shot("admin-domain")

    page.goto(web.base + "/admin/domains")
    page.get_by_label("Domain").fill("New.Test")
    page.get_by_role("button", name="Add domain").click()
    expect(page.get_by_role("heading", name="new.test")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Domain added")
    checks = page.get_by_role("region", name="DNS checks")
    expect(checks.get_by_text("failed: MX:")).to_be_attached()
    expect(checks.get_by_text("required records missing or wrong")).to_be_visible()
    publish = page.get_by_role("region", name="Records to publish")
    expect(publish.get_by_text("v=DKIM1; k=rsa", exact=False).first).to_be_visible()
    d = srv.call(srv.store.get_domain("new.test"))
    assert d is not None
    assert d.dkim_selector


def test_status_page(web: Web, srv: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("mx"), timeout=10) as c:
        c.ehlo("client.test")
        c.mail("someone@remote.test")
        code, _ = c.rcpt("nobody@example.test")
        assert code == 550
    page = web.page
    web.login("alice@example.test")
    page.goto(web.base + "/admin")
    expect(page.get_by_role("heading", name=f"Status of {HOST}")).to_be_visible()
    listeners = page.get_by_role("region", name="Listeners")
    for name in ("mx", "submission", "imap", "pop3", "web (HTTP)"):
        expect(listeners.get_by_role("cell", name=name, exact=True)).to_be_visible()
    refusals = page.get_by_role("region", name="Recent refusals")
    expect(refusals.get_by_text("5.1.1").first).to_be_visible()
    expect(page.get_by_text("Development outbox on")).to_be_visible()
    web.shot("admin-status")


def _figures(page: object) -> dict[str, int]:
    """The Status page's figures by label (the number before any note)."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    out: dict[str, int] = {}
    for dl in page.locator("dl.figures").all():
        terms = dl.locator("dt").all_inner_texts()
        values = dl.locator("dd").all_inner_texts()
        out.update((t.strip(), int(v.split()[0])) for t, v in zip(terms, values, strict=True))
    return out


def test_status_figures_count_greylisting_spam_and_refusals(
    chromium: Browser, dns: DnsTestServer, tmp_path: Path
) -> None:
    """The Status page's figures move with what the server did: a greylisted
    first try and its retry, mail to Junk and to the Inbox, a refused recipient
    with its reason (the counters are the process's: the test reads them before
    and after)."""
    dns.set("spoofed.test", {"TXT": ["v=spf1 -all"]})
    dns.set("_dmarc.spoofed.test", {"TXT": ["v=DMARC1; p=quarantine"]})
    server = thread_server(
        tmp_path,
        f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\ntimeout = "2s"\n'
        '[greylist]\ndelay = "1s"\nallow = []\n',
        hostname=HOST,
    )
    web = Web(chromium, server)
    try:
        server.add_user("alice@example.test")
        server.call(server.store.set_admin("alice@example.test", True))
        page = web.page
        web.login("alice@example.test")
        page.goto(web.base + "/admin")
        before = _figures(page)

        def send(sender: str, subject: str) -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", server.port("mx"), timeout=10) as c:
                c.ehlo("client.test")
                c.mail(sender)
                code, text = c.rcpt("alice@example.test")
                if code == 250:
                    c.data(f"From: {sender}\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
                return code, text

        assert send("m@spoofed.test", "Spoofed")[0] == 451  # greylisted
        time.sleep(1.2)
        assert send("m@spoofed.test", "Spoofed")[0] == 250  # retried in time: to Junk
        # the network passed before: known now, no delay (a pass as well)
        assert send("carol@elsewhere.test", "Honest")[0] == 250
        with smtplib.SMTP("127.0.0.1", server.port("mx"), timeout=10) as c:
            c.ehlo("client.test")
            c.mail("carol@elsewhere.test")
            assert c.rcpt("nobody@example.test")[0] == 550
            # a refusal's text carries what the client sent: shown as text
            c.rcpt('"<img src=x onerror=window.__pwned=1>"@example.test')

        page.reload()
        after = _figures(page)
        delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        assert delta == {
            "Received (accepted over SMTP)": 2,
            "Refused (commands and messages)": 3,
            "Delivered to local mailboxes": 2,
            "Received (accepted for delivery)": 2,  # today's, from the traces
            "Delivered to local mailboxes (copies)": 2,
            "Greylisting: deferred (first try)": 1,
            "Greylisting: passed (retried in time, or known)": 2,
            "Spam filter: ham": 1,
            "Spam filter: to Junk": 1,
        }, delta
        refusals = page.get_by_role("region", name="Recent refusals")
        expect(refusals).to_contain_text("nobody@example.test")
        expect(refusals).to_contain_text("451")
        expect(refusals).to_contain_text("<img src=x onerror=window.__pwned=1>")
        assert page.evaluate("window.__pwned") is None
        assert web.offsite == []
    finally:
        web.close()
        server.stop()
