"""The commented `postier.toml` and the configuration reference, generated from the schema.

Rules:
- The text comes from `schema.py` alone (each field's ``metadata["doc"]`` and default),
  so the sample file and docs/configuration.md cannot drift from the code.
- Every section and every key appears, with its doc above it. The keys an operator
  is expected to set (`OPERATOR_KEYS` and every listener key) are active lines;
  every other key is a commented line ``#key = default`` whose value is the real
  default: removing the "#" changes nothing.
- Whatever `render_sample` writes loads with `postier.config.load` (tests prove it
  for development and production modes).
- Values are written as TOML literals by `toml_value` (the standard library reads
  TOML but does not write it; the few types here need no library).
"""

from __future__ import annotations

import dataclasses
import textwrap
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path

from postier.config.load import format_duration, is_duration_key
from postier.config.schema import (
    DEV_PORTS,
    IMPLICIT_TLS,
    LISTENER_NAMES,
    STANDARD_PORTS,
    ListenerSettings,
    Settings,
)

#: dotted keys written as active lines (besides every listener key)
OPERATOR_KEYS = frozenset(
    {
        "server.hostname",
        "server.data_dir",
        "dns.nameservers",
        "dns.offline",
        "greylist.enabled",
        "store.backend",
        "log.level",
    }
)

#: what each listener serves, for its section comment
LISTENER_DOCS: Mapping[str, str] = {
    "mx": "SMTP from other mail servers: the domain's MX (RFC 5321)",
    "submission": "message submission by your users' mail clients, STARTTLS + AUTH (RFC 6409)",
    "submissions": "message submission over implicit TLS (RFC 8314)",
    "imap": "IMAP4rev2/IMAP4rev1 with STARTTLS (RFC 9051, RFC 3501)",
    "imaps": "IMAP over implicit TLS (RFC 8314)",
    "pop3": "POP3 with STLS (RFC 1939, RFC 2595)",
    "pop3s": "POP3 over implicit TLS (RFC 8314)",
    "web": "webmail at /, the admin pages at /admin and /metrics; HTTPS when web.tls = true",
}

_WIDTH = 88
_HEADER = """\
postier configuration for {domain} ({mode}), written by `postier init`.

Every section and key is listed with its meaning. Active lines are the settings an
operator sets; a line "#key = value" shows the built-in default: remove the "#" to
change it. Durations are strings such as "90s", "5m", "2h" or "36d"; relative paths
resolve against the folder of this file.

Check it with: postier -c FILE config check
"""


