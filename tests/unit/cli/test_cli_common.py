"""`postier.cli.common` helpers: sizes, addresses, the password reader."""

from __future__ import annotations

import argparse
import io

import pytest

from postier.cli.alias import parse_source
from postier.cli.common import (
    EXIT_USAGE,
    CliError,
    add_password_options,
    format_size,
    parse_address,
    parse_domain,
    parse_size,
    read_new_password,
)
from postier.cli.main import build_parser
from postier.config.schema import AuthSettings, Settings


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("500M", 500 * 1024**2),
        ("500m", 500 * 1024**2),
        ("2G", 2 * 1024**3),
        ("2GiB", 2 * 1024**3),
        ("2gb", 2 * 1024**3),
        ("1T", 1024**4),
        ("64k", 65536),
        ("10b", 10),
        (" 3 M ", 3 * 1024**2),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", "1.5G", "2P", "G"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(CliError) as info:
        parse_size(text)
    assert info.value.code == EXIT_USAGE
    assert info.value.message == f"{text!r} is not a size (like 500M, 2G or a number of bytes)"


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "unlimited"), (1024, "1K"), (3 * 1024**2, "3M"), (2 * 1024**3, "2G"), (1000, "1000")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_parse_address_and_domain() -> None:
    assert parse_address("Alice@Bücher.Example").key == "alice@xn--bcher-kva.example"
    assert parse_domain("Example.COM.").ascii == "example.com"
    with pytest.raises(CliError, match=r"^malformed address 'a@b@': bad local part in 'a@b@'$"):
        parse_address("a@b@")
    with pytest.raises(CliError, match=r"^'\[10\.0\.0\.1\]' is an address literal"):
        parse_domain("[10.0.0.1]")


def test_parse_alias_source() -> None:
    example = parse_domain("example.com")
    assert parse_source("@Example.COM") == ("@example.com", "@example.com", example)
    assert parse_source("Sales@Example.COM") == ("sales@example.com", "Sales@example.com", example)
    assert parse_source('"Sales Team"@example.com') == (
        "sales team@example.com",
        '"Sales Team"@example.com',
        example,
    )


SETTINGS = Settings()


@pytest.mark.parametrize(
    ("minimum", "password", "refusal"),
    [
        (8, "12345678", None),
        (8, "1234567", "password too short: 7 characters, at least 8 (auth.min_password_length)"),
        # characters (code points), not octets: 7 characters in 11 UTF-8 octets
        (
            8,
            "\u00e9t\u00e9 \u00e9t\u00e9",
            "password too short: 7 characters, at least 8 (auth.min_password_length)",
        ),
        (8, "\u00e9t\u00e9-\u00e9t\u00e9!", None),
        (12, "correct horse", None),
        (1, "", "empty password"),
    ],
)
def test_password_length_policy(minimum: int, password: str, refusal: str | None) -> None:
    settings = Settings(auth=AuthSettings(min_password_length=minimum))
    args = password_args("--password-stdin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(password + "\n"))
        if refusal is None:
            assert read_new_password(args, settings) == password
        else:
            with pytest.raises(CliError) as info:
                read_new_password(args, settings)
            assert (info.value.code, info.value.message) == (2, refusal)


def password_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False)
    add_password_options(p)
    return p.parse_args(list(argv))


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_password_from_stdin_strips_only_the_line_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("  spaced pw \r\nsecond line\n"))
    assert read_new_password(password_args("--password-stdin"), SETTINGS) == "  spaced pw "


def test_prompt_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", FakeTty())
    prompts: list[str] = []
    answers = iter(["password", "password"])

    def prompt(text: str) -> str:
        prompts.append(text)
        return next(answers)

    assert read_new_password(password_args(), SETTINGS, prompt=prompt) == "password"
    assert prompts == ["Password: ", "Retype password: "]


def test_prompt_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", FakeTty())
    answers = iter(["pw", "pW"])
    with pytest.raises(CliError) as info:
        read_new_password(password_args(), SETTINGS, prompt=lambda _: next(answers))
    assert (info.value.code, info.value.message) == (2, "passwords do not match")


def test_no_tty_no_stdin_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    with pytest.raises(CliError) as info:
        read_new_password(password_args(), SETTINGS)
    assert info.value.message == "no terminal to ask for the password on (use --password-stdin)"


def test_password_option_is_refused() -> None:
    with pytest.raises(CliError) as info:
        read_new_password(password_args("--password", "hunter2"), SETTINGS)
    assert "hunter2" not in info.value.message


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == {
        "init",
        "serve",
        "config",
        "domain",
        "user",
        "alias",
        "queue",
        "trace",
        "mx",
        "verify",
        "dns-check",
        "send",
        "import",
        "export",
        "status",
        "backup",
        "restore",
        "store",
    }
    assert all(helps.values())
