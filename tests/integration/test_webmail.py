"""The webmail in a real browser: Playwright driving Debian's Chromium, headless,
against a server in a thread on loopback. Mail arrives over SMTP (the MX port).

Every request the browser makes goes through `_guard`: one for a host other than
loopback is recorded and aborted (before any DNS lookup), and the tests assert
none was made. Screenshots of the main screens go to $POSTIER_SCREENSHOTS (default
a directory under the system temp dir); docs/img/ holds copies made that way.
"""

from __future__ import annotations

import base64
import imaplib
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import browser
from tests.support.browser import SCREENSHOTS, Browser
from tests.support.server import PASSWORD, ServerThread, alice_and_bob

pytestmark = pytest.mark.tools

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


class Web(browser.Web):
    """The shared browser context, with dialogs recorded and the webmail's own login."""

    def __init__(self, chromium: Browser, srv: ServerThread) -> None:
        super().__init__(chromium, srv)
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def login(self, address: str = "alice@example.test", password: str = PASSWORD) -> None:
        page = self.page
        page.goto(self.base + "/")
        page.get_by_label("Email").fill(address)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()

    def cookie(self) -> dict[str, Any] | None:
        return next((c for c in self.context.cookies() if c["name"] == "postier_session"), None)

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture
def web(chromium: Browser, server: ServerThread) -> Iterator[Web]:
    w = Web(chromium, server)
    try:
        yield w
    finally:
        w.close()


def stored(data: bytes) -> Any:
    """`data` as the store takes it, with its summary (the store never parses)."""
    from postier.mime import summarize
    from postier.store.models import NewMessage

    return NewMessage(data, summarize(data))


