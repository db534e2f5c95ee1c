"""`postier.config.sample`: the generated postier.toml and docs/configuration.md."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path

import pytest

from postier.config.load import ConfigError, load
from postier.config.sample import (
    LISTENER_DOCS,
    render_reference,
    render_sample,
    sections,
    toml_string,
    toml_value,
)
from postier.config.schema import DEV_PORTS, LISTENER_NAMES, STANDARD_PORTS, Settings

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "postier.toml"
    path.write_text(text, encoding="utf-8")
    return path


def uncomment_defaults(text: str) -> str:
    """Every "#key = value" line made active."""
    return re.sub(r"(?m)^#([a-z_]+ = )", r"\1", text)


def test_dev_sample_loads_with_dev_ports_and_offline_dns(tmp_path: Path) -> None:
    s = load(write(tmp_path, render_sample("example.test", dev=True)))
    assert s.server.hostname == "mail.example.test"
    assert s.server.data_dir == tmp_path.resolve() / "data"
    assert {n: lst.port for n, lst in s.listeners.items()} == DEV_PORTS
    assert {lst.address for lst in s.listeners.values()} == {"127.0.0.1"}
    assert all(lst.enabled for lst in s.listeners.values())
    assert s.dns.offline is True
    assert s.server.workers == 1  # `make run`: one process
    # everything else is the schema default
    expected = dataclasses.replace(
        Settings(),
        server=dataclasses.replace(
            Settings().server,
            hostname="mail.example.test",
            data_dir=tmp_path.resolve() / "data",
            workers=1,
        ),
        dns=dataclasses.replace(Settings().dns, offline=True),
        # the development outbox: remote mail is kept, never sent
        smtp=dataclasses.replace(
            Settings().smtp,
            outbound=dataclasses.replace(Settings().smtp.outbound, capture=True),
        ),
        source=(tmp_path / "postier.toml").resolve(),
    )
    assert s.web.tls is False  # plain HTTP on 8025
    assert s == expected


def test_prod_sample_loads_with_standard_ports(tmp_path: Path) -> None:
    s = load(write(tmp_path, render_sample("example.com", hostname="mx1.example.com")))
    assert s.server.hostname == "mx1.example.com"
    assert {n: lst.port for n, lst in s.listeners.items()} == STANDARD_PORTS
    assert STANDARD_PORTS["web"] == 443
    assert {lst.address for lst in s.listeners.values()} == {"0.0.0.0"}
    assert s.dns.offline is False
    assert s.dns.nameservers == ()
    assert s.web.tls is True  # HTTPS on 443 with the server's certificate
    assert s.smtp.outbound.capture is False
    # a production server uses every CPU: one worker process each
    assert s.server.workers == 0
    assert s.server.worker_count == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("dev", [True, False])
def test_commented_values_are_the_defaults(tmp_path: Path, dev: bool) -> None:
    text = render_sample("example.com", dev=dev)
    active = load(write(tmp_path, text))
    everything = uncomment_defaults(text)
    assert everything != text
    assert load(write(tmp_path, everything)) == active


@pytest.mark.parametrize("dev", [True, False])
def test_every_section_and_key_is_present_with_its_doc(dev: bool) -> None:
    text = render_sample("example.com", dev=dev)
    data = tomllib.loads(uncomment_defaults(text))
    for section, obj in sections(Settings()):
        table = data
        for part in section.split("."):
            table = table[part]
        names = [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]
        assert list(table) == names, section
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            first_words = f.metadata["doc"].split()[:4]
            assert re.search(r"#\s+.*" + r"\s+#?\s*".join(map(re.escape, first_words)), text), (
                f"{section}.{f.name}"
            )
    for name in LISTENER_NAMES:
        assert f"# {LISTENER_DOCS[name]}\n[listeners.{name}]\n" in text


def test_exact_active_lines_in_dev() -> None:
    text = render_sample("example.test", dev=True)
    active = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert active[:11] == [
        "[server]",
        'hostname = "mail.example.test"',
        'data_dir = "./data"',
        "workers = 1",
        "[listeners.mx]",
        'address = "127.0.0.1"',
        "port = 2525",
        "enabled = true",
        "[listeners.submission]",
        'address = "127.0.0.1"',
        "port = 2587",
    ]
    assert "[dns]\n# resolvers" in text
    assert "\noffline = true\n" in text
    assert '\n#first_retry = "5m"\n' in text
    assert '\n#allow = ["127.0.0.0/8", "::1/128"]\n' in text
    assert '\n#cert = ""\n' in text


def test_bad_port_in_generated_file_names_the_key(tmp_path: Path) -> None:
    text = render_sample("example.com", dev=True).replace(
        '[listeners.imap]\naddress = "127.0.0.1"\nport = 2143\n',
        '[listeners.imap]\naddress = "127.0.0.1"\nport = 70000\n',
    )
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert str(info.value) == "listeners.imap.port: 70000 is not a port"


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("plain", '"plain"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("tab\there", '"tab\\u0009here"'),
        ("nl\n", '"nl\\u000A"'),
        ("del\x7f", '"del\\u007F"'),
        ("bücher", '"bücher"'),
    ],
)
def test_toml_string_round_trips(text: str, literal: str) -> None:
    assert toml_string(text) == literal
    assert tomllib.loads(f"k = {literal}")["k"] == text


@pytest.mark.parametrize(
    ("value", "key", "literal"),
    [
        (None, "tls.cert", '""'),
        (True, "x.enabled", "true"),
        (25, "x.port", "25"),
        (300.0, "queue.first_retry", '"5m"'),
        (0.5, "auth.failure_delay", '"0.5s"'),
        (Path("/var/mail"), "server.data_dir", '"/var/mail"'),
        ((), "dns.nameservers", "[]"),
        (("a", "b"), "dns.nameservers", '["a", "b"]'),
    ],
)
def test_toml_value(value: object, key: str, literal: str) -> None:
    assert toml_value(value, key) == literal


def test_toml_value_refuses_unknown_types() -> None:
    with pytest.raises(TypeError, match=r"^x: cannot write \{\} as TOML$"):
        toml_value({}, "x")


def test_reference_documents_every_key() -> None:
    ref = render_reference()
    for section, obj in sections(Settings()):
        heading = "## [listeners.NAME]" if section.startswith("listeners.") else f"## [{section}]"
        assert heading in ref
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            assert f"| `{f.name}` |" in ref
    assert '| `first_retry` | duration | `"5m"` | delay before the first retry' in ref
    assert '| `cert` | path (or empty) | `""` |' in ref
    assert "| `nameservers` | list of strings | `[]` |" in ref
    assert "| `mx` | SMTP from other mail servers: the domain's MX (RFC 5321) | 2525 | 25 |" in ref


def test_docs_configuration_md_is_current() -> None:
    path = REPO / "docs" / "configuration.md"
    assert path.read_text(encoding="utf-8") == render_reference(), (
        "regenerate: .venv/bin/postier config reference > docs/configuration.md"
    )