def toml_string(text: str) -> str:
    """A TOML basic string (TOML 1.0 §String: escape '"', '\\' and control characters)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value: object, key: str) -> str:
    """`value` (a settings value, or None) as a TOML literal that `load` reads back."""
    if value is None:
        return '""'  # load: "" for an optional path means "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if is_duration_key(key):
            return toml_string(format_duration(value))
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, Path):
        return toml_string(str(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v, key) for v in value) + "]"
    raise TypeError(f"{key}: cannot write {value!r} as TOML")  # a schema bug


def _comment(text: str, prefix: str = "# ") -> list[str]:
    return textwrap.wrap(
        text,
        _WIDTH - len(prefix),
        initial_indent=prefix,
        subsequent_indent=prefix,
        break_on_hyphens=False,
    )


def sections(settings: Settings) -> Iterator[tuple[str, object]]:
    """(dotted section name, dataclass instance) for every table holding plain keys,
    in schema order; listeners come as "listeners.<name>"."""

    def walk(prefix: str, obj: object) -> Iterator[tuple[str, object]]:
        fields = dataclasses.fields(obj)  # type: ignore[arg-type]
        if any(not dataclasses.is_dataclass(getattr(obj, f.name)) for f in fields):
            yield prefix, obj
        for f in fields:
            sub = getattr(obj, f.name)
            if dataclasses.is_dataclass(sub):
                yield from walk(f"{prefix}.{f.name}", sub)

    for f in dataclasses.fields(Settings):
        if f.name == "source":
            continue
        if f.name == "listeners":
            for name in LISTENER_NAMES:
                yield f"listeners.{name}", settings.listeners[name]
            continue
        yield from walk(f.name, getattr(settings, f.name))


def render_sample(
    domain: str, *, hostname: str | None = None, dev: bool = False, data_dir: str = "./data"
) -> str:
    """The commented postier.toml for `domain`.

    `dev`: the development ports (2525, 2587, ...) on 127.0.0.1 and ``dns.offline =
    true`` (no test or development setup asks the system resolver) and
    ``smtp.outbound.capture = true`` (remote mail kept in the outbox); otherwise the
    standard ports (25, 587, 465, 143, 993, 110, 995, 443) on every IPv4 address.
    """
    ports = DEV_PORTS if dev else STANDARD_PORTS
    # asyncio binds "::" with IPV6_V6ONLY, so "0.0.0.0" is the one address that
    # reaches every IPv4 client; IPv6 is an operator's choice of a second address.
    address = "127.0.0.1" if dev else "0.0.0.0"  # noqa: S104 - a public server binds all
    active: dict[str, object] = {
        "server.hostname": hostname or f"mail.{domain}",
        "server.data_dir": data_dir,
        "dns.offline": dev,
    }
    active["web.tls"] = not dev
    if dev:  # one process: simplest to debug, and what `make run` needs
        active["server.workers"] = 1
        active["smtp.outbound.capture"] = True
    for name in LISTENER_NAMES:
        active[f"listeners.{name}.address"] = address
        active[f"listeners.{name}.port"] = ports[name]
        active[f"listeners.{name}.enabled"] = True
    defaults = Settings()
    header = _HEADER.format(domain=domain, mode="development" if dev else "production")
    lines: list[str] = []
    for paragraph in header.split("\n\n"):
        if lines:
            lines.append("#")
        lines += _comment(" ".join(paragraph.split()))
    listener_intro_done = False
    for section, obj in sections(defaults):
        lines.append("")
        is_listener = section.startswith("listeners.")
        if is_listener and not listener_intro_done:
            # the three listener keys are documented once, not eight times
            listener_intro_done = True
            lines += _comment(
                "Listeners: one table per service (implicit TLS on "
                + ", ".join(sorted(IMPLICIT_TLS))
                + "). Keys:"
            )
            lines += [
                f"#   {f.name}: {f.metadata['doc']}" for f in dataclasses.fields(ListenerSettings)
            ]
            lines.append("")
        if is_listener:
            lines += _comment(LISTENER_DOCS[section.split(".", 1)[1]])
        lines.append(f"[{section}]")
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            key = f"{section}.{f.name}"
            if not is_listener:
                lines += _comment(f.metadata["doc"])
            is_active = key in active or key in OPERATOR_KEYS
            value = active[key] if key in active else getattr(obj, f.name)
            lines.append(("" if is_active else "#") + f"{f.name} = {toml_value(value, key)}")
    return "\n".join(lines) + "\n"


def _type_name(tp: object, key: str) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        return _type_name(inner, key) + " (or empty)"
    if typing.get_origin(tp) is tuple:
        return "list of " + _type_name(args[0], key) + "s"
    if tp is float:
        return "duration" if is_duration_key(key) else "number"
    names: dict[object, str] = {bool: "boolean", int: "integer", str: "string", Path: "path"}
    return names.get(tp, str(tp))


def render_reference() -> str:
    """docs/configuration.md: every key with its type, default and meaning."""
    defaults = Settings()
    out = [
        "# Configuration reference",
        "",
        "<!-- generated by postier.config.sample.render_reference(); "
        "regenerate with `postier config reference > docs/configuration.md` -->",
        "",
        "postier reads one TOML file: `postier -c FILE ...`, else the file named by",
        "`$POSTIER_CONFIG`, else built-in development defaults with data in `./data`.",
        "`postier init --domain example.com` writes a commented file with every key.",
        "",
        "- Unknown keys are errors, and every error names the key",
        "  (`listeners.imap.port: 70000 is not a port`).",
        '- Durations are strings: `"90s"`, `"5m"`, `"2h"`, `"36d"` (units ms, s, m, h, d, w)',
        "  or a bare number of seconds.",
        "- Relative paths resolve against the folder of the config file, never the",
        "  current directory.",
        "",
    ]
    listener_done = False
    for section, obj in sections(defaults):
        if section.startswith("listeners."):
            if listener_done:
                continue
            listener_done = True
            out += [
                "## [listeners.NAME]",
                "",
                "One table per service; keys not given keep their default.",
                "",
                "| listener | serves | development port | standard port |",
                "|---|---|---|---|",
            ]
            out += [
                f"| `{n}` | {LISTENER_DOCS[n]} | {DEV_PORTS[n]} | {STANDARD_PORTS[n]} |"
                for n in LISTENER_NAMES
            ]
            out.append("")
            obj = ListenerSettings()
            section = "listeners.NAME"
        else:
            out += [f"## [{section}]", ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            key = f"{section}.{f.name}"
            default = toml_value(getattr(obj, f.name), key)
            if section == "listeners.NAME" and f.name == "port":
                default = "see above"
            elif section == "server" and f.name == "data_dir":
                default = '`"./data"`'
            else:
                default = f"`{default}`"
            meaning = f.metadata["doc"].replace("|", "\\|")
            out.append(f"| `{f.name}` | {_type_name(hints[f.name], key)} | {default} | {meaning} |")
        out.append("")
    return "\n".join(out)