def smtp_deliver(srv: ServerThread, rcpt: str, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("mx"), timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.sendmail("carol@elsewhere.test", [rcpt], message)


def test_login_read_logout(web: Web, server: ServerThread) -> None:
    pdf = b"%PDF-1.4 not really\n" * 20
    smtp_deliver(
        server,
        "alice@example.test",
        b"From: Carol Example <carol@elsewhere.test>\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: Quarterly figures\r\n"
        b"Date: Fri, 04 Dec 2026 09:30:00 +0000\r\n"
        b"Message-ID: <q1@elsewhere.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Hi Alice,\r\n\r\nthe figures are attached. Caf\xc3\xa9 at ten?\r\n\r\nCarol\r\n"
        b"--XX\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=report.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(pdf).replace(b"\n", b"\r\n")
        + b"--XX--\r\n",
    )
    page = web.page
    page.goto(web.base + "/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    web.shot("login")

    web.login()
    folders = page.get_by_role("navigation", name="Folders")
    for name in ("Inbox", "Drafts", "Sent", "Archive", "Junk", "Trash"):
        expect(folders.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(folders.get_by_text("1 unread")).to_be_attached()
    cookie = web.cookie()
    assert cookie is not None
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    web.shot("list")

    page.get_by_role("link", name="Quarterly figures").click()
    expect(page.get_by_role("heading", name="Quarterly figures")).to_be_visible()
    expect(page.get_by_text("Carol Example <carol@elsewhere.test>")).to_be_visible()
    expect(page.get_by_text("Café at ten?")).to_be_visible()
    web.shot("message")

    with page.expect_download() as info:
        page.get_by_role("link", name="report.pdf").click()
    assert Path(info.value.path()).read_bytes() == pdf

    raw = page.request.get(page.url + "/raw")
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert b"Message-ID: <q1@elsewhere.test>" in raw.body()

    # opening it marked it read, in the store IMAP reads
    async def flags() -> frozenset[str]:
        user = await server.store.get_user("alice@example.test")
        inbox = await server.store.get_mailbox(user.id, "INBOX")
        return (await server.store.list_messages(inbox.id))[0].flags

    assert "\\Seen" in server.call(flags())
    expect(folders.get_by_text("unread")).to_have_count(0)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.goto(web.base + "/folder/1")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert web.offsite == [] and web.dialogs == []


def test_wrong_password_counts_in_the_shared_limiter(web: Web, server: ServerThread) -> None:
    web.login(password="wrong")
    expect(web.page.get_by_role("alert")).to_have_text("Wrong email or password.")
    assert server.app is not None
    # the same limiter IMAP, SMTP and POP3 use: the account now waits before a reply
    assert server.app.auth.limiter.delay_for("acct:alice@example.test") > 0
    web.login()
    expect(web.page.get_by_role("button", name="Log out")).to_be_visible()


def test_csrf_token_required(web: Web) -> None:
    page = web.page
    page.goto(web.base + "/")
    anon = web.cookie()
    assert anon is not None
    # login without the token, or with another one, is refused
    for form in (
        {"email": "alice@example.test", "password": PASSWORD},
        {"email": "alice@example.test", "password": PASSWORD, "csrf": "guess"},
    ):
        r = page.request.post(web.base + "/login", form=form, max_redirects=0)
        assert r.status == 403
    web.login()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    folder_url = page.url
    csrf = page.locator("form.logout input[name=csrf]").get_attribute("value")
    assert csrf
    refused = [
        page.request.post(web.base + "/logout", form={}, max_redirects=0),
        page.request.post(web.base + "/logout", form={"csrf": csrf[:-2] + "xx"}, max_redirects=0),
        page.request.post(
            web.base + "/logout",
            form={"csrf": csrf},
            headers={"Origin": "http://evil.example"},
            max_redirects=0,
        ),
    ]
    assert [r.status for r in refused] == [403, 403, 403]
    # still logged in: the refused requests changed nothing
    page.goto(folder_url)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    # with the token it works (so the refusals above are about the token)
    ok = page.request.post(web.base + "/logout", form={"csrf": csrf}, max_redirects=0)
    assert ok.status == 303
    page.goto(folder_url)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_session_id_before_login_is_not_kept(web: Web) -> None:
    page = web.page
    # a session id planted by an attacker is not adopted
    web.context.add_cookies(
        [{"name": "postier_session", "value": "planted-by-attacker", "url": web.base}]
    )
    page.goto(web.base + "/")
    before = web.cookie()
    assert before is not None and before["value"] != "planted-by-attacker"
    web.login()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    after = web.cookie()
    assert after is not None and after["value"] != before["value"]
    # the pre-login id does not open the mailbox
    other = web.context.browser.new_context()
    try:
        other.add_cookies([{"name": "postier_session", "value": before["value"], "url": web.base}])
        p = other.new_page()
        p.goto(page.url)
        expect(p.get_by_role("button", name="Log in")).to_be_visible()
        other.add_cookies([{"name": "postier_session", "value": after["value"], "url": web.base}])
        p.goto(page.url)
        expect(p.get_by_role("button", name="Log out")).to_be_visible()
    finally:
        other.close()


def test_pages_and_sort_by_date(web: Web, server: ServerThread) -> None:
    from postier.store.models import DeliveryTarget

    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def fill() -> None:
        user = await server.store.get_user("alice@example.test")
        # delivered in a shuffled order: the list sorts by the Date: header
        for i in [*range(30, 60), *range(30)]:
            date = format_datetime(start + timedelta(hours=i))
            data = (
                f"From: n{i}@elsewhere.test\r\nSubject: note {i:02d}\r\nDate: {date}\r\n\r\nx\r\n"
            )
            await server.store.deliver(stored(data.encode()), [DeliveryTarget(user.id)])

    server.call(fill())
    web.login()
    page = web.page
    links = page.locator("table.messages a")
    expect(links).to_have_count(50)
    expect(links.first).to_have_text("note 59")
    expect(links.last).to_have_text("note 10")
    page.get_by_role("link", name="Next page").click()
    expect(links).to_have_count(10)
    expect(links.first).to_have_text("note 09")
    expect(links.last).to_have_text("note 00")
    page.get_by_role("link", name="Oldest first").click()
    expect(links.first).to_have_text("note 00")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()


XSS_HTML = r'''
<p>Hello from the corpus</p>
<script>window.__pwned = "script"</script>
<img src=x onerror="window.__pwned='onerror'">
<img src="http://evil.example/track.png" alt="tracker">
<a href="javascript:window.__pwned='js-url'" id=jsurl>javascript link</a>
<a href="&#106;avascript:window.__pwned='entity-js'">entity javascript</a>
<a href="java&#x09;script:window.__pwned='tab-js'">tab javascript</a>
<a href="data:text/html,<script>parent.__pwned='data-url'</script>">data link</a>
<iframe src="data:text/html,<script>parent.__pwned='data-iframe'</script>"></iframe>
<svg onload="window.__pwned='svg'"><script>window.__pwned='svg-script'</script></svg>
<svg><a xlink:href="javascript:window.__pwned='svg-a'"><text y=20>svg link</text></a></svg>
<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned='mxss'"></style>
</mglyph></table></mtext></math>
<div style="width: expression(window.__pwned='expression'); background: url(http://evil.example/bg.png)">css</div>
<p style="color:red;background-image:url('http://evil.example/bg2.png')">styled</p>
<style>@import url(http://evil.example/i.css);
body { background: url(http://evil.example/b.png) }</style>
<link rel=stylesheet href="http://evil.example/x.css">
<base href="http://evil.example/">
<a href="relative">relative after base</a>
<form action="http://evil.example/steal" method=post><input name=q value=secret>
<button id=go>Go</button></form>
<meta http-equiv="refresh" content="0;url=http://evil.example/refresh">
<object data="http://evil.example/o.swf"></object><embed src="http://evil.example/e.swf">
<video poster="http://evil.example/poster.png"><source src="http://evil.example/v.mp4"></video>
<body onload="window.__pwned='body'">
<scr<script>ipt>window.__pwned='split'</scr</script>ipt>
<img """><script>window.__pwned='malformed'</script>">
<noscript><p title="</noscript><img src=x onerror=window.__pwned='noscript'>">
<details open ontoggle="window.__pwned='ontoggle'"><summary>d</summary></details>
<p>End of the corpus</p>
'''

SCRIPT = "<script>window.__pwned='header'</script>"


def test_xss_corpus_runs_nothing_and_loads_nothing(web: Web, server: ServerThread) -> None:
    html_b64 = base64.encodebytes(XSS_HTML.encode()).replace(b"\n", b"\r\n")
    smtp_deliver(
        server,
        "alice@example.test",
        b'From: "<img src=x onerror=window.__pwned=1>" <mallory@elsewhere.test>\r\n'
        b"To: alice@example.test\r\n"
        b"Subject: Corpus <b>bold</b> " + SCRIPT.encode() + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + html_b64
        + b"--B\r\nContent-Type: text/html\r\n"
        b'Content-Disposition: attachment; filename="evil.html"\r\n\r\n'
        b"<script>window.__pwned='attachment'</script>\r\n"
        b"--B\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="<img src=x onerror=window.__pwned=3>.txt"'
        b"\r\n\r\nx\r\n"
        b"--B\r\nContent-Type: image/png\r\nContent-ID: <evil>\r\n\r\n"
        b"<script>window.__pwned='cid'</script>\r\n"
        b"--B--\r\n",
    )
    encoded_subject = "=?utf-8?b?" + base64.b64encode(SCRIPT.encode()).decode() + "?="
    smtp_deliver(
        server,
        "alice@example.test",
        f"From: =?utf-8?q?=3Cscript=3Ewindow.__pwned=3D2=3C/script=3E?= <m@elsewhere.test>\r\n"
        f"Subject: {encoded_subject}\r\n\r\n{SCRIPT}\r\n<img src=x onerror=alert(1)>\r\n".encode(),
    )
    web.login()
    page = web.page
    # names and subjects are text, not markup
    expect(page.get_by_role("link", name="Corpus <b>bold</b>")).to_be_visible()
    expect(page.get_by_role("link", name=SCRIPT, exact=True)).to_be_visible()
    expect(page.get_by_text("<img src=x onerror=window.__pwned=1>")).to_be_visible()

    page.get_by_role("link", name=SCRIPT, exact=True).click()
    expect(page.get_by_text("<img src=x onerror=alert(1)>")).to_be_visible()
    page.go_back()

    page.get_by_role("link", name="Corpus").click()
    body = page.frame_locator("iframe[title='Message body']")
    expect(body.get_by_text("End of the corpus")).to_be_visible()
    expect(page.get_by_text("Remote images blocked")).to_be_visible()
    # click what there is to click inside the frame
    for name in (
        "javascript link",
        "entity javascript",
        "tab javascript",
        "data link",
        "relative after base",
    ):
        body.get_by_text(name).click()
    # nothing that runs, loads, navigates or sends survives the sanitiser (the
    # frame's own <head> has a charset <meta> and a <style>, nothing else)
    for selector in (
        "script",
        "body style",
        "link",
        "base",
        "body meta",
        "meta[http-equiv]",
        "form",
        "input",
        "button",
        "iframe",
        "object",
        "embed",
        "video",
        "svg",
        "math",
        "[onerror]",
        "[onload]",
        "[ontoggle]",
        "[style*=url]",
        "[style*=expression]",
        "a[href^=javascript]",
        "a[href^=data]",
        "a[href=relative]",
        "img[src]",
    ):
        expect(body.locator(selector)).to_have_count(0)
    page.wait_for_timeout(500)  # a 0 s refresh or late handler would have fired
    web.shot("message-html")

    frame = next(f for f in page.frames if f.name == "" and f != page.main_frame)
    assert frame.url.endswith("/html"), frame.url  # the meta refresh did not navigate
    assert page.evaluate("window.__pwned") is None
    assert len(page.frames) == 2
    for f in page.frames:
        assert f.evaluate("window.__pwned") is None, f.url
    assert len(page.context.pages) == 1  # no popup opened
    assert web.offsite == [], web.offsite
    assert web.dialogs == []

    # the HTML attachment is a download, never a page of ours
    href = page.get_by_role("link", name="evil.html").get_attribute("href")
    r = page.request.get(web.base + str(href))
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["x-content-type-options"] == "nosniff"
    frame_headers = page.request.get(page.url + "/html").headers
    assert frame_headers["content-security-policy"].startswith("default-src 'none'")
    expect(
        page.get_by_role("link", name="<img src=x onerror=window.__pwned=3>.txt")
    ).to_be_visible()

    # the new paths that show mail: forwarded and quoted text, search results
    message_url = page.url
    for action in ("Forward", "Reply"):
        page.goto(message_url)
        page.get_by_role("link", name=action, exact=True).click()
        text = page.get_by_label("Message").input_value()
        assert "End of the corpus" in text and "Hello from the corpus" in text
        page.wait_for_timeout(200)
        assert page.evaluate("window.__pwned") is None
    box = page.get_by_role("searchbox", name="Search")
    box.fill(SCRIPT)
    box.press("Enter")
    expect(page.get_by_text("found for")).to_contain_text(SCRIPT)
    page.get_by_role("navigation", name="Folders").get_by_role("link", name="Inbox").click()
    box.fill("corpus")
    box.press("Enter")
    expect(page.get_by_role("link", name="Corpus <b>bold</b>")).to_be_visible()
    page.wait_for_timeout(300)
    for f in page.frames:
        assert f.evaluate("window.__pwned") is None, f.url
    assert web.offsite == [], web.offsite
    assert web.dialogs == []


def test_guard_and_sentinel_catch_what_they_look_for(web: Web) -> None:
    """The XSS test's detectors, shown to fire on an unsanitised page."""
    page = web.page
    page.set_content(
        "<img src=x onerror=\"window.__pwned='control'\">"
        "<img src='http://evil.example/control.png'>"
    )
    page.wait_for_function("window.__pwned === 'control'")
    for _ in range(100):  # the guard runs in this thread, between Playwright calls
        if web.offsite:
            break
        page.wait_for_timeout(50)
    assert "http://evil.example/control.png" in web.offsite


def imap_messages(srv: ServerThread, user: str, folder: str) -> list[bytes]:
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    try:
        imap.login(user, PASSWORD)
        imap.select(folder, readonly=True)
        _, data = imap.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            out.append(parts[0][1])
        return out
    finally:
        imap.logout()


def test_compose_and_send_arrives_over_imap(web: Web, server: ServerThread) -> None:
    web.login()
    page = web.page
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("To").fill("Bob <bob@example.test>")
    page.get_by_label("Cc").fill("")
    page.get_by_label("Subject").fill("Lunch on Thursday? ☕")
    page.get_by_label("Message").fill("Hi Bob,\n\nlunch at noon?\n\nAlice")
    web.shot("compose")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    expect(page.get_by_role("heading", name="Sent")).to_be_visible()
    expect(page.get_by_role("link", name="Lunch on Thursday? ☕")).to_be_visible()

    (received,) = imap_messages(server, "bob@example.test", "INBOX")
    assert b"From: alice@example.test" in received
    assert b"To: Bob <bob@example.test>" in received
    assert b"lunch at noon?" in received
    assert b"Received: " in received  # through the submission pipeline, as on 587
    (sent,) = imap_messages(server, "alice@example.test", "Sent")
    assert b"lunch at noon?" in sent and b"Message-ID: " in sent
    assert web.offsite == []


def test_send_refusals_keep_the_form(web: Web, server: ServerThread) -> None:
    web.login()
    page = web.page
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("To").fill("nobody-here@example.test")
    page.get_by_label("Subject").fill("to no one")
    page.get_by_label("Message").fill("text kept")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("nobody-here@example.test")
    expect(page.get_by_label("Message")).to_have_value("text kept")
    page.get_by_label("To").fill("not an address")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("To:")
    # without the token nothing is sent
    r = page.request.post(
        web.base + "/compose",
        form={"to": "bob@example.test", "subject": "forged", "body": "x"},
        max_redirects=0,
    )
    assert r.status == 403
    assert imap_messages(server, "bob@example.test", "INBOX") == []
    assert imap_messages(server, "alice@example.test", "Sent") == []


def test_reply_all_threads_and_delete(web: Web, server: ServerThread) -> None:
    from postier.store.models import DeliveryTarget

    server.add_user("carol@example.test")

    async def deliver() -> None:
        user = await server.store.get_user("alice@example.test")
        data = (
            b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\n"
            b"Cc: carol@example.test\r\nSubject: Plans\r\n"
            b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
            b"Message-ID: <m1@example.test>\r\nReferences: <m0@example.test>\r\n\r\n"
            b"Let's meet at noon.\r\n"
        )
        await server.store.deliver(stored(data), [DeliveryTarget(user.id)])

    server.call(deliver())
    web.login()
    page = web.page
    page.get_by_role("link", name="Plans").click()
    page.get_by_role("link", name="Reply all", exact=True).click()
    expect(page.get_by_label("To")).to_have_value("Bob <bob@example.test>")
    expect(page.get_by_label("Cc")).to_have_value("carol@example.test")
    expect(page.get_by_label("Subject")).to_have_value("Re: Plans")
    expect(page.get_by_label("Message")).to_have_value(
        "\n\nOn Sat, 05 Dec 2026 10:00:00 +0000, Bob <bob@example.test> wrote:\n"
        "> Let's meet at noon.\n"
    )
    page.get_by_label("Message").press("Control+Home")
    page.get_by_label("Message").type("Noon is fine.")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    for who in ("bob@example.test", "carol@example.test"):
        (got,) = imap_messages(server, who, "INBOX")
        assert b"Subject: Re: Plans" in got
        assert b"In-Reply-To: <m1@example.test>" in got
        assert b"References: <m0@example.test> <m1@example.test>" in got
        assert b"Noon is fine." in got and b"> Let's meet at noon." in got

    # Delete: to Trash, then for good
    page.get_by_role("navigation", name="Folders").get_by_role("link", name="Inbox").click()
    page.get_by_role("link", name="Plans").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Message moved to Trash.")
    expect(page.get_by_role("link", name="Plans")).to_have_count(0)
    assert imap_messages(server, "alice@example.test", "INBOX") == []
    page.get_by_role("navigation", name="Folders").get_by_role("link", name="Trash").click()
    page.get_by_role("link", name="Plans").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Message deleted.")
    assert imap_messages(server, "alice@example.test", "Trash") == []


def test_flag_mark_unread_and_move(web: Web, server: ServerThread) -> None:
    smtp_deliver(
        server, "alice@example.test", b"From: carol@elsewhere.test\r\nSubject: Keep me\r\n\r\nx\r\n"
    )
    web.login()
    page = web.page
    folders = page.get_by_role("navigation", name="Folders")
    page.get_by_role("link", name="Keep me").click()
    page.get_by_role("button", name="Flag", exact=True).click()
    expect(page.get_by_role("button", name="Unflag")).to_be_visible()
    (fetched,) = imap_flags(server, "alice@example.test", "INBOX")
    assert "\\Flagged" in fetched and "\\Seen" in fetched
    page.get_by_role("button", name="Mark unread").click()
    expect(page.get_by_role("status")).to_have_text("Marked as unread.")
    expect(folders.get_by_text("1 unread")).to_be_attached()
    expect(page.get_by_text("(flagged)")).to_be_attached()
    (fetched,) = imap_flags(server, "alice@example.test", "INBOX")
    assert "\\Seen" not in fetched and "\\Flagged" in fetched
    page.get_by_role("link", name="Keep me").click()
    page.get_by_label("Move to").select_option(label="Archive")
    page.get_by_role("button", name="Move", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Message moved.")
    assert imap_flags(server, "alice@example.test", "INBOX") == []
    (fetched,) = imap_flags(server, "alice@example.test", "Archive")
    assert "\\Flagged" in fetched

    # another user's folder is refused like a missing one, and nothing moves
    async def bobs_inbox() -> int:
        bob = await server.store.get_user("bob@example.test")
        return int((await server.store.get_mailbox(bob.id, "INBOX")).id)

    folders.get_by_role("link", name="Archive").click()
    page.get_by_role("link", name="Keep me").click()
    csrf = page.locator("form.logout input[name=csrf]").get_attribute("value")
    r = page.request.post(
        page.url + "/move",
        form={"csrf": str(csrf), "to": str(server.call(bobs_inbox()))},
        max_redirects=0,
    )
    assert r.status == 404
    assert len(imap_flags(server, "alice@example.test", "Archive")) == 1
    assert imap_flags(server, "bob@example.test", "INBOX") == []


def imap_flags(srv: ServerThread, user: str, folder: str) -> list[str]:
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    try:
        imap.login(user, PASSWORD)
        imap.select(folder, readonly=True)
        _, data = imap.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(FLAGS)")
            out.append(parts[0].decode())
        return out
    finally:
        imap.logout()


def test_junk_reasons_not_junk_and_junk_train_the_filter(web: Web, server: ServerThread) -> None:
    from postier.store.models import DeliveryTarget

    async def deliver() -> None:
        user = await server.store.get_user("alice@example.test")
        data = (
            b"From: promo@elsewhere.test\r\nSubject: Cheap watches\r\n"
            b"X-Spam-Status: Yes, score=7.5 required=5.0 tests=BAYES_99,RDNS_NONE\r\n"
            b"X-Spam-Report: * +5.5 BAYES_99 learned spam probability 0.999\r\n"
            b"\t* +2.0 RDNS_NONE the client has no reverse DNS\r\n"
            b"\t* +0.1 X <script>window.__pwned='reason'</script>\r\n"
            b"Authentication-Results: mail.example.test; spf=fail smtp.mailfrom=elsewhere.test;\r\n"
            b"\tdkim=pass header.d=elsewhere.test header.s=sel;\r\n"
            b"\tdkim=fail (<script>window.__pwned='comment'</script>)\r\n"
            b"\t header.d=\"<img src=x onerror=window.__pwned='domain'>\";\r\n"
            b"\tdmarc=fail (p=REJECT dis=REJECT) header.from=elsewhere.test\r\n"
            b"Authentication-Results: relay.example; spf=pass smtp.mailfrom=bank.example\r\n"
            b"\r\nbuy now\r\n"
        )
        await server.store.deliver(stored(data), [DeliveryTarget(user.id, "Junk")])

    async def counts() -> tuple[int, int]:
        user = await server.store.get_user("alice@example.test")
        c = await server.store.bayes_counts(user.id, ["cheap"])
        return c.spam_messages, c.ham_messages

    server.call(deliver())
    web.login()
    page = web.page
    folders = page.get_by_role("navigation", name="Folders")
    folders.get_by_role("link", name="Junk").click()
    page.get_by_role("link", name="Cheap watches").click()
    why = page.get_by_role("region", name="Why is this in Junk?")
    expect(why.get_by_role("list").first.get_by_role("listitem")).to_have_text(
        [
            "+5.5 BAYES_99 learned spam probability 0.999",
            "+2.0 RDNS_NONE the client has no reverse DNS",
            "+0.1 X <script>window.__pwned='reason'</script>",
        ]
    )
    # the sender checks of this server's Authentication-Results, in plain words;
    # the field of another authserv-id (the sender's claim) is not shown
    expect(why.get_by_role("list").nth(1).get_by_role("listitem")).to_have_text(
        [
            "✗ The sender's domain elsewhere.test did not authorise the server that delivered"
            " this message to send its mail (SPF fail).",
            "✓ The signature of elsewhere.test is valid (DKIM pass).",
            "✗ The signature of <img src=x onerror=window.__pwned='domain'> does not match the"
            " message: it was changed on the way, or forged (DKIM fail,"
            " <script>window.__pwned='comment'</script>).",
            "✗ The message fails elsewhere.test's DMARC policy (DMARC fail, policy reject).",
        ]
    )
    expect(why).not_to_contain_text("bank.example")
    assert page.evaluate("window.__pwned") is None  # the values are text, not markup
    expect(page.locator("details.verdicts")).to_have_count(0)  # the region says it all
    web.shot("junk")
    page.get_by_role("button", name="Not junk").click()
    expect(page.get_by_role("status")).to_contain_text("Moved to Inbox")
    assert len(imap_flags(server, "alice@example.test", "INBOX")) == 1
    assert server.call(counts()) == (0, 1)

    folders.get_by_role("link", name="Inbox").click()
    page.get_by_role("link", name="Cheap watches").click()
    expect(page.get_by_role("region", name="Why is this in Junk?")).to_have_count(0)
    page.get_by_role("button", name="Junk", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Moved to Junk")
    assert len(imap_flags(server, "alice@example.test", "Junk")) == 1
    assert server.call(counts()) == (1, 0)  # learned again, as the other class


@pytest.fixture
def checked(tmp_path: Path) -> Iterator[ServerThread]:
    """A server that checks senders (the fixture DNS server): elsewhere.test
    authorises 127.0.0.1 (SPF) with a DMARC policy, spoofed.test authorises
    nobody and asks for quarantine; 127.0.0.1's name is client.test."""
    from tests.support.dnsserver import DnsTestServer

    with DnsTestServer() as dns:
        dns.set("elsewhere.test", {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]})
        dns.set("_dmarc.elsewhere.test", {"TXT": ["v=DMARC1; p=reject"]})
        dns.set("spoofed.test", {"TXT": ["v=spf1 -all"]})
        dns.set("_dmarc.spoofed.test", {"TXT": ["v=DMARC1; p=quarantine"]})
        dns.set("1.0.0.127.in-addr.arpa", {"PTR": ["client.test"]})
        dns.set("client.test", {"A": ["127.0.0.1"]})
        with alice_and_bob(
            tmp_path,
            f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\ntimeout = "2s"\n'
            "[greylist]\nenabled = false\n",
        ) as srv:
            yield srv


def test_sender_checks_in_plain_words_and_never_forged_ones(
    chromium: Browser, checked: ServerThread
) -> None:
    """Intake's SPF/DMARC/iprev results in words: in Junk in "Why is this in
    Junk?", for any message as a compact line that opens to sentences. Fields
    claiming our authserv-id that came with a message, over SMTP or over
    submission, are removed at intake and never shown."""
    forged = (
        b"Authentication-Results: mail.example.test; dkim=pass header.d=bank.example;\r\n"
        b"\tdmarc=pass header.from=bank.example\r\n"
        b"X-Spam-Report: * -9.0 FORGED_HAM trust me\r\n"
    )
    with smtplib.SMTP("127.0.0.1", checked.port("mx"), timeout=10) as smtp:
        smtp.ehlo("client.test")
        for sender, subject in (("carol@elsewhere.test", "Honest"), ("m@spoofed.test", "Spoofed")):
            smtp.sendmail(
                sender,
                ["alice@example.test"],
                forged
                + f"From: {sender}\r\nTo: alice@example.test\r\n"
                f"Subject: {subject}\r\n\r\nhello\r\n".encode(),
            )
    with smtplib.SMTP("127.0.0.1", checked.port("submission"), timeout=10) as c:
        c.login("bob@example.test", PASSWORD)
        c.sendmail(
            "bob@example.test",
            ["alice@example.test"],
            forged + b"From: bob@example.test\r\nTo: alice@example.test\r\n"
            b"Subject: Submitted\r\n\r\nhello\r\n",
        )
    for folder in ("INBOX", "Junk"):
        for m in imap_messages(checked, "alice@example.test", folder):
            assert b"bank.example" not in m and b"FORGED_HAM" not in m

    web = Web(chromium, checked)
    try:
        web.login()
        page = web.page
        page.get_by_role("link", name="Honest").click()
        checks = page.locator("details.verdicts")
        expect(checks.locator("summary")).to_have_text(
            "Sender checks: Reverse DNS pass 127.0.0.1, SPF pass elsewhere.test,"
            " DMARC pass elsewhere.test"
        )
        expect(checks.get_by_role("listitem").first).not_to_be_visible()
        checks.locator("summary").click()
        expect(checks.get_by_role("listitem")).to_have_text(
            [
                "✓ The sending server's address 127.0.0.1 has a name, client.test, that leads"
                " back to it (iprev pass).",
                "✓ The sender's domain elsewhere.test authorised the server that delivered this"
                " message to send its mail (SPF pass).",
                "✓ The message passes elsewhere.test's DMARC policy (DMARC pass).",
            ]
        )
        expect(page.locator("main")).not_to_contain_text("bank.example")
        web.shot("checks")

        nav = page.get_by_role("navigation", name="Folders")
        nav.get_by_role("link", name="Inbox").click()
        page.get_by_role("link", name="Submitted").click()
        expect(page.get_by_role("heading", name="Submitted")).to_be_visible()
        expect(page.locator("details.verdicts")).to_have_count(0)
        expect(page.locator("main")).not_to_contain_text("bank.example")

        nav.get_by_role("link", name="Junk").click()
        page.get_by_role("link", name="Spoofed").click()
        why = page.get_by_role("region", name="Why is this in Junk?")
        expect(why.get_by_role("list").nth(1).get_by_role("listitem")).to_have_text(
            [
                "✓ The sending server's address 127.0.0.1 has a name, client.test, that leads"
                " back to it (iprev pass).",
                "✗ The sender's domain spoofed.test did not authorise the server that delivered"
                " this message to send its mail (SPF fail).",
                "✗ The message fails spoofed.test's DMARC policy (DMARC fail, policy quarantine).",
            ]
        )
        expect(why).not_to_contain_text("FORGED_HAM")
        assert web.offsite == []
    finally:
        web.close()


def test_folders_create_rename_delete(web: Web, server: ServerThread) -> None:
    web.login()
    page = web.page
    nav = page.get_by_role("navigation", name="Folders")
    nav.get_by_role("link", name="Manage folders").click()
    # special folders cannot be renamed or deleted
    expect(page.get_by_role("button", name="Rename Inbox")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete folder Sent")).to_have_count(0)
    page.get_by_label("New folder").fill("Receipts")
    page.get_by_role("button", name="Create folder").click()
    expect(page.get_by_role("status")).to_have_text("Folder created.")
    expect(nav.get_by_role("link", name="Receipts", exact=True)).to_be_visible()
    page.get_by_label("New folder").fill("Receipts")
    page.get_by_role("button", name="Create folder").click()
    expect(page.get_by_role("alert")).to_contain_text("Cannot create 'Receipts'")
    page.get_by_label("New name for Receipts").fill("Paid receipts")
    page.get_by_role("button", name="Rename Receipts").click()
    expect(page.get_by_role("status")).to_have_text("Folder renamed.")
    expect(nav.get_by_role("link", name="Paid receipts", exact=True)).to_be_visible()

    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    try:
        imap.login("alice@example.test", PASSWORD)
        _, listed = imap.list()
        assert any(line.endswith(b'"Paid receipts"') for line in listed), listed
    finally:
        imap.logout()

    page.get_by_role("button", name="Delete folder Paid receipts").click()
    expect(page.get_by_role("status")).to_have_text("Folder deleted.")
    expect(nav.get_by_role("link", name="Paid receipts", exact=True)).to_have_count(0)
    # Inbox cannot be renamed even by a hand-made request
    csrf = page.locator("form.logout input[name=csrf]").get_attribute("value")
    inbox = nav.get_by_role("link", name="Inbox").get_attribute("href")
    r = page.request.post(
        web.base + f"{inbox.replace('/folder/', '/folders/')}/rename",
        form={"csrf": str(csrf), "name": "Mine"},
        max_redirects=0,
    )
    assert r.status == 404


def deliver_direct(srv: ServerThread, rcpt: str, data: bytes, folder: str = "INBOX") -> None:
    """Into the store at once, as intake would (no SMTP round trip)."""
    from postier.store.models import DeliveryTarget

    async def go() -> None:
        user = await srv.store.get_user(rcpt)
        await srv.store.deliver(stored(data), [DeliveryTarget(user.id, folder)])

    srv.call(go())


def test_search_box(web: Web, server: ServerThread) -> None:
    notes = [
        (
            "Carol <carol@elsewhere.test>",
            "alice@example.test",
            "Budget 2027",
            "2026-11-02",
            "numbers inside",
        ),
        (
            "Dave <dave@elsewhere.test>",
            "alice@example.test",
            "Holiday plans",
            "2026-11-20",
            "the budget is tight",
        ),
        (
            "Erin <erin@elsewhere.test>",
            "team@elsewhere.test",
            "Minutes",
            "2026-12-01",
            "nothing here",
        ),
    ]
    for frm, to, subject, day, text in notes:
        date = format_datetime(datetime.fromisoformat(day + "T10:00:00+00:00"))
        deliver_direct(
            server,
            "alice@example.test",
            f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\n\r\n{text}\r\n".encode(),
        )
    web.login()
    page = web.page
    links = page.locator("table.messages td.subject a")
    box = page.get_by_role("searchbox", name="Search")

    def search(q: str) -> list[str]:
        box.fill(q)
        box.press("Enter")
        expect(page.get_by_text("found for")).to_be_visible()
        return sorted(links.all_inner_texts())

    # a word: in any of From, To, Cc, Subject or the text
    assert search("budget") == ["Budget 2027", "Holiday plans"]
    web.shot("search")
    assert search("from:dave") == ["Holiday plans"]
    assert search("to:team") == ["Minutes"]
    assert search("subject:budget") == ["Budget 2027"]
    assert search("body:tight") == ["Holiday plans"]
    assert search('"numbers inside"') == ["Budget 2027"]
    assert search("after:2026-11-15") == ["Holiday plans", "Minutes"]
    assert search("before:2026-11-15") == ["Budget 2027"]
    assert search("budget after:2026-11-15") == ["Holiday plans"]
    assert search("nowhere-to-be-found") == []
    expect(page.get_by_text("No messages.")).to_be_visible()
    box.fill("after:yesterday")
    box.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("is not a day")
    # the same answers IMAP SEARCH gives (one matcher)
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    try:
        imap.login("alice@example.test", PASSWORD)
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "TEXT", "budget")
        assert len(data[0].split()) == 2
    finally:
        imap.logout()
    page.get_by_role("link", name="Clear search").click()
    expect(links).to_have_count(3)


def test_new_mail_and_flag_changes_appear_without_reload(web: Web, server: ServerThread) -> None:
    deliver_direct(
        server,
        "alice@example.test",
        b"From: carol@elsewhere.test\r\nSubject: Already here\r\n\r\nx\r\n",
    )
    web.login()
    page = web.page
    expect(page.get_by_role("link", name="Already here")).to_be_visible()
    expect(page.locator("body[data-live-ready='1']")).to_be_attached()
    page.evaluate("window.__sameDocument = true")
    folders = page.get_by_role("navigation", name="Folders")
    expect(folders.get_by_text("1 unread")).to_be_attached()
    smtp_deliver(
        server,
        "alice@example.test",
        b"From: Dave <dave@elsewhere.test>\r\nTo: alice@example.test\r\n"
        b"Subject: Arrived live\r\n\r\nhello\r\n",
    )
    expect(page.get_by_role("link", name="Arrived live")).to_be_visible(timeout=5000)
    expect(folders.get_by_text("2 unread")).to_be_attached()
    # a flag set over IMAP shows too
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    try:
        imap.login("alice@example.test", PASSWORD)
        imap.select("INBOX")
        imap.store("1:*", "+FLAGS", "(\\Flagged \\Seen)")
    finally:
        imap.logout()
    expect(page.get_by_text("(flagged)")).to_have_count(2)
    expect(folders.get_by_text("unread")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    assert web.offsite == [] and web.dialogs == []


def test_live_stream_needs_a_session_and_ends_with_it(web: Web, server: ServerThread) -> None:
    page = web.page
    page.goto(web.base + "/")
    r = page.request.get(web.base + "/events")
    assert r.status == 401


def test_sort_filter_and_act_on_several(web: Web, server: ServerThread) -> None:
    for i, (frm, subject, size) in enumerate(
        [
            ("Zed <z@elsewhere.test>", "apples", 10),
            ("Amy <a@elsewhere.test>", "Re: cherries", 3000),
            ("Moe <m@elsewhere.test>", "bananas", 500),
        ]
    ):
        date = format_datetime(datetime(2026, 10, 1 + i, tzinfo=UTC))
        deliver_direct(
            server,
            "alice@example.test",
            f"From: {frm}\r\nSubject: {subject}\r\nDate: {date}\r\n\r\n{'x' * size}\r\n".encode(),
        )
    web.login()
    page = web.page
    links = page.locator("table.messages td.subject a")
    expect(links).to_have_text(["bananas", "Re: cherries", "apples"])  # newest first
    page.get_by_role("link", name="Sort by From").click()
    expect(links).to_have_text(["Re: cherries", "bananas", "apples"])
    page.get_by_role("link", name="Sort by Subject").click()
    expect(links).to_have_text(["apples", "bananas", "Re: cherries"])  # "Re:" disregarded
    page.get_by_role("link", name="Reverse order").click()
    expect(links).to_have_text(["Re: cherries", "bananas", "apples"])
    page.get_by_role("link", name="Sort by Size").click()
    expect(links).to_have_text(["Re: cherries", "bananas", "apples"])  # largest first

    # select two, mark read, flag; the filters then show what changed
    page.get_by_role("checkbox", name="Select apples").check()
    page.get_by_role("checkbox", name="Select bananas").check()
    web.shot("select")
    page.get_by_role("button", name="Mark selected read").click()
    expect(page.get_by_role("status")).to_have_text("Marked as read.")
    page.get_by_role("link", name="Only unread").click()
    expect(links).to_have_text(["Re: cherries"])
    page.get_by_role("link", name="All", exact=True).click()
    page.get_by_role("checkbox", name="Select Re: cherries").check()
    page.get_by_role("checkbox", name="Select apples").check()
    page.get_by_role("button", name="Flag selected").click()
    expect(page.get_by_role("status")).to_have_text("Flagged.")
    page.get_by_role("link", name="Only flagged").click()
    expect(links).to_have_count(2)
    flags = imap_flags(server, "alice@example.test", "INBOX")
    assert sum("\\Flagged" in f for f in flags) == 2 and sum("\\Seen" in f for f in flags) == 2

    # move two to Archive, then delete one to Trash
    page.get_by_role("link", name="All", exact=True).click()
    page.get_by_role("checkbox", name="Select apples").check()
    page.get_by_role("checkbox", name="Select bananas").check()
    page.get_by_label("Move selected to").select_option(label="Archive")
    page.get_by_role("button", name="Move selected").click()
    expect(page.get_by_role("status")).to_have_text("Message moved.")
    expect(links).to_have_text(["Re: cherries"])
    assert len(imap_flags(server, "alice@example.test", "Archive")) == 2
    page.get_by_role("checkbox", name="Select Re: cherries").check()
    page.get_by_role("button", name="Delete selected").click()
    expect(page.get_by_role("status")).to_have_text("Message moved to Trash.")
    assert imap_flags(server, "alice@example.test", "INBOX") == []
    assert len(imap_flags(server, "alice@example.test", "Trash")) == 1
    # nothing selected: nothing happens, and the page says why
    page.get_by_role("navigation", name="Folders").get_by_role("link", name="Archive").click()
    page.get_by_role("button", name="Delete selected").click()
    expect(page.get_by_role("status")).to_have_text("Select one or more messages first.")
    assert len(imap_flags(server, "alice@example.test", "Archive")) == 2
    # without the token nothing happens
    r = page.request.post(
        page.url.split("?")[0] + "/selected", form={"sel": "1", "what": "delete"}, max_redirects=0
    )
    assert r.status == 403
    assert len(imap_flags(server, "alice@example.test", "Archive")) == 2


def test_thread_view_groups_a_conversation(web: Web, server: ServerThread) -> None:
    for i, subject in enumerate(["Trip", "Re: Trip", "RE: Re: Trip", "Other"]):
        date = format_datetime(datetime(2026, 9, 1 + i, tzinfo=UTC))
        deliver_direct(
            server,
            "alice@example.test",
            f"From: c@elsewhere.test\r\nSubject: {subject}\r\nDate: {date}\r\n\r\nx\r\n".encode(),
        )
    web.login()
    page = web.page
    links = page.locator("table.messages td.subject a")
    expect(links).to_have_count(4)
    page.get_by_role("link", name="Group conversations").click()
    expect(links).to_have_text(["Other", "RE: Re: Trip"])
    expect(page.get_by_text("(3 messages)")).to_be_visible()


def test_keyboard_shortcuts(web: Web, server: ServerThread) -> None:
    for i in range(3):
        date = format_datetime(datetime(2026, 8, 1 + i, tzinfo=UTC))
        deliver_direct(
            server,
            "alice@example.test",
            f"From: c@elsewhere.test\r\nSubject: key {i}\r\nDate: {date}\r\n"
            f"Message-ID: <k{i}@elsewhere.test>\r\n\r\nx\r\n".encode(),
        )
    web.login()
    page = web.page
    expect(page.get_by_role("link", name="key 2")).to_be_visible()
    ready = page.locator("body[data-keys='1']")
    expect(ready).to_be_attached()  # the script has run
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.get_by_role("link", name="key 1")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="key 1")).to_be_visible()
    expect(ready).to_be_attached()
    page.keyboard.press("j")
    expect(page.get_by_role("heading", name="key 0")).to_be_visible()
    expect(ready).to_be_attached()
    page.keyboard.press("k")
    expect(page.get_by_role("heading", name="key 1")).to_be_visible()
    expect(ready).to_be_attached()
    page.keyboard.press("r")
    expect(page.get_by_label("Subject")).to_have_value("Re: key 1")
    page.go_back()
    expect(ready).to_be_attached()
    page.keyboard.press("a")
    expect(page.get_by_label("Subject")).to_have_value("Re: key 1")
    page.go_back()
    expect(ready).to_be_attached()
    page.keyboard.press("f")
    expect(page.get_by_label("Subject")).to_have_value("Fwd: key 1")
    page.go_back()
    expect(ready).to_be_attached()
    page.keyboard.press("#")
    expect(page.get_by_role("status")).to_have_text("Message moved to Trash.")
    expect(ready).to_be_attached()
    page.keyboard.press("c")
    expect(page.get_by_role("heading", name="New message")).to_be_visible()
    # typing in a field is typing, not a shortcut
    page.get_by_label("Message").type("jkr#")
    expect(page.get_by_label("Message")).to_have_value("jkr#")
    page.get_by_role("navigation", name="Folders").get_by_role("link", name="Inbox").click()
    expect(ready).to_be_attached()
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox", name="Search")).to_be_focused()


def test_forward_with_attachments_bcc_and_suggestions(web: Web, server: ServerThread) -> None:
    server.add_user("carol@example.test")
    pdf = b"%PDF-1.4 forwarded\n" * 10
    deliver_direct(
        server,
        "alice@example.test",
        b"From: Dave <dave@elsewhere.test>\r\nTo: alice@example.test\r\n"
        b"Subject: Report\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nSee the report.\r\n"
        b"--XX\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=report.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(pdf).replace(b"\n", b"\r\n")
        + b"--XX--\r\n",
    )
    web.login()
    page = web.page
    page.get_by_role("link", name="Report").click()
    page.get_by_role("link", name="Forward").click()
    expect(page.get_by_role("heading", name="Forward")).to_be_visible()
    expect(page.get_by_label("Subject")).to_have_value("Fwd: Report")
    body = page.get_by_label("Message").input_value()
    assert "---------- Forwarded message ----------" in body
    assert "> From: Dave <dave@elsewhere.test>" in body and "> See the report." in body
    expect(page.get_by_text("report.pdf")).to_be_visible()
    web.shot("forward")
    # past correspondents are suggested
    suggestions = page.locator("datalist#correspondents option")
    assert "Dave <dave@elsewhere.test>" in [o.get_attribute("value") for o in suggestions.all()]
    page.get_by_label("To").fill("bob@example.test")
    page.get_by_label("Blind copy").fill("carol@example.test")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    for who in ("bob@example.test", "carol@example.test"):
        (got,) = imap_messages(server, who, "INBOX")
        assert b"Subject: Fwd: Report" in got and b"> See the report." in got
        assert b"Bcc" not in got  # the recipients never see the blind copies
        assert base64.encodebytes(pdf)[:40] in got.replace(b"\r\n", b"\n")
        assert b'filename="report.pdf"' in got
    (sent,) = imap_messages(server, "alice@example.test", "Sent")
    assert b"Bcc: carol@example.test" in sent


def test_a_forward_reads_its_attachments_in_one_parse(
    web: Web, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sending a forward carries every attachment of the original from one parse
    of it, not one parse each (a message of n attachments cost n parses)."""
    from postier.web.webmail import render

    count = 30
    deliver_direct(
        server,
        "alice@example.test",
        b"From: Dave <dave@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Files\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nThe files.\r\n"
        + b"".join(
            b"--XX\r\nContent-Type: text/csv\r\n"
            b"Content-Disposition: attachment; filename=f%d.csv\r\n\r\nrow,%d\r\n" % (i, i)
            for i in range(count)
        )
        + b"--XX--\r\n",
    )
    web.login()
    page = web.page
    page.get_by_role("link", name="Files").click()
    page.get_by_role("link", name="Forward").click()
    page.get_by_label("To").fill("bob@example.test")
    parses: list[int] = []
    real = render.parse

    def counted(data: bytes) -> Any:
        parses.append(len(data))
        return real(data)

    monkeypatch.setattr(render, "parse", counted)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    (got,) = imap_messages(server, "bob@example.test", "INBOX")
    assert all(b'filename="f%d.csv"' % i in got for i in range(count))
    assert len(parses) <= 3, len(parses)


def test_a_message_of_many_attachments_lists_some_and_counts_the_rest(
    web: Web, server: ServerThread
) -> None:
    from postier.web.webmail.routes import ATTACHMENTS_SHOWN

    count = ATTACHMENTS_SHOWN + 5
    deliver_direct(
        server,
        "alice@example.test",
        b"From: dave@elsewhere.test\r\nSubject: Heap\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        + b"".join(
            b"--XX\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=f%d.bin\r\n\r\nx\r\n" % i
            for i in range(count)
        )
        + b"--XX--\r\n",
    )
    web.login()
    page = web.page
    page.get_by_role("link", name="Heap").click()
    expect(page.get_by_text("And 5 more:")).to_be_visible()
    assert page.locator("ul.attachments li").count() == ATTACHMENTS_SHOWN
    page.get_by_role("link", name="Forward").click()
    expect(page.get_by_text("and 5 more")).to_be_visible()


def test_attachments_upload_and_limit(web: Web, server: ServerThread) -> None:
    web.login()
    page = web.page
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("To").fill("bob@example.test")
    page.get_by_label("Subject").fill("Files")
    page.get_by_label("Message").fill("two files")
    page.get_by_label("Attach files").set_input_files(
        [
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"plain notes\n"},
            {
                "name": "<img src=x onerror=window.__pwned=1>.bin",
                "mimeType": "application/octet-stream",
                "buffer": bytes(range(256)),
            },
        ]
    )
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    (got,) = imap_messages(server, "bob@example.test", "INBOX")
    assert b'filename="notes.txt"' in got
    # bob reads it in the webmail: the HTML in a file name is text
    bob = Web(web_chromium(web), server)
    try:
        bob.login("bob@example.test")
        bob.page.get_by_role("link", name="Files").click()
        expect(bob.page.get_by_role("link", name="notes.txt")).to_be_visible()
        evil = bob.page.get_by_role("link", name="<img src=x onerror=window.__pwned=1>.bin")
        with bob.page.expect_download() as info:
            evil.click()
        assert Path(info.value.path()).read_bytes() == bytes(range(256))
        assert bob.page.evaluate("window.__pwned") is None
    finally:
        bob.close()


def test_attachments_past_the_limit_are_refused(chromium: Browser, tmp_path: Path) -> None:
    from tests.support.server import thread_server

    server = thread_server(tmp_path, "[smtp.limits]\nmax_message_size = 40000\n")
    server.add_user("alice@example.test")
    server.add_user("bob@example.test")
    web = Web(chromium, server)
    try:
        web.login()
        page = web.page
        page.get_by_role("link", name="Compose").click()
        csrf = page.locator("form.logout input[name=csrf]").get_attribute("value")

        def post(size: int, token: str | None) -> Any:
            form: dict[str, Any] = {
                "to": "bob@example.test",
                "subject": f"{size} octets",
                "body": "x",
                "action": "send",
                "files": {
                    "name": "f.bin",
                    "mimeType": "application/octet-stream",
                    "buffer": b"\0" * size,
                },
            }
            if token is not None:
                form["csrf"] = token
            return page.request.post(web.base + "/compose", multipart=form, max_redirects=0)

        assert post(20_000, str(csrf)).status == 303  # within 40000 * 3/4: sent
        for size in (30_001, 200_000):  # past it, and far past (not read whole)
            r = post(size, str(csrf))
            assert r.status in (400, 413) and "At most" in r.text()
        # a multipart form without the token is refused like any other
        assert post(10, None).status == 403
        subjects = [
            m.split(b"Subject: ")[1].split(b"\r\n")[0]
            for m in imap_messages(server, "bob@example.test", "INBOX")
        ]
        assert subjects == [b"20000 octets"]
        # the page says it before sending, too
        page.get_by_label("Attach files").set_input_files(
            [{"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"\0" * 31_000}]
        )
        assert page.get_by_label("Attach files").evaluate("e => e.validity.valid") is False
    finally:
        web.close()
        server.stop()


def web_chromium(web: Web) -> Browser:
    b = Browser.__new__(Browser)
    b.browser = web.context.browser
    return b


def test_drafts_save_edit_and_send(web: Web, server: ServerThread) -> None:
    web.login()
    page = web.page
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("To").fill("bob@example.test")
    page.get_by_label("Subject").fill("Half written")
    page.get_by_label("Message").fill("first words")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_have_text("Draft saved.")
    expect(page.get_by_role("heading", name="Drafts")).to_be_visible()
    (flags,) = imap_flags(server, "alice@example.test", "Drafts")
    assert "\\Draft" in flags
    page.get_by_role("link", name="Half written").click()
    page.get_by_role("link", name="Edit draft").click()
    expect(page.get_by_label("To")).to_have_value("bob@example.test")
    expect(page.get_by_label("Message")).to_have_value("first words\n")
    page.get_by_label("Message").fill("first words, and more")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_have_text("Draft saved.")
    (draft,) = imap_messages(server, "alice@example.test", "Drafts")  # replaced, not added
    assert b"and more" in draft
    page.get_by_role("link", name="Half written").click()
    page.get_by_role("link", name="Edit draft").click()
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    assert imap_messages(server, "alice@example.test", "Drafts") == []
    (got,) = imap_messages(server, "bob@example.test", "INBOX")
    assert b"first words, and more" in got


def tiny_png() -> bytes:
    """A valid 1×1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_inline_images_shown_remote_images_on_request(web: Web, server: ServerThread) -> None:
    html = (
        "<p>Logo:</p><img alt=logo id=logo src='cid:logo%40example.test'>"
        "<img alt=svg src='cid:vector@example.test'>"
        "<img alt=pixel src='http://evil.example/pixel.png'>"
        "<p>Done</p>"
    )
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='parent.__pwned=1'/>"
    deliver_direct(
        server,
        "alice@example.test",
        b"From: shop@elsewhere.test\r\nSubject: Newsletter\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/related; boundary=R\r\n\r\n"
        b"--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode() + b"\r\n"
        b"--R\r\nContent-Type: image/png\r\nContent-ID: <logo@example.test>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(tiny_png()).replace(b"\n", b"\r\n")
        + b"--R\r\nContent-Type: image/svg+xml\r\nContent-ID: <vector@example.test>\r\n\r\n"
        + svg
        + b"\r\n--R--\r\n",
    )
    web.login()
    page = web.page
    page.get_by_role("link", name="Newsletter").click()
    body = page.frame_locator("iframe[title='Message body']")
    expect(body.get_by_text("Done")).to_be_visible()
    # the cid: image is served from the message, same origin; the SVG one is not
    logo = body.get_by_role("img", name="logo")
    expect(logo).to_have_js_property("naturalWidth", 1)
    src = str(logo.get_attribute("src"))
    assert src.startswith(web.base + "/folder/") and "/cid/" in src
    assert body.get_by_role("img", name="svg").get_attribute("src") is None
    expect(page.get_by_text("Remote images blocked (1)")).to_be_visible()
    web.shot("images")
    assert web.offsite == []
    # a forged token gets nothing
    assert page.request.get(src.split("?t=")[0] + "?t=" + "0" * 32).status == 404

    page.get_by_role("button", name="Load remote images").click()
    expect(body.get_by_text("Done")).to_be_visible()
    for _ in range(100):
        if web.offsite:
            break
        page.wait_for_timeout(50)
    assert web.offsite == ["http://evil.example/pixel.png"]  # asked for, and the guard stopped it
    frame_csp = page.request.get(page.url.replace("?images=1", "/html?images=1")).headers
    assert "img-src http: https:" in frame_csp["content-security-policy"]
    # the next view blocks them again
    web.offsite.clear()
    page.goto(page.url.split("?")[0])
    expect(body.get_by_text("Done")).to_be_visible()
    page.wait_for_timeout(300)
    assert web.offsite == []
    assert page.evaluate("window.__pwned") is None


def test_many_inline_images_parse_the_message_once(
    web: Web, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame asks for every `cid:` image at once; they are served from one
    parse of the message, not one each (a message of n images cost n parses of
    all of it: 3,000 images in 8 MB were 80 s of CPU for one reader)."""
    from postier.web.webmail import render

    count = 40
    png = base64.encodebytes(tiny_png()).replace(b"\n", b"\r\n")
    html = "".join(f"<img alt=i{i} src='cid:i{i}@example.test'>" for i in range(count))
    deliver_direct(
        server,
        "alice@example.test",
        b"From: shop@elsewhere.test\r\nSubject: Gallery\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/related; boundary=R\r\n\r\n"
        b"--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + html.encode()
        + b"<p>End</p>\r\n"
        + b"".join(
            b"--R\r\nContent-Type: image/png\r\nContent-ID: <i%d@example.test>\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" % i + png
            for i in range(count)
        )
        + b"--R--\r\n",
    )
    parses: list[int] = []
    real = render.parse

    def counted(data: bytes) -> Any:
        parses.append(len(data))
        return real(data)

    monkeypatch.setattr(render, "parse", counted)
    web.login()
    page = web.page
    page.get_by_role("link", name="Gallery").click()
    body = page.frame_locator("iframe[title='Message body']")
    expect(body.get_by_text("End")).to_be_visible()
    for i in range(count):
        expect(body.get_by_role("img", name=f"i{i}", exact=True)).to_have_js_property(
            "naturalWidth", 1
        )
    # the page, its frame and the images: one parse each
    assert len(parses) <= 3, len(parses)


def test_phone_layout(web: Web, server: ServerThread) -> None:
    """At phone size every part is reachable without sideways scrolling."""
    for i in range(4):
        date = format_datetime(datetime(2026, 12, 1 + i, 9, tzinfo=UTC))
        deliver_direct(
            server,
            "alice@example.test",
            f"From: Carol Example <carol@elsewhere.test>\r\nSubject: Phone note {i}\r\n"
            f"Date: {date}\r\n\r\nA short note, number {i}, read on a phone.\r\n".encode(),
        )
    page = web.page
    page.set_viewport_size({"width": 390, "height": 844})
    web.login()
    folders = page.get_by_role("navigation", name="Folders")
    for name in ("Inbox", "Sent", "Trash"):
        expect(folders.get_by_role("link", name=name, exact=True)).to_be_in_viewport()
    expect(page.get_by_role("searchbox", name="Search")).to_be_in_viewport()
    expect(page.get_by_role("link", name="Phone note 3")).to_be_visible()

    def no_sideways_scroll() -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width

    no_sideways_scroll()
    web.shot("phone-list")
    page.get_by_role("link", name="Phone note 3").click()
    expect(page.get_by_role("link", name="Reply", exact=True)).to_be_in_viewport()
    no_sideways_scroll()
    web.shot("phone-message")
    page.get_by_role("link", name="Compose").click()
    expect(page.get_by_label("Message")).to_be_visible()
    no_sideways_scroll()
    web.shot("phone-compose")
