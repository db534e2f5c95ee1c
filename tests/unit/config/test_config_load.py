"""`postier.config.load`: TOML → Settings; every error path names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.config.load import (
    ENV_VAR,
    ConfigError,
    find_config,
    format_duration,
    load,
    parse_duration,
    split_hostport,
)
from postier.config.schema import DEV_PORTS, ListenerSettings


def write(tmp_path: Path, text: str, name: str = "postier.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    return str(info.value)


# --- a valid file ----------------------------------------------------------------


def test_empty_file_gives_defaults_with_data_dir_next_to_the_file(tmp_path: Path) -> None:
    s = load(write(tmp_path, ""))
    assert s.server.data_dir == tmp_path.resolve() / "data"
    assert s.source == (tmp_path / "postier.toml").resolve()
    assert s.listeners["mx"] == ListenerSettings(address="127.0.0.1", port=2525, enabled=True)
    assert {n: lst.port for n, lst in s.listeners.items()} == DEV_PORTS
    assert s.dns.offline is False  # only the no-file development defaults go offline


def test_design_md_keys(tmp_path: Path) -> None:
    s = load(
        write(
            tmp_path,
            """
[server]
hostname = "mail.example.test"
data_dir = "./data"

[listeners.mx]
address = "127.0.0.2"
port = 25
enabled = true

[listeners.web]
enabled = false

[dns]
nameservers = ["127.0.0.1:5300"]
offline = false

[smtp.outbound]
port = 2526
smarthost = "relay.example.net:587"

[queue]
first_retry = "5m"
max_backoff = "1h"
lifetime = "5d"

