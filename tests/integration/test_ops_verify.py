"""`postier verify` against scripted SMTP peers on 127.0.0.x: every verdict, the
conversation it holds, and the CLI's --json and -v output."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postier.dns.fake import SERVFAIL, FakeResolver
from postier.mail.address import Address
from postier.ops.verify import Verdict, verify
from tests.integration.ops_peers import Peer, Script, free_port, start_peers, stop_peers
from tests.support.dnsserver import DnsTestServer
from tests.support.server import write_config

HOSTS = ["127.0.0.2", "127.0.0.3"]
ZONES: dict[str, Any] = {
    "peer.test": {"MX": [(10, "mx1.peer.test"), (20, "mx2.peer.test")]},
    "mx1.peer.test": {"A": ["127.0.0.2"]},
    "mx2.peer.test": {"A": ["127.0.0.3"]},
    "nullmx.test": {"MX": [(0, ".")]},
    "broken.test": SERVFAIL,
}


def user_db(known: set[str], grey: str | None = None) -> Script:
    def rcpt(address: str) -> str:
        if grey is not None:
            return grey
        if address in known:
            return "250 2.1.5 Ok"
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"

    return Script(rcpt=rcpt)


async def probe(scripts: dict[str, Script], address: str, **kw: Any) -> tuple[Any, list[Peer]]:
    port = free_port(HOSTS)
    peers = await start_peers(scripts, port)
    try:
        result = await verify(
            Address.parse(address),
            resolver=FakeResolver(ZONES),
            helo="mail.example.test",
            port=port,
            connect_timeout=5,
            command_timeout=5,
            probe_localpart=lambda: "random-probe",
            **kw,
        )
    finally:
        await stop_peers(peers)
    return result, peers


async def test_exists_walks_the_whole_conversation() -> None:
    result, (mx1,) = await probe({"127.0.0.2": user_db({"bob@peer.test"})}, "bob@peer.test")
    assert result.verdict is Verdict.EXISTS
    assert result.host == "mx1.peer.test"
    assert result.ip == "127.0.0.2"
    assert result.reply == "250 2.1.5 Ok"
    assert mx1.commands == [
        "EHLO mail.example.test",
        "MAIL FROM:<>",
        "RCPT TO:<bob@peer.test>",
        "RCPT TO:<random-probe@peer.test>",
        "RSET",
        "QUIT",
    ]
    port = result.transcript[0][1].rsplit(":", 1)[1]
    assert result.transcript == [
        ("*", f"connecting to mx1.peer.test [127.0.0.2]:{port}"),
        ("S", "220 mx.peer.test ESMTP"),
        ("C", "EHLO mail.example.test"),
        ("S", "250-mx.peer.test"),
        ("S", "250-PIPELINING"),
        ("S", "250 ENHANCEDSTATUSCODES"),
        ("C", "MAIL FROM:<>"),
        ("S", "250 2.1.0 Ok"),
        ("C", "RCPT TO:<bob@peer.test>"),
        ("S", "250 2.1.5 Ok"),
        ("C", "RCPT TO:<random-probe@peer.test>"),
        ("S", "550 5.1.1 <random-probe@peer.test>: Recipient address rejected: User unknown"),
        ("C", "RSET"),
        ("S", "250 2.0.0 Ok"),
        ("C", "QUIT"),
    ]
    assert "very likely exists" in result.reason


async def test_configured_sender() -> None:
    _, (mx1,) = await probe(
        {"127.0.0.2": user_db({"bob@peer.test"})}, "bob@peer.test", sender="postmaster@example.test"
    )
    assert mx1.commands[1] == "MAIL FROM:<postmaster@example.test>"


async def test_unknown() -> None:
    result, _ = await probe({"127.0.0.2": user_db(set())}, "nobody@peer.test")
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason == (
        "the server refused the mailbox as unknown (550 5.1.1 "
        "<nobody@peer.test>: Recipient address rejected: User unknown)"
    )


async def test_catch_all() -> None:
    result, (mx1,) = await probe({"127.0.0.2": Script()}, "anything@peer.test")
    assert result.verdict is Verdict.CATCH_ALL
    assert "RCPT TO:<random-probe@peer.test>" in mx1.commands
    assert "cannot be told from outside" in result.reason


async def test_greylisted_with_delay() -> None:
    grey = "451 4.7.1 Greylisted, please try again in 5 minutes"
    result, _ = await probe({"127.0.0.2": user_db(set(), grey=grey)}, "bob@peer.test")
    assert result.verdict is Verdict.GREYLISTED
    assert result.retry_after == 300
    assert (
        result.reason == f"the server greylisted the check at RCPT TO ({grey}); try again in 300s"
    )


async def test_greylisted_without_delay() -> None:
    grey = "450 4.2.0 <bob@peer.test>: Recipient address rejected: Greylisted"
    result, _ = await probe({"127.0.0.2": user_db(set(), grey=grey)}, "bob@peer.test")
    assert result.verdict is Verdict.GREYLISTED
    assert result.retry_after is None
    assert result.reason.endswith("; try again later")


async def test_other_4xx_is_tempfail() -> None:
    result, _ = await probe(
        {"127.0.0.2": user_db(set(), grey="452 4.2.2 Mailbox full")}, "bob@peer.test"
    )
    assert result.verdict is Verdict.TEMPFAIL


async def test_policy_refusal_is_blocked() -> None:
    script = user_db(set(), grey="554 5.7.1 Client host rejected: you probe too much")
    result, _ = await probe({"127.0.0.2": script}, "bob@peer.test")
    assert result.verdict is Verdict.BLOCKED
    assert "says nothing certain about the mailbox" in result.reason


async def test_sender_refused_is_blocked() -> None:
    script = Script(mail="550 5.7.1 Null sender not welcome")
    result, (mx1,) = await probe({"127.0.0.2": script}, "bob@peer.test")
    assert result.verdict is Verdict.BLOCKED
    assert not any(c.startswith("RCPT") for c in mx1.commands)


async def test_first_mx_down_second_answers() -> None:
    # nothing listens on 127.0.0.2: connection refused, next MX (RFC 5321 §5.1)
    result, (mx2,) = await probe({"127.0.0.3": user_db({"bob@peer.test"})}, "bob@peer.test")
    assert result.verdict is Verdict.EXISTS
    assert result.host == "mx2.peer.test"
    assert "RCPT TO:<bob@peer.test>" in mx2.commands
    assert "[127.0.0.2]" in result.transcript[1][1]  # the refused connection is shown


async def test_554_greeting_moves_to_next_mx() -> None:
    scripts = {
        "127.0.0.2": Script(greeting="554 5.3.2 no service"),
        "127.0.0.3": user_db({"bob@peer.test"}),
    }
    result, (mx1, mx2) = await probe(scripts, "bob@peer.test")
    assert result.verdict is Verdict.EXISTS
    assert mx1.commands == ["QUIT"]  # no RSET: no transaction was started
    assert mx2.commands[-2:] == ["RSET", "QUIT"]


async def test_nothing_listening_is_blocked() -> None:
    result, _ = await probe({}, "bob@peer.test")
    assert result.verdict is Verdict.BLOCKED
    assert result.reason.startswith("no MX host of peer.test completed the check on port ")
    assert result.reason.endswith("this says nothing about the mailbox")


async def test_null_mx_nxdomain_and_servfail() -> None:
    r, _ = await probe({}, "x@nullmx.test")
    assert (r.verdict, r.reason) == (
        Verdict.NO_MAIL,
        "nullmx.test accepts no mail: it publishes a null MX (RFC 7505)",
    )
    r, _ = await probe({}, "x@nowhere.test")
    assert (r.verdict, r.reason) == (
        Verdict.NO_MAIL,
        "nowhere.test accepts no mail: the domain does not exist",
    )
    r, _ = await probe({}, "x@broken.test")
    assert r.verdict is Verdict.TEMPFAIL


# --- the command line, with the test DNS server ---------------------------------------


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONES) as srv:
        yield srv


class PeerThread:
    """Scripted peers in a thread of their own, for a CLI in a subprocess."""

    def __init__(self, scripts: dict[str, Script]) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.port = free_port(HOSTS)
        self.peers = self.loop.run_until_complete(start_peers(scripts, self.port))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(stop_peers(self.peers), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def cli(
    tmp_path: Path, dns: DnsTestServer, port: int, *args: str
) -> subprocess.CompletedProcess[str]:
    config = write_config(
        tmp_path,
        f'[dns]\noffline = false\nnameservers = ["{dns.nameserver}"]\n'
        f'timeout = "2s"\n[smtp.outbound]\nport = {port}\n',
    )
    return subprocess.run(
        [sys.executable, "-m", "postier", "-c", str(config), "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_json_and_exit_codes(tmp_path: Path, dns: DnsTestServer) -> None:
    peers = PeerThread({"127.0.0.2": user_db({"bob@peer.test"})})
    try:
        ok = cli(tmp_path, dns, peers.port, "--json", "bob@peer.test")
        unknown = cli(tmp_path, dns, peers.port, "--json", "eve@peer.test")
        verbose = cli(tmp_path, dns, peers.port, "-v", "bob@peer.test")
    finally:
        peers.stop()
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["verdict"] == "exists"
    assert doc["host"] == "mx1.peer.test"
    assert doc["transcript"][2] == {"from": "C", "text": "EHLO mail.example.test"}
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["verdict"] == "unknown"
    assert verbose.returncode == 0
    lines = verbose.stdout.splitlines()
    assert "C: RCPT TO:<bob@peer.test>" in lines
    assert lines[-2] == "bob@peer.test: exists"


def test_cli_rate_limit(tmp_path: Path, dns: DnsTestServer) -> None:
    peers = PeerThread({"127.0.0.2": Script()})
    try:
        first = cli(tmp_path, dns, peers.port, "--max-per-domain", "1", "a@peer.test")
        second = cli(tmp_path, dns, peers.port, "--max-per-domain", "1", "b@peer.test")
    finally:
        peers.stop()
    assert first.returncode == 1  # catch-all is not "exists"
    assert first.stdout.splitlines()[0] == "a@peer.test: catch-all"
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.startswith("postier: rate limit: 1 checks of peer.test in the last 60s")
    assert len(peers.peers[0].commands) == 6  # the second run never connected


def test_cli_bad_address(tmp_path: Path, dns: DnsTestServer) -> None:
    r = cli(tmp_path, dns, 25, "not-an-address")
    assert r.returncode == 2
    assert r.stderr.startswith("postier: malformed address 'not-an-address'")


def test_cli_local_address_without_dns(tmp_path: Path) -> None:
    """The server's own domain (DNS offline, as `make run`): answered from the store."""
    config = write_config(tmp_path)

    def postier(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "postier", "-c", str(config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert postier("domain", "add", "example.test").returncode == 0
    added = postier("user", "add", "demo@example.test", "--password-stdin", stdin="password\n")
    assert added.returncode == 0, added.stderr
    r = postier("verify", "demo@example.test")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "demo@example.test: exists\n"
        "  demo@example.test is an account on this server (no probe sent)\n"
    )
    r = postier("verify", "Postmaster@example.test")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "Postmaster@example.test: exists\n"
        "  postmaster@example.test is an alias on this server, for demo@example.test "
        "(no probe sent)\n"
    )
    r = postier("verify", "nobody@example.test", "--json")
    assert (r.returncode, r.stderr) == (1, "")
    doc = json.loads(r.stdout)
    assert (doc["verdict"], doc["reason"]) == (
        "unknown",
        "example.test is hosted here and has no account or alias nobody@example.test: "
        "mail to it is refused with 550 5.1.1 (no probe sent)",
    )
    # without its alias, abuse@ is still accepted by intake (RFC 2142): so says verify
    assert postier("alias", "del", "abuse@example.test").returncode == 0
    r = postier("verify", "abuse@example.test")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "abuse@example.test: exists\n"
        "  abuse@example.test is a role address, accepted for every domain hosted here "
        "and delivered to the domain's first account (no probe sent)\n"
    )
    assert postier("alias", "add", "@example.test", "demo@example.test").returncode == 0
    r = postier("verify", "anyone@example.test")
    assert (r.returncode, r.stdout.splitlines()[0]) == (1, "anyone@example.test: catch-all")
