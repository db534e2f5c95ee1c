"""`/metrics` on the web listener: Prometheus text parsed by prometheus_client's
parser; counters move when SMTP and POP3 traffic is sent; queue gauges read the store."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import PASSWORD, ServerThread, alice_and_bob

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(srv: ServerThread) -> tuple[Samples, str]:
    assert srv.app is not None
    assert srv.app.web_address is not None
    host, port = srv.app.web_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
        content_type = resp.headers["Content-Type"]
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, content_type


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def deferring(tmp_path: Path) -> Iterator[ServerThread]:
    """A server whose remote mail is deferred: the smarthost port refuses connections."""
    with alice_and_bob(
        tmp_path, '[smtp.outbound]\nsmarthost = "127.0.0.1:1"\nsmarthost_tls = "none"\n'
    ) as srv:
        yield srv


def test_metrics_move_with_traffic(deferring: ServerThread) -> None:
    server = deferring
    before, content_type = scrape(server)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert get(before, "postier_queue_messages", state="new") == 0

    with smtplib.SMTP("127.0.0.1", server.port("mx"), timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.sendmail(
            "someone@elsewhere.test",
            ["bob@example.test"],
            b"From: someone@elsewhere.test\r\nSubject: m\r\n\r\nhi\r\n",
        )
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("someone@elsewhere.test", ["nobody@example.test"], b"x\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as smtp:
        smtp.login("alice@example.test", PASSWORD)
        smtp.sendmail(
            "alice@example.test",
            ["dave@remote.test"],
            b"From: alice@example.test\r\nSubject: out\r\n\r\nhi\r\n",
        )
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    pop.user("bob@example.test")
    pop.pass_(PASSWORD)
    pop.quit()
    bad = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    bad.user("bob@example.test")
    with pytest.raises(poplib.error_proto):
        bad.pass_("wrong")
    bad.quit()
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    imap.login("bob@example.test", PASSWORD)
    imap.logout()

    after, _ = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta("postier_connections_total", protocol="mx") == 1
    assert delta("postier_connections_total", protocol="submission") == 1
    assert delta("postier_connections_total", protocol="pop3") == 2
    assert delta("postier_connections_total", protocol="imap") == 1
    assert delta("postier_logins_total", protocol="imap", result="ok") == 1
    assert delta("postier_smtp_transactions_total", listener="mx", result="accepted") == 1
    assert delta("postier_smtp_transactions_total", listener="submission", result="accepted") == 1
    assert delta("postier_smtp_rejections_total", listener="mx", stage="rcpt", status="5.1.1") == 1
    assert delta("postier_messages_delivered_total", destination="local") == 1
    assert delta("postier_logins_total", protocol="smtp", result="ok") == 1
    assert delta("postier_logins_total", protocol="pop3", result="ok") == 1
    assert delta("postier_logins_total", protocol="pop3", result="failed") == 1
    # the remote message waits in the queue (new, or deferred after a refused connection)
    queued = sum(get(after, "postier_queue_messages", state=s) for s in ("new", "deferred"))
    assert queued == 1
    assert get(after, "postier_queue_recipients", state="pending") == 1
    assert ("process_cpu_seconds_total", ()) in after  # the standard collectors are there


def test_metrics_openmetrics_on_request(server: ServerThread) -> None:
    assert server.app is not None
    assert server.app.web_address is not None
    host, port = server.app.web_address
    req = urllib.request.Request(
        f"http://{host}:{port}/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().endswith("# EOF\n")
