"""TOML file → `Settings`, validated; every error names the key.

Rules:
- Unknown keys are errors (a typo must not silently fall back to a default).
- Durations accept "90s", "5m", "2h", "36d" (or a bare number of seconds).
- Relative paths resolve against the folder of the config file, never the cwd.
- Which file (`find_config`): ``-c FILE``, else $POSTIER_CONFIG, else
  ./postier.toml; with none of them, an error that says how to get one.
- The first problem found raises `ConfigError("listeners.imap.port: 70000 is not a port")`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from postier.config.schema import LISTENER_NAMES, ListenerSettings, Settings

ENV_VAR = "POSTIER_CONFIG"
#: the file found in the current folder when neither -c nor $POSTIER_CONFIG names one
LOCAL_CONFIG = "postier.toml"
NO_CONFIG = (
    f"no configuration: give -c FILE, set {ENV_VAR}=FILE, or run this in the folder "
    f"of {LOCAL_CONFIG} (create one with: postier init --domain DOMAIN; "
    "for development: make run)"
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}

#: fields (by dotted key suffix) whose float value is a duration
_DURATION_FIELDS = {
    "drain_timeout",
    "timeout",
    "idle_timeout",
    "data_timeout",
    "connect_timeout",
    "command_timeout",
    "login_timeout",
    "first_retry",
    "max_backoff",
    "lifetime",
    "delay_warning",
    "delay",
    "window",
    "whitelist_period",
    "failure_delay",
    "max_delay",
    "lockout_period",
    "search_time_limit",
}


def is_duration_key(key: str) -> bool:
    """True when the float field at dotted `key` is a duration ("90s", "5m")."""
    return key.rsplit(".", 1)[-1] in _DURATION_FIELDS


class ConfigError(Exception):
    """A configuration problem; the message starts with the dotted key."""


def parse_duration(value: object, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f'{key}: {value!r} is not a duration (like "90s", "5m", "36d")')
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{key}: {value!r} is negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ConfigError(f'{key}: {value!r} is not a duration (like "90s", "5m", "36d")')


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"


def _convert(value: Any, tp: Any, key: str, base: Path) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value in ("", None) and type(None) in args:
            return None
        return _convert(value, non_none[0], key, base)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} is not true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: {value!r} is not an integer")
        if value < 0:
            raise ConfigError(f"{key}: {value!r} is negative")
        return value
    if tp is float:
        if is_duration_key(key):
            return parse_duration(value, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: {value!r} is not a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: {value!r} is not a string")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: {value!r} is not a path")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: {value!r} is not a list")
        return tuple(_convert(v, args[0], f"{key}[{i}]", base) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, base)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - schema bug


def _build(cls: Any, table: Any, prefix: str, base: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if k not in names:
            raise ConfigError(f"{key}: unknown key")
        if cls is Settings and k == "listeners":
            kwargs[k] = _listeners(v, base)
            continue
        kwargs[k] = _convert(v, hints[k], key, base)
    return cls(**kwargs)


def _listeners(table: Any, base: Path) -> dict[str, ListenerSettings]:
    if not isinstance(table, dict):
        raise ConfigError(f"listeners: expected a table, got {table!r}")
    out = dict(Settings().listeners)
    for name, sub in table.items():
        if name not in LISTENER_NAMES:
            raise ConfigError(
                f"listeners.{name}: unknown listener (one of {', '.join(LISTENER_NAMES)})"
            )
        merged = dataclasses.asdict(out[name]) | dict(sub if isinstance(sub, dict) else {})
        if not isinstance(sub, dict):
            raise ConfigError(f"listeners.{name}: expected a table, got {sub!r}")
        out[name] = _build(ListenerSettings, merged, f"listeners.{name}", base)
    return out


def validate(s: Settings) -> None:
    """Cross-field and range checks that the types alone cannot express."""
    for name, lst in s.listeners.items():
        if not 0 <= lst.port <= 65535:
            raise ConfigError(f"listeners.{name}.port: {lst.port} is not a port")
        try:
            ipaddress.ip_address(lst.address)
        except ValueError:
            if lst.address != "localhost":
                raise ConfigError(
                    f"listeners.{name}.address: {lst.address!r} is not an IP address"
                ) from None
    if s.store.backend not in ("sqlite", "postgres"):
        raise ConfigError(f'store.backend: {s.store.backend!r} is not "sqlite" or "postgres"')
    if s.store.backend == "postgres" and not s.store.postgres_dsn:
        raise ConfigError('store.postgres_dsn: required when store.backend = "postgres"')
    if s.log.format not in ("text", "json"):
        raise ConfigError(f'log.format: {s.log.format!r} is not "text" or "json"')
    if s.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: {s.log.level!r} is not debug, info, warning or error")
    if s.smtp.limits.bare_lf not in ("reject", "normalize"):
        raise ConfigError(
            f'smtp.limits.bare_lf: {s.smtp.limits.bare_lf!r} is not "reject" or "normalize"'
        )
    if s.smtp.limits.max_recipients < 1:
        raise ConfigError("smtp.limits.max_recipients: must be at least 1")
    if s.smtp.limits.max_line_length < 512:
        raise ConfigError("smtp.limits.max_line_length: must be at least 512 (RFC 5321)")
    if s.smtp.outbound.smarthost_tls not in ("starttls", "require", "implicit", "none"):
        raise ConfigError(
            f"smtp.outbound.smarthost_tls: {s.smtp.outbound.smarthost_tls!r} is "
            "not starttls, require, implicit or none"
        )
    if s.smtp.outbound.smarthost and not _is_hostport(s.smtp.outbound.smarthost):
        raise ConfigError(
            f'smtp.outbound.smarthost: {s.smtp.outbound.smarthost!r} is not "host:port"'
        )
    for i, ns in enumerate(s.dns.nameservers):
        if not _is_hostport(ns, host_is_ip=True, port_optional=True):
            raise ConfigError(f'dns.nameservers[{i}]: {ns!r} is not "ip" or "ip:port"')
    for i, net in enumerate(s.greylist.allow):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"greylist.allow[{i}]: {net!r} is not a network") from None
    for i, net in enumerate(s.web.metrics_allow):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(
                f"web.metrics_allow[{i}]: {net!r} is not an address or network"
            ) from None
    if (s.tls.cert is None) != (s.tls.key is None):
        raise ConfigError("tls.cert: cert and key must be given together")
    if s.server.workers > 256:
        raise ConfigError(f"server.workers: {s.server.workers} is more than 256")
    if not s.server.hostname or " " in s.server.hostname:
        raise ConfigError(f"server.hostname: {s.server.hostname!r} is not a host name")


def _is_hostport(value: str, *, host_is_ip: bool = False, port_optional: bool = False) -> bool:
    host, port = split_hostport(value, default_port=None if not port_optional else 53)
    if not host or port is None or not 0 < port <= 65535:
        return False
    if host_is_ip:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
    return True


def split_hostport(value: str, default_port: int | None) -> tuple[str, int | None]:
    """ "host:port", "[v6]:port", "v6" or "host" → (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_s = value.partition(":")
    else:
        host, port_s = value, ""
    if not port_s:
        return host, default_port
    try:
        return host, int(port_s)
    except ValueError:
        return host, None


def load(path: Path) -> Settings:
    """Read and validate a config file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    base = path.resolve().parent
    server = data.setdefault("server", {})
    if isinstance(server, dict):  # else _build names the key ("server: expected a table")
        server.setdefault("data_dir", "./data")
    s: Settings = _build(Settings, data, "", base)
    s = dataclasses.replace(s, source=path.resolve())
    validate(s)
    return s


def find_config(explicit: str | Path | None, cwd: Path | None = None) -> Path:
    """The config file a command uses: `-c FILE`, else $POSTIER_CONFIG, else
    ./postier.toml when it exists; else `ConfigError` saying how to get one.

    Never a silent default: a command run in the wrong folder must not create an
    empty data directory there and answer as if nothing were configured.
    """
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    local = (cwd or Path.cwd()) / LOCAL_CONFIG
    if local.is_file():
        return local
    raise ConfigError(NO_CONFIG)
