"""Typed settings: the whole configuration as frozen dataclasses.

Rules:
- Every field has a default that is safe for a development server; `postier init`
  writes the values an operator is expected to change.
- Every field carries its documentation in ``metadata["doc"]``; `sample.py` turns
  the schema into the commented `postier.toml`, so the docs cannot drift.
- Durations are seconds (float) here; the TOML file spells them "90s", "5m", "36d".
- Paths are absolute here: `load.py` resolves them against the config file's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LISTENER_NAMES = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "web")

#: the ports `make run` and `postier init --dev` use
DEV_PORTS: dict[str, int] = {
    "mx": 2525,
    "submission": 2587,
    "submissions": 2465,
    "imap": 2143,
    "imaps": 2993,
    "pop3": 2110,
    "pop3s": 2995,
    "web": 8025,
}

#: the ports a real deployment uses
STANDARD_PORTS: dict[str, int] = {
    "mx": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "web": 443,
}

#: listeners whose connections start with a TLS handshake
IMPLICIT_TLS = frozenset({"submissions", "imaps", "pop3s"})


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def doc(text: str, **kw: Any) -> Any:
    """A dataclass field with its documentation attached (for the sample config)."""
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class ServerSettings:
    hostname: str = doc(
        "EHLO name, Received: by-clause and MAILER-DAEMON@ domain", default="mail.example.test"
    )
    data_dir: Path = doc(
        "where the store, blobs, spool, keys and certificates live", default=Path("./data")
    )
    drain_timeout: float = doc("on SIGTERM, time given to in-flight transactions", default=5.0)
    workers: int = doc(
        "server processes sharing the listeners and the store; 0 = one per CPU. With 1, "
        "one process serves everything; with more, a supervisor starts them, restarts "
        "one that dies and stops them all on SIGTERM",
        default=0,
    )

    @property
    def worker_count(self) -> int:
        """`workers` with 0 (automatic) resolved to the number of CPUs."""
        return self.workers or _cpu_count()


@dataclass(frozen=True)
class ListenerSettings:
    address: str = doc('address to bind; "::" or "0.0.0.0" for all', default="127.0.0.1")
    port: int = doc("TCP port", default=0)
    enabled: bool = doc("a listener with enabled = false is not started", default=True)


@dataclass(frozen=True)
class TlsSettings:
    cert: Path | None = doc(
        "PEM certificate chain; empty = self-signed in data_dir/tls", default=None
    )
    key: Path | None = doc("PEM private key for cert", default=None)
    allow_plaintext_auth: bool = doc(
        "allow AUTH/LOGIN/USER without TLS from non-loopback clients (never do this "
        "on the Internet)",
        default=False,
    )


@dataclass(frozen=True)
class DnsSettings:
    nameservers: tuple[str, ...] = doc(
        'resolvers as "ip" or "ip:port"; empty = the system resolver', default=()
    )
    offline: bool = doc(
        'every lookup answers "no such domain" at once, no packet sent', default=False
    )
    timeout: float = doc("per-query timeout", default=5.0)


@dataclass(frozen=True)
class SmtpLimits:
    max_message_size: int = doc(
        "largest message accepted, in bytes (SIZE)", default=50 * 1024 * 1024
    )
    max_line_length: int = doc("longest command line, in bytes (RFC 5321: 512)", default=2048)
    max_recipients: int = doc(
        "recipients per transaction (RFC 5321 asks at least 100)", default=1000
    )
    max_errors: int = doc("protocol errors before 421 and close", default=20)
    max_connections: int = doc("connections at once, all clients", default=1000)
    max_connections_per_ip: int = doc("connections at once from one client address", default=50)
    idle_timeout: float = doc("time waiting for a command (RFC 5321: 5 minutes)", default=300.0)
    command_timeout: float = doc(
        "total time allowed to receive one command line, however slowly its bytes come",
        default=300.0,
    )
    data_timeout: float = doc(
        "total time allowed to receive one message's data (DATA or all its BDAT "
        "chunks), plus the time min_data_rate earns",
        default=600.0,
    )
    min_data_rate: int = doc(
        "bytes per second that earn a message transfer more time than data_timeout: a "
        "client sending at least this fast is never cut off; 0 = data_timeout is total",
        default=1024,
    )
    spool_threshold: int = doc(
        "messages larger than this are spooled to disk while received", default=256 * 1024
    )
    max_hops: int = doc(
        "a message whose header has more Received: and Delivered-To: fields than this is "
        "refused as a mail loop (554 5.4.6; Postfix's hopcount_limit)",
        default=50,
    )
    bare_lf: str = doc(
        '"reject" a bare LF/CR in DATA (554), or "normalize" it to CRLF', default="reject"
    )


@dataclass(frozen=True)
class SmtpOutbound:
    port: int = doc("the port dialled at remote MX hosts", default=25)
    smarthost: str = doc(
        '"host:port": relay all remote mail there instead of MX routing', default=""
    )
    smarthost_username: str = doc("AUTH username for the smarthost (empty = no AUTH)", default="")
    smarthost_password: str = doc("AUTH password for the smarthost", default="")
    smarthost_tls: str = doc(
        '"starttls" (when offered), "require", "implicit" or "none"', default="starttls"
    )
    require_tls_domains: tuple[str, ...] = doc("domains whose MX must offer STARTTLS", default=())
    connect_timeout: float = doc("TCP connect timeout per MX host", default=30.0)
    command_timeout: float = doc("timeout per SMTP command when delivering", default=300.0)
    max_per_destination: int = doc("concurrent connections to one destination host", default=5)
    max_concurrency: int = doc("concurrent outbound deliveries in all", default=50)
    capture: bool = doc(
        "development outbox: remote deliveries are kept in data_dir/outbox (the web "
        "admin's Outbox, `postier queue captured`) instead of sent; nothing leaves "
        "the machine. `postier init --dev` writes true; never set it on a real server",
        default=False,
    )


@dataclass(frozen=True)
class SmtpSettings:
    limits: SmtpLimits = field(default_factory=SmtpLimits)
    outbound: SmtpOutbound = field(default_factory=SmtpOutbound)


@dataclass(frozen=True)
class QueueSettings:
    first_retry: float = doc(
        "delay before the first retry after a temporary failure", default=300.0
    )
    max_backoff: float = doc("longest delay between two tries", default=3600.0)
    lifetime: float = doc("give up and bounce after this long in the queue", default=5 * 86400.0)
    delay_warning: float = doc("send a delay DSN after this long (0 = never)", default=0.0)


@dataclass(frozen=True)
class GreylistSettings:
    enabled: bool = doc("greylist unknown (network, sender, recipient) triplets", default=True)
    delay: float = doc("a retry is accepted once this long has passed", default=300.0)
    window: float = doc("... and before this long has passed", default=86400.0)
    whitelist_period: float = doc(
        "a network that passed is trusted this long", default=36 * 86400.0
    )
    allow: tuple[str, ...] = doc(
        "networks never greylisted; [] greylists loopback too", default=("127.0.0.0/8", "::1/128")
    )


@dataclass(frozen=True)
class AuthSettings:
    failure_delay: float = doc(
        "delay after the first failed login; doubles each failure (per client network: "
        "before every login from it; per account: before each failed answer)",
        default=0.5,
    )
    max_delay: float = doc("longest delay imposed on one login", default=8.0)
    lockout_after: int = doc(
        "consecutive failures (for one account, from one client network or from "
        "anywhere) before that account's logins are refused for lockout_period; a "
        "network itself is only slowed down, never locked out",
        default=10,
    )
    lockout_period: float = doc("how long a locked account waits", default=300.0)
    min_password_length: int = doc(
        "shortest password `postier user add|passwd` accepts, in characters "
        "(NIST SP 800-63B: at least 8)",
        default=8,
    )


@dataclass(frozen=True)
class StoreSettings:
    backend: str = doc('"sqlite" (embedded, in data_dir) or "postgres"', default="sqlite")
    postgres_dsn: str = doc(
        'PostgreSQL DSN when backend = "postgres", e.g. "postgresql://postier@db:5432/postier" '
        "(several nodes share one database: docs/several-nodes.md)",
        default="",
    )
    default_quota: int = doc("bytes per user; 0 = unlimited", default=0)
    inline_max: int = doc(
        "messages up to this many bytes are kept inside the database (one WAL fsync "
        "per group commit) instead of as files (two fsyncs each); 0 = always files",
        default=64 * 1024,
    )


@dataclass(frozen=True)
class LogSettings:
    level: str = doc("debug, info, warning or error", default="info")
    format: str = doc('"text" (one line per event) or "json"', default="text")


@dataclass(frozen=True)
class ImapSettings:
    max_line_length: int = doc("longest command line, in bytes", default=64 * 1024)
    max_literal_size: int = doc("largest literal (APPENDLIMIT), in bytes", default=50 * 1024 * 1024)
    idle_timeout: float = doc("idle connection timeout (RFC 9051: at least 30 min)", default=1800.0)
    max_bad_commands: int = doc("invalid commands in a row before BYE and close", default=20)
    max_unauth_literal: int = doc("largest literal accepted before login, in bytes", default=8192)
    search_time_limit: float = doc(
        "CPU time one SEARCH, SORT or THREAD may spend matching and sorting; past it "
        "the command fails with NO [LIMIT] (other clients are never held up: it runs "
        "off the event loop)",
        default=30.0,
    )
    max_search_contexts: int = doc(
        "searches one session may keep current (RFC 5267 RETURN (UPDATE)); one more "
        "is refused with NOUPDATE",
        default=10,
    )
    spool_threshold: int = doc(
        "APPEND literals larger than this (or than what the command holds with them) "
        "are written to data_dir/spool as they arrive instead of kept in memory; "
        "other commands' literals count towards max_line_length",
        default=64 * 1024,
    )
    user_literal_budget: int = doc(
        "APPEND bytes one user may have announced and not yet stored, over all "
        "connections; a literal beyond it is refused with NO [LIMIT] (try again later)",
        default=100 * 1024 * 1024,
    )
    login_timeout: float = doc(
        "a connection not logged in this long after it opened is closed (as Dovecot's "
        "3 minutes), so idle sockets cannot hold the per-address connection limit",
        default=180.0,
    )
    command_timeout: float = doc(
        "total time allowed to receive one command with its literals, plus the time "
        "min_data_rate earns",
        default=300.0,
    )
    min_data_rate: int = doc(
        "bytes per second that earn a command's literals more time than "
        "command_timeout (a large APPEND on a slow link); 0 = command_timeout is total",
        default=1024,
    )
    urlauth_anonymous: bool = doc(
        "URLAUTH (RFC 4467): sign and resolve URLs with the 'anonymous' access identifier, "
        "readable by anyone who holds them (off: only submit+, user+ and authuser URLs)",
        default=False,
    )


@dataclass(frozen=True)
class Pop3Settings:
    idle_timeout: float = doc("idle connection timeout (RFC 1939: at least 10 min)", default=600.0)
    login_timeout: float = doc(
        "a connection not logged in this long after it opened is closed", default=180.0
    )
    command_timeout: float = doc(
        "total time allowed to receive one command line, however slowly its bytes come",
        default=300.0,
    )


#: every filter stage, in the order the pipeline runs them (postier.filters)
FILTER_STAGES = (
    "dnsbl",
    "fcrdns",
    "helo",
    "spf",
    "greylist",
    "dkim",
    "arc",
    "dmarc",
    "headers",
    "virus",
    "clamd",
    "rspamd",
    "bayes",
)


@dataclass(frozen=True)
class FilterSettings:
    mx: tuple[str, ...] = doc(
        "filter stages run for the mx listener, in pipeline order; a stage whose own "
        "section says enabled = false is skipped anyway",
        default=FILTER_STAGES,
    )
    submission: tuple[str, ...] = doc(
        "filter stages run for authenticated submission (587, 465)", default=("virus", "clamd")
    )
    max_scan_size: int = doc(
        "messages larger than this (bytes) skip the CPU-bound content stages "
        "(DKIM, ARC, DMARC, headers, Bayes, rspamd); the skip is logged. The virus "
        "stages (virus, clamd) scan every message whatever its size",
        default=10 * 1024 * 1024,
    )
    scan_timeout: float = doc(
        "time budget (seconds) of one stage's CPU-bound work on one message (text, "
        "HTML and URL analysis, Bayes tokens, DKIM/ARC hashing, MIME decoding, the "
        "built-in virus scan); past it the stage records SCAN_TIMEOUT and the "
        "message goes on",
        default=20.0,
    )


@dataclass(frozen=True)
class SpamSettings:
    junk_threshold: float = doc(
        "a score at or above this delivers to the Junk mailbox", default=5.0
    )
    reject_threshold: float = doc(
        "a score at or above this is refused at end of data (550)", default=15.0
    )
    scores: tuple[str, ...] = doc(
        'weight overrides as "RULE=weight", e.g. ["MISSING_DATE=0.5"] (rule names '
        "are those of X-Spam-Report)",
        default=(),
    )


@dataclass(frozen=True)
class SpfSettings:
    reject_fail: bool = doc(
        "refuse MAIL FROM when SPF says fail (-all) with 550 5.7.23; "
        "false adds the SPF_FAIL score instead",
        default=False,
    )


@dataclass(frozen=True)
class DmarcSettings:
    enabled: bool = doc("evaluate DMARC (RFC 7489) on the From: domain", default=True)
    honor_reject: bool = doc(
        "p=reject refuses the message (550 5.7.1); false sends it to Junk", default=True
    )
    honor_quarantine: bool = doc("p=quarantine delivers to Junk", default=True)


@dataclass(frozen=True)
class DnsblSettings:
    enabled: bool = doc("look the client address up in DNS block/allow lists", default=False)
    zones: tuple[str, ...] = doc("DNSBL zones (a listing adds `weight`)", default=())
    allow_zones: tuple[str, ...] = doc("DNSWL zones (a listing adds `allow_weight`)", default=())
    weight: float = doc("score added per DNSBL listing", default=3.0)
    allow_weight: float = doc("score added per DNSWL listing (negative)", default=-2.0)
    reject: bool = doc(
        "refuse the connection (554 5.7.1) when listed in any DNSBL zone", default=False
    )


@dataclass(frozen=True)
class AntivirusSettings:
    enabled: bool = doc("the built-in scanner: EICAR, executables and scripts, zips", default=True)
    block_executables: bool = doc(
        "refuse executable and script attachments (by content and by name, double extensions too)",
        default=True,
    )
    max_archive_depth: int = doc("zip archives nested deeper are refused as a zip bomb", default=3)
    max_unpacked: int = doc(
        "bytes unpacked from one message's archives, at most", default=100 * 1024 * 1024
    )
    max_ratio: int = doc("an archive member compressed more than this is a zip bomb", default=200)
    max_members: int = doc("members per archive, at most", default=1000)


@dataclass(frozen=True)
class ClamdSettings:
    enabled: bool = doc("scan messages with a clamd daemon (INSTREAM)", default=False)
    socket: str = doc(
        'clamd\'s unix socket path, or "host:port" for TCP', default="/run/clamav/clamd.ctl"
    )
    timeout: float = doc("time allowed for one scan", default=30.0)
    fail_open: bool = doc("accept when clamd cannot be reached (false: 451 4.7.0)", default=True)
    chunk_size: int = doc(
        "INSTREAM chunk size in bytes (below clamd's StreamMaxLength)", default=64 * 1024
    )


@dataclass(frozen=True)
class RspamdSettings:
    enabled: bool = doc("ask an rspamd daemon (HTTP /checkv2) and add its score", default=False)
    url: str = doc("rspamd's controller/normal worker base URL", default="http://127.0.0.1:11333")
    timeout: float = doc("time allowed for one check", default=15.0)
    fail_open: bool = doc("accept when rspamd cannot be reached (false: 451 4.7.0)", default=True)
    honor_reject: bool = doc('rspamd\'s action "reject" refuses the message', default=True)


@dataclass(frozen=True)
class WebSettings:
    tls: bool = doc(
        "serve listeners.web over HTTPS with the server's certificate (tls.cert, else "
        "the self-signed one); the session cookie is then Secure. `postier init` "
        "writes true (port 443); `init --dev` false (plain HTTP on 8025)",
        default=False,
    )
    metrics_allow: tuple[str, ...] = doc(
        "addresses or networks (CIDR) that may read /metrics; others get 403. The "
        "default is loopback and the private ranges, where a Prometheus server "
        "normally scrapes from; [] serves it to no one",
        default=(
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ),
    )


def _default_listeners() -> dict[str, ListenerSettings]:
    return {name: ListenerSettings(port=DEV_PORTS[name]) for name in LISTENER_NAMES}


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    listeners: dict[str, ListenerSettings] = field(default_factory=_default_listeners)
    tls: TlsSettings = field(default_factory=TlsSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    greylist: GreylistSettings = field(default_factory=GreylistSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)
    spam: SpamSettings = field(default_factory=SpamSettings)
    spf: SpfSettings = field(default_factory=SpfSettings)
    dmarc: DmarcSettings = field(default_factory=DmarcSettings)
    dnsbl: DnsblSettings = field(default_factory=DnsblSettings)
    antivirus: AntivirusSettings = field(default_factory=AntivirusSettings)
    clamd: ClamdSettings = field(default_factory=ClamdSettings)
    rspamd: RspamdSettings = field(default_factory=RspamdSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    log: LogSettings = field(default_factory=LogSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    pop3: Pop3Settings = field(default_factory=Pop3Settings)
    web: WebSettings = field(default_factory=WebSettings)
    #: the file these settings came from (None: built-in development defaults)
    source: Path | None = None