[greylist]
enabled = true
delay = "5m"
window = "24h"
allow = []
""",
        )
    )
    assert s.server.hostname == "mail.example.test"
    assert s.listeners["mx"] == ListenerSettings("127.0.0.2", 25, True)
    # a listener table only names what changes; the rest keeps the defaults
    assert s.listeners["web"] == ListenerSettings("127.0.0.1", 8025, False)
    assert s.listeners["imap"] == ListenerSettings("127.0.0.1", 2143, True)
    assert s.dns.nameservers == ("127.0.0.1:5300",)
    assert s.smtp.outbound.port == 2526
    assert s.smtp.outbound.smarthost == "relay.example.net:587"
    assert (s.queue.first_retry, s.queue.max_backoff, s.queue.lifetime) == (300, 3600, 432000)
    assert (s.greylist.delay, s.greylist.window, s.greylist.allow) == (300, 86400, ())


# --- durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ('"90s"', 90.0),
        ('"5m"', 300.0),
        ('"2h"', 7200.0),
        ('"36d"', 36 * 86400.0),
        ('"1w"', 7 * 86400.0),
        ('"250ms"', 0.25),
        ('"1.5h"', 5400.0),
        ('" 5 m "', 300.0),
        ('"30"', 30.0),
        ("30", 30.0),
        ("0.5", 0.5),
    ],
)
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    s = load(write(tmp_path, f"[queue]\nfirst_retry = {text}\n"))
    assert s.queue.first_retry == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"5 minutes"', "queue.first_retry: '5 minutes' is not a duration"),
        ('"5y"', "queue.first_retry: '5y' is not a duration"),
        ('"-5m"', "queue.first_retry: '-5m' is not a duration"),
        ('""', "queue.first_retry: '' is not a duration"),
        ("true", "queue.first_retry: True is not a duration"),
        ("[1]", "queue.first_retry: [1] is not a duration"),
        ("-1", "queue.first_retry: -1 is negative"),
    ],
)
def test_bad_durations_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    err = error_of(tmp_path, f"[queue]\nfirst_retry = {text}\n")
    assert err.startswith(message)
    if "not a duration" in message:
        assert err == message + ' (like "90s", "5m", "36d")'


def test_duration_in_nested_table_names_full_key(tmp_path: Path) -> None:
    assert error_of(tmp_path, '[smtp.limits]\nidle_timeout = "soon"\n') == (
        'smtp.limits.idle_timeout: \'soon\' is not a duration (like "90s", "5m", "36d")'
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300.0, "5m"), (3600.0, "1h"), (432000.0, "5d"), (90.0, "90s"), (0.5, "0.5s"), (0.0, "0s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, "k") == seconds


# --- types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[smtp.limits]\nmax_errors = "2"\n', "smtp.limits.max_errors: '2' is not an integer"),
        ("[smtp.limits]\nmax_errors = 2.0\n", "smtp.limits.max_errors: 2.0 is not an integer"),
        ("[smtp.limits]\nmax_errors = true\n", "smtp.limits.max_errors: True is not an integer"),
        ("[smtp.limits]\nmax_errors = -1\n", "smtp.limits.max_errors: -1 is negative"),
        ("[server]\nhostname = 5\n", "server.hostname: 5 is not a string"),
        ('[listeners.mx]\nenabled = "yes"\n', "listeners.mx.enabled: 'yes' is not true or false"),
        ("[listeners.mx]\nport = -25\n", "listeners.mx.port: -25 is negative"),
        ('[dns]\nnameservers = "127.0.0.1"\n', "dns.nameservers: '127.0.0.1' is not a list"),
        ("[dns]\nnameservers = [53]\n", "dns.nameservers[0]: 53 is not a string"),
        ('[greylist]\nallow = ["10.0.0.0/8", 1]\n', "greylist.allow[1]: 1 is not a string"),
        ("server = 5\n", "server: expected a table, got 5"),
        ("smtp = 5\n", "smtp: expected a table, got 5"),
        ("[smtp]\nlimits = 5\n", "smtp.limits: expected a table, got 5"),
        ("listeners = 5\n", "listeners: expected a table, got 5"),
        ("[listeners]\nmx = 25\n", "listeners.mx: expected a table, got 25"),
        ('[server]\ndata_dir = ""\n', "server.data_dir: '' is not a path"),
        ("[server]\ndata_dir = 1\n", "server.data_dir: 1 is not a path"),
        ("[tls]\ncert = 1\n", "tls.cert: 1 is not a path"),
        ("[store]\ndefault_quota = 1.5\n", "store.default_quota: 1.5 is not an integer"),
    ],
)
def test_type_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo = 1\n", "foo: unknown key"),
        ('[server]\nhostnme = "x"\n', "server.hostnme: unknown key"),
        ("[smtp.limits]\nmax_size = 1\n", "smtp.limits.max_size: unknown key"),
        ("[smtp.inbound]\nport = 1\n", "smtp.inbound: unknown key"),
        ('[listeners.mx]\nbind = "::"\n', "listeners.mx.bind: unknown key"),
        ('source = "/etc/postier.toml"\n', "source: unknown key"),
        (
            "[listeners.smtp]\nport = 25\n",
            "listeners.smtp: unknown listener (one of mx, submission, submissions, imap, "
            "imaps, pop3, pop3s, web)",
        ),
    ],
)
def test_unknown_keys_are_errors(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text) == message


# --- ranges and cross-field checks -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[listeners.imap]\nport = 70000\n", "listeners.imap.port: 70000 is not a port"),
        ("[listeners.web]\nport = 65536\n", "listeners.web.port: 65536 is not a port"),
        (
            '[listeners.mx]\naddress = "999.1.1.1"\n',
            "listeners.mx.address: '999.1.1.1' is not an IP address",
        ),
        (
            '[listeners.pop3]\naddress = "mail.example.com"\n',
            "listeners.pop3.address: 'mail.example.com' is not an IP address",
        ),
        ('[store]\nbackend = "mysql"\n', 'store.backend: \'mysql\' is not "sqlite" or "postgres"'),
        (
            '[store]\nbackend = "postgres"\n',
            'store.postgres_dsn: required when store.backend = "postgres"',
        ),
        ('[log]\nformat = "xml"\n', 'log.format: \'xml\' is not "text" or "json"'),
        ('[log]\nlevel = "loud"\n', "log.level: 'loud' is not debug, info, warning or error"),
        (
            '[smtp.limits]\nbare_lf = "keep"\n',
            'smtp.limits.bare_lf: \'keep\' is not "reject" or "normalize"',
        ),
        ("[smtp.limits]\nmax_recipients = 0\n", "smtp.limits.max_recipients: must be at least 1"),
        (
            "[smtp.limits]\nmax_line_length = 511\n",
            "smtp.limits.max_line_length: must be at least 512 (RFC 5321)",
        ),
        (
            '[smtp.outbound]\nsmarthost_tls = "maybe"\n',
            "smtp.outbound.smarthost_tls: 'maybe' is not starttls, require, implicit or none",
        ),
        (
            '[smtp.outbound]\nsmarthost = "relay.example.net"\n',
            "smtp.outbound.smarthost: 'relay.example.net' is not \"host:port\"",
        ),
        (
            '[smtp.outbound]\nsmarthost = "relay.example.net:99999"\n',
            "smtp.outbound.smarthost: 'relay.example.net:99999' is not \"host:port\"",
        ),
        (
            '[dns]\nnameservers = ["127.0.0.1:5300", "ns.example.net"]\n',
            'dns.nameservers[1]: \'ns.example.net\' is not "ip" or "ip:port"',
        ),
        (
            '[greylist]\nallow = ["10.0.0.0/33"]\n',
            "greylist.allow[0]: '10.0.0.0/33' is not a network",
        ),
        (
            '[web]\nmetrics_allow = ["127.0.0.1", "prometheus.local"]\n',
            "web.metrics_allow[1]: 'prometheus.local' is not an address or network",
        ),
        ('[tls]\ncert = "cert.pem"\n', "tls.cert: cert and key must be given together"),
        ('[server]\nhostname = ""\n', "server.hostname: '' is not a host name"),
        (
            '[server]\nhostname = "mail example"\n',
            "server.hostname: 'mail example' is not a host name",
        ),
    ],
)
def test_validation_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text) == message


@pytest.mark.parametrize(
    "nameserver", ["127.0.0.1", "127.0.0.1:5300", "::1", "[::1]:5300", "2001:db8::53"]
)
def test_nameserver_forms(tmp_path: Path, nameserver: str) -> None:
    s = load(write(tmp_path, f'[dns]\nnameservers = ["{nameserver}"]\n'))
    assert s.dns.nameservers == (nameserver,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mx.example:25", ("mx.example", 25)),
        ("mx.example", ("mx.example", None)),
        ("[::1]:2525", ("::1", 2525)),
        ("::1", ("::1", None)),
        ("mx.example:x", ("mx.example", None)),
    ],
)
def test_split_hostport(value: str, expected: tuple[str, int | None]) -> None:
    assert split_hostport(value, default_port=None) == expected


# --- files -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: not valid TOML: ")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "postier.toml"
    path.write_bytes(b'[server]\nhostname = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: not valid TOML: ")


# --- paths -----------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "postier"
    etc.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    write(
        etc,
        '[server]\ndata_dir = "../../var/mail"\n'
        '[tls]\ncert = "tls/cert.pem"\nkey = "./tls/key.pem"\n',
    )
    # loaded through a relative path from yet another cwd
    s = load(Path("../etc/postier/postier.toml"))
    assert s.server.data_dir == (tmp_path / "var" / "mail").resolve()
    assert s.tls.cert == etc.resolve() / "tls" / "cert.pem"
    assert s.tls.key == etc.resolve() / "tls" / "key.pem"
    assert s.source == etc.resolve() / "postier.toml"


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = load(
        write(
            tmp_path,
            '[server]\ndata_dir = "~/mail"\n[tls]\ncert = "/etc/c.pem"\nkey = "/etc/k.pem"\n',
        )
    )
    assert s.server.data_dir == tmp_path / "home" / "mail"
    assert s.tls.cert == Path("/etc/c.pem")


def test_empty_optional_path_is_none(tmp_path: Path) -> None:
    s = load(write(tmp_path, '[tls]\ncert = ""\nkey = ""\n'))
    assert (s.tls.cert, s.tls.key) == (None, None)


# --- which file ------------------------------------------------------------------------


def test_explicit_config_wins_over_env_and_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "/etc/from-env.toml")
    (tmp_path / "postier.toml").write_text("")
    assert find_config("/etc/explicit.toml", tmp_path) == Path("/etc/explicit.toml")


def test_env_wins_over_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "/etc/from-env.toml")
    (tmp_path / "postier.toml").write_text("")
    assert find_config(None, tmp_path) == Path("/etc/from-env.toml")


def test_cwd_postier_toml_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "")
    (tmp_path / "postier.toml").write_text("")
    assert find_config(None, tmp_path) == tmp_path / "postier.toml"
    monkeypatch.chdir(tmp_path)
    assert find_config(None) == tmp_path / "postier.toml"


def test_no_config_anywhere_is_an_error_that_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "postier.toml").mkdir()  # a folder of that name is not a config
    with pytest.raises(ConfigError) as info:
        find_config(None, tmp_path)
    assert str(info.value) == (
        "no configuration: give -c FILE, set POSTIER_CONFIG=FILE, or run this in the "
        "folder of postier.toml (create one with: postier init --domain DOMAIN; for "
        "development: make run)"
    )
