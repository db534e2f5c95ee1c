"""The real `postier` entry point as a subprocess: init, domain/user/alias admin,
exit codes and exact stderr lines; passwords never on the command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from postier.auth.passwords import verify_password
from postier.config.load import ENV_VAR, load
from postier.config.schema import DEV_PORTS, STANDARD_PORTS
from postier.store import open_store
from postier.store.models import User
from tests.support.tty import on_tty

DOMAIN = "example.test"


@dataclass
class Result:
    code: int
    out: str
    err: str


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env.update(extra)
    return env


def postier(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "postier", *args],
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
        env=env or clean_env(),
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Cli:
    """`postier -c <tmp>/postier.toml ...` after `postier init --dev`."""

    dir: Path
    config: Path

    def __call__(self, *args: str, stdin: str | None = None) -> Result:
        return postier("-c", str(self.config), *args, cwd=self.dir, stdin=stdin)

    def user(self, address: str) -> User | None:
        async def get() -> User | None:
            store = open_store(load(self.config))
            await store.open()
            try:
                return await store.get_user(address)
            finally:
                await store.close()

        return asyncio.run(get())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    r = postier("init", "--domain", DOMAIN, "--dev", cwd=tmp_path)
    assert (r.code, r.err) == (0, "")
    return Cli(tmp_path, tmp_path / "postier.toml")


def ok(r: Result, out: str = "") -> None:
    assert (r.code, r.err, r.out) == (0, "", out)


def fails(r: Result, err: str, code: int = 2) -> None:
    assert (r.code, r.out, r.err) == (code, "", f"postier: {err}\n")


def roles(user: str, domain: str = DOMAIN) -> str:
    """What `user add` or `domain add` prints when it makes the role aliases."""
    return f"added alias postmaster@{domain} -> {user}\nadded alias abuse@{domain} -> {user}\n"


# --- help ----------------------------------------------------------------------------


def test_help_lists_every_command(tmp_path: Path) -> None:
    r = postier("--help", cwd=tmp_path)
    assert r.code == 0
    for line in (
        "    init                write a commented postier.toml and create the mail",
        "    serve               run the mail server (SMTP, submission, IMAP, POP3,",
        "    config              check, print or document the configuration",
        "    domain              add, list or delete mail domains",
        "    user                add, list, change or delete mail accounts",
        "    alias               add, list or delete forwarding aliases",
        "  -c FILE, --config FILE",
        "  --log-format {text,json}",
    ):
        assert line + "\n" in r.out


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    r = postier(cwd=tmp_path)
    assert r.code == 2
    assert r.err.endswith("postier: error: the following arguments are required: COMMAND\n")


# --- init ----------------------------------------------------------------------------


def test_init_dev(tmp_path: Path) -> None:
    r = postier("init", "--domain", "Example.TEST", "--dir", "site", "--dev", cwd=tmp_path)
    config = (tmp_path / "site" / "postier.toml").resolve()
    ok(
        r,
        f"wrote {config}\n"
        f"domain example.test: added in {tmp_path.resolve() / 'site' / 'data'}\n"
        "next:\n"
        f"  postier -c {config} user add you@example.test   (postmaster@ and abuse@ go to it)\n"
        f"  postier -c {config} serve\n",
    )
    assert config.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "site" / "data").is_dir()
    s = load(config)
    assert s.server.hostname == "mail.example.test"
    assert s.server.data_dir == tmp_path.resolve() / "site" / "data"
    assert {n: lst.port for n, lst in s.listeners.items()} == DEV_PORTS
    assert s.dns.offline is True
    assert s.smtp.outbound.capture is True  # the development outbox: nothing is sent
    assert "\ncapture = true\n" in config.read_text()
    # the data dir is found from anywhere: it resolves against the config's folder
    ok(postier("-c", "site/postier.toml", "domain", "list", cwd=tmp_path), "example.test\n")


def test_init_production(tmp_path: Path) -> None:
    r = postier("init", "--domain", "example.com", "--hostname", "mx.example.com", cwd=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.out.endswith(
        "DNS: example.com. MX 10 mx.example.com.  and an A/AAAA record for mx.example.com\n"
    )
    s = load(tmp_path / "postier.toml")
    assert s.server.hostname == "mx.example.com"
    assert {n: lst.port for n, lst in s.listeners.items()} == STANDARD_PORTS
    assert s.dns.offline is False
    assert s.smtp.outbound.capture is False  # never captures unless set
    assert "\n#capture = false\n" in (tmp_path / "postier.toml").read_text()


def test_init_refuses_to_overwrite(cli: Cli) -> None:
    before = cli.config.read_bytes()
    r = postier("init", "--domain", "other.test", "--dev", cwd=cli.dir)
    fails(r, "postier.toml exists already (use --force to overwrite it)")
    assert cli.config.read_bytes() == before


def test_init_force_keeps_the_data(cli: Cli) -> None:
    ok(
        cli("user", "add", "alice@example.test", "--password-stdin", stdin="password1\n"),
        "added user alice@example.test\n"
        "added alias postmaster@example.test -> alice@example.test\n"
        "added alias abuse@example.test -> alice@example.test\n",
    )
    r = postier("init", "--domain", DOMAIN, "--force", cwd=cli.dir)
    assert (r.code, r.err) == (0, "")
    assert f"domain example.test: exists already in {cli.dir.resolve() / 'data'}\n" in r.out
    assert load(cli.config).listeners["mx"].port == 25
    ok(cli("user", "list"), "alice@example.test\n")


@pytest.mark.parametrize(
    ("args", "err"),
    [
        (
            ["--domain", "exa mple.test"],
            "malformed domain 'exa mple.test': bad domain 'exa mple.test'",
        ),
        (["--domain", "[127.0.0.1]"], "'[127.0.0.1]' is an address literal, not a domain"),
        (
            ["--domain", "example.test", "--hostname=-x.test"],
            "malformed domain '-x.test': bad domain '-x.test'",
        ),
        (
            ["--domain", "example.test", "--demo"],
            "--demo needs --dev: a demo account belongs on a development server",
        ),
    ],
)
def test_init_bad_input(tmp_path: Path, args: list[str], err: str) -> None:
    fails(postier("init", *args, cwd=tmp_path), err)
    assert not (tmp_path / "postier.toml").exists()


# --- configuration errors and precedence -------------------------------------------------


def test_bad_config_names_the_key(cli: Cli) -> None:
    text = cli.config.read_text().replace("port = 2143", "port = 70000")
    cli.config.write_text(text)
    fails(cli("domain", "list"), "listeners.imap.port: 70000 is not a port")
    fails(cli("config", "check"), "listeners.imap.port: 70000 is not a port")


def test_config_check(cli: Cli) -> None:
    ok(cli("config", "check"), f"{cli.config.resolve()}: ok\n")


def test_env_var_names_the_config(cli: Cli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = postier("domain", "list", cwd=elsewhere, env=clean_env(**{ENV_VAR: str(cli.config)}))
    ok(r, "example.test\n")
    # -c wins over the environment
    r = postier(
        "-c",
        str(elsewhere / "missing.toml"),
        "domain",
        "list",
        cwd=elsewhere,
        env=clean_env(**{ENV_VAR: str(cli.config)}),
    )
    fails(r, f"{elsewhere / 'missing.toml'}: cannot read: No such file or directory")


def test_store_unreachable_is_a_runtime_failure(cli: Cli) -> None:
    text = cli.config.read_text().replace('data_dir = "./data"', 'data_dir = "./blocker/data"')
    cli.config.write_text(text)
    (cli.dir / "blocker").write_text("a file where a folder should be\n")
    r = cli("domain", "list")
    assert (r.code, r.out) == (1, "")
    assert r.err.startswith(f"postier: cannot open the store in {cli.dir.resolve()}/blocker/data: ")
    assert r.err.count("\n") == 1


# --- domains ---------------------------------------------------------------------------


def test_domains(cli: Cli) -> None:
    ok(cli("domain", "add", "Example.ORG."), "added domain example.org\n")
    ok(cli("domain", "add", "bücher.example"), "added domain xn--bcher-kva.example\n")
    fails(
        cli("domain", "add", "xn--bcher-kva.example"), "domain xn--bcher-kva.example exists already"
    )
    ok(cli("domain", "list"), "example.org\nexample.test\nxn--bcher-kva.example\n")
    ok(cli("domain", "del", "example.org"), "deleted domain example.org\n")
    fails(
        cli("domain", "del", "example.org"),
        "unknown domain example.org (add it with: postier domain add example.org)",
    )
    ok(cli("domain", "list"), "example.test\nxn--bcher-kva.example\n")
    fails(cli("domain", "add", "a..b"), "malformed domain 'a..b': bad domain 'a..b'")


def test_domain_del_refuses_while_users_or_aliases_exist(cli: Cli) -> None:
    ok(
        cli("user", "add", "a@example.test", "--password-stdin", stdin="password\n"),
        "added user a@example.test\n" + roles("a@example.test"),
    )
    ok(
        cli("user", "add", "b@example.test", "--password-stdin", stdin="password\n"),
        "added user b@example.test\n",
    )
    fails(
        cli("domain", "del", DOMAIN),
        "domain example.test still has 2 users (see: postier user list example.test)",
    )
    ok(
        cli("user", "del", "a@example.test", "--yes"),
        "deleted user a@example.test and all their mail\n",
    )
    ok(
        cli("user", "del", "b@example.test", "--yes"),
        "deleted user b@example.test and all their mail\n",
    )
    ok(
        cli("alias", "add", "@example.test", "x@remote.example"),
        "added alias @example.test -> x@remote.example\n",
    )
    fails(
        cli("domain", "del", DOMAIN),
        "domain example.test still has 1 alias (see: postier alias list example.test)",
    )
    ok(cli("alias", "del", "@example.test"), "deleted alias @example.test\n")
    # postmaster@ and abuse@ are part of the domain: they go with it
    ok(cli("domain", "del", DOMAIN), "deleted domain example.test\n")
    ok(cli("domain", "list"))
    ok(cli("alias", "list"))


# --- users -----------------------------------------------------------------------------


def test_user_add_list_passwd_del(cli: Cli) -> None:
    ok(
        cli("user", "add", "Alice@Example.TEST", "--password-stdin", stdin="s3cret pass\r\n"),
        "added user alice@example.test\n" + roles("alice@example.test"),
    )
    user = cli.user("alice@example.test")
    assert user is not None
    assert verify_password(user.password_hash, "s3cret pass")
    assert not verify_password(user.password_hash, "s3cret pass\r")
    assert user.quota_bytes == 0

    ok(
        cli(
            "user",
            "add",
            "bob@example.test",
            "--quota",
            "2G",
            "--password-stdin",
            stdin="bob password\n",
        ),
        "added user bob@example.test\n",
    )
    ok(cli("user", "list"), "alice@example.test\nbob@example.test\n")
    ok(cli("user", "list", "example.test"), "alice@example.test\nbob@example.test\n")
    r = cli("user", "list", "-l")
    assert (r.code, r.err) == (0, "")
    lines = r.out.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["alice@example.test", "quota=unlimited", "used=0"],
        ["bob@example.test", "quota=2G", "used=0"],
    ]

    ok(
        cli("user", "passwd", "alice@example.test", "--password-stdin", stdin="new password\n"),
        "password changed for alice@example.test\n",
    )
    user = cli.user("alice@example.test")
    assert user is not None
    assert verify_password(user.password_hash, "new password")
    assert not verify_password(user.password_hash, "s3cret pass")

    ok(cli("user", "quota", "bob@example.test", "500M"), "quota of bob@example.test: 500M\n")
    bob = cli.user("bob@example.test")
    assert bob is not None
    assert bob.quota_bytes == 500 * 1024 * 1024

    fails(
        cli("user", "del", "bob@example.test"),
        "delete user bob@example.test and all their mail (0 bytes)?: not confirmed "
        "(no terminal to ask on; add --yes)",
    )
    assert cli.user("bob@example.test") is not None
    ok(
        cli("user", "del", "bob@example.test", "--yes"),
        "deleted user bob@example.test and all their mail\n",
    )
    assert cli.user("bob@example.test") is None
    ok(cli("user", "list"), "alice@example.test\n")


def test_user_admin_role(cli: Cli) -> None:
    """`user add --admin` and `user admin [--off]` set the flag the web admin checks."""
    ok(
        cli("user", "add", "boss@example.test", "--admin", "--password-stdin", stdin="boss pass\n"),
        "added user boss@example.test (admin)\n" + roles("boss@example.test"),
    )
    ok(
        cli("user", "add", "carol@example.test", "--password-stdin", stdin="carol pass\n"),
        "added user carol@example.test\n",
    )
    boss, carol = cli.user("boss@example.test"), cli.user("carol@example.test")
    assert boss is not None
    assert carol is not None
    assert (boss.admin, carol.admin) == (True, False)
    ok(cli("user", "admin", "Carol@Example.TEST"), "carol@example.test is an admin\n")
    carol = cli.user("carol@example.test")
    assert carol is not None
    assert carol.admin
    r = cli("user", "list", "-l")
    assert [line.endswith(" admin") for line in r.out.splitlines()] == [True, True]
    ok(
        cli("user", "admin", "boss@example.test", "--off"),
        "boss@example.test is no longer an admin\n",
    )
    boss = cli.user("boss@example.test")
    assert boss is not None
    assert not boss.admin
    fails(cli("user", "admin", "nobody@example.test"), "no such user nobody@example.test")


def test_default_quota_from_config(cli: Cli) -> None:
    cli.config.write_text(
        cli.config.read_text().replace("#default_quota = 0", "default_quota = 1048576")
    )
    ok(
        cli("user", "add", "q@example.test", "--password-stdin", stdin="password\n"),
        "added user q@example.test\n" + roles("q@example.test"),
    )
    user = cli.user("q@example.test")
    assert user is not None
    assert user.quota_bytes == 1048576
    # an explicit 0 means unlimited, not "the default"
    ok(
        cli(
            "user", "add", "u@example.test", "--quota", "0", "--password-stdin", stdin="password\n"
        ),
        "added user u@example.test\n",
    )
    user = cli.user("u@example.test")
    assert user is not None
    assert user.quota_bytes == 0


@pytest.mark.parametrize(
    ("args", "stdin", "err"),
    [
        (
            ["add", "carol@example.org"],
            "password\n",
            "unknown domain example.org (add it with: postier domain add example.org)",
        ),
        (["add", "carol"], "password\n", "malformed address 'carol': no domain in 'carol'"),
        (
            ["add", "ca rol@example.test"],
            "password\n",
            "malformed address 'ca rol@example.test': bad local part in 'ca rol@example.test'",
        ),
        (["add", "carol@example.test"], "\n", "empty password"),
        (["add", "carol@example.test"], "", "empty password"),
        (
            ["add", "carol@example.test"],
            "1234567\n",
            "password too short: 7 characters, at least 8 (auth.min_password_length)",
        ),
        (
            ["add", "carol@example.test"],
            "\u00e9t\u00e9 123\n",  # 7 characters, 9 octets: characters count
            "password too short: 7 characters, at least 8 (auth.min_password_length)",
        ),
        (
            ["add", "carol@example.test", "--quota", "lots"],
            "password\n",
            "'lots' is not a size (like 500M, 2G or a number of bytes)",
        ),
        (["passwd", "nobody@example.test"], "password\n", "no such user nobody@example.test"),
        (["del", "nobody@example.test"], None, "no such user nobody@example.test"),
        (["quota", "nobody@example.test", "1G"], None, "no such user nobody@example.test"),
        (
            ["list", "example.org"],
            None,
            "unknown domain example.org (add it with: postier domain add example.org)",
        ),
    ],
)
def test_user_bad_input(cli: Cli, args: list[str], stdin: str | None, err: str) -> None:
    extra = ["--password-stdin"] if args[0] in ("add", "passwd") else []
    fails(cli("user", *args, *extra, stdin=stdin), err)
    ok(cli("user", "list"))


def test_user_add_duplicate(cli: Cli) -> None:
    ok(
        cli("user", "add", "dup@example.test", "--password-stdin", stdin="password one\n"),
        "added user dup@example.test\n" + roles("dup@example.test"),
    )
    fails(
        cli("user", "add", "DUP@example.test", "--password-stdin", stdin="password two\n"),
        "user dup@example.test exists already",
    )
    user = cli.user("dup@example.test")
    assert user is not None
    assert verify_password(user.password_hash, "password one")


def test_user_add_without_tty_or_stdin_option(cli: Cli) -> None:
    fails(
        cli("user", "add", "x@example.test", stdin="pw\npw\n"),
        "no terminal to ask for the password on (use --password-stdin)",
    )
    fails(
        cli("user", "passwd", "x@example.test", stdin="pw\npw\n"),
        "no terminal to ask for the password on (use --password-stdin)",
    )
    ok(cli("user", "list"))


@pytest.mark.parametrize(
    "args",
    [
        ["--password", "hunter2"],
        ["--password=hunter2"],
        ["-p", "hunter2"],
        ["--password-stdin", "--password", "hunter2"],
    ],
)
def test_password_is_never_accepted_as_an_argument(cli: Cli, args: list[str]) -> None:
    for command in ("add", "passwd"):
        r = cli("user", command, "x@example.test", *args, stdin="other\n")
        fails(
            r,
            "a password is never accepted on the command line "
            "(use --password-stdin, or type it at the prompt)",
        )
        assert "hunter2" not in r.err
    ok(cli("user", "list"))


def test_password_option_is_not_an_abbreviation(cli: Cli) -> None:
    r = cli("user", "add", "x@example.test", "--passw", stdin="pw\n")
    assert (r.code, r.out) == (2, "")
    assert r.err.endswith("error: unrecognized arguments: --passw\n")


# --- password prompt on a terminal -------------------------------------------------------


def run_on_tty(cli: Cli, args: list[str], typed: list[str]) -> tuple[int, str]:
    """Run postier with a pseudo-terminal as its controlling TTY; type `typed` lines
    each after a prompt; return (exit code, everything the terminal showed)."""
    argv = [sys.executable, "-m", "postier", "-c", str(cli.config), *args]
    return on_tty(argv, cli.dir, clean_env(), typed)


def test_prompted_password_typed_twice(cli: Cli) -> None:
    code, shown = run_on_tty(
        cli, ["user", "add", "tty@example.test"], ["password one", "password one"]
    )
    assert code == 0
    assert "Password: <typed>" in shown
    assert "Retype password: <typed>" in shown
    assert "password one" not in shown  # getpass turns echo off
    assert shown.endswith("added user tty@example.test\n" + roles("tty@example.test"))
    user = cli.user("tty@example.test")
    assert user is not None
    assert verify_password(user.password_hash, "password one")


def test_prompted_passwords_must_match(cli: Cli) -> None:
    code, shown = run_on_tty(
        cli, ["user", "add", "tty@example.test"], ["password one", "password two"]
    )
    assert code == 2
    assert shown.endswith("postier: passwords do not match\n")
    assert cli.user("tty@example.test") is None


def test_user_del_asks_at_a_terminal(cli: Cli) -> None:
    ok(
        cli("user", "add", "bob@example.test", "--password-stdin", stdin="password\n"),
        "added user bob@example.test\n" + roles("bob@example.test"),
    )
    argv = [sys.executable, "-m", "postier", "-c", str(cli.config), "user", "del"]
    code, shown = on_tty(
        [*argv, "bob@example.test"], cli.dir, clean_env(), ["n"], prompts=(b"[y/n]",)
    )
    assert (code, shown) == (
        2,
        "delete user bob@example.test and all their mail (0 bytes)? [y/N] <typed>n\n"
        "postier: not confirmed: nothing changed\n",
    )
    assert cli.user("bob@example.test") is not None
    code, shown = on_tty(
        [*argv, "bob@example.test"], cli.dir, clean_env(), ["yes"], prompts=(b"[y/n]",)
    )
    assert (code, shown.splitlines()[-1]) == (0, "deleted user bob@example.test and all their mail")
    assert cli.user("bob@example.test") is None


# --- aliases ---------------------------------------------------------------------------


def test_aliases(cli: Cli) -> None:
    ok(
        cli("user", "add", "alice@example.test", "--password-stdin", stdin="password\n"),
        "added user alice@example.test\n" + roles("alice@example.test"),
    )
    # a new domain's role addresses go to the server's first account
    ok(
        cli("domain", "add", "example.org"),
        "added domain example.org\n" + roles("alice@example.test", "example.org"),
    )
    ok(
        cli("alias", "add", "Sales@example.test", "ALICE@example.test"),
        "added alias sales@example.test -> alice@example.test\n",
    )
    # the store keys addresses lower-cased; duplicates drop
    ok(
        cli(
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "Bob@Remote.EXAMPLE",
            "alice@example.test",
        ),
        "added alias team@example.test -> alice@example.test, bob@remote.example\n",
    )
    ok(
        cli("alias", "add", "@example.org", "alice@example.test"),
        "added alias @example.org -> alice@example.test\n",
    )
    ok(
        cli("alias", "list"),
        "@example.org -> alice@example.test\n"
        "abuse@example.org -> alice@example.test\n"
        "abuse@example.test -> alice@example.test\n"
        "postmaster@example.org -> alice@example.test\n"
        "postmaster@example.test -> alice@example.test\n"
        "sales@example.test -> alice@example.test\n"
        "team@example.test -> alice@example.test, bob@remote.example\n",
    )
    ok(
        cli("alias", "list", "example.org"),
        "@example.org -> alice@example.test\n"
        "abuse@example.org -> alice@example.test\n"
        "postmaster@example.org -> alice@example.test\n",
    )
    ok(cli("alias", "del", "TEAM@example.test"), "deleted alias team@example.test\n")
    ok(
        cli("alias", "list", "example.test"),
        "abuse@example.test -> alice@example.test\n"
        "postmaster@example.test -> alice@example.test\n"
        "sales@example.test -> alice@example.test\n",
    )


def test_role_addresses_already_taken_are_left_alone(cli: Cli) -> None:
    """An operator's own postmaster@ (a user here) is never replaced by an alias."""
    ok(
        cli("user", "add", "postmaster@example.test", "--password-stdin", stdin="password\n"),
        "added user postmaster@example.test\n"
        "added alias abuse@example.test -> postmaster@example.test\n",
    )
    ok(
        cli("user", "add", "bob@example.test", "--password-stdin", stdin="password\n"),
        "added user bob@example.test\n",
    )
    ok(cli("alias", "list"), "abuse@example.test -> postmaster@example.test\n")


def test_alias_to_missing_local_address_warns(cli: Cli) -> None:
    r = cli("alias", "add", "sales@example.test", "nobody@example.test")
    assert (r.code, r.out) == (0, "added alias sales@example.test -> nobody@example.test\n")
    assert r.err == (
        "postier: warning: nobody@example.test does not exist yet; mail to it will bounce\n"
    )


@pytest.mark.parametrize(
    ("args", "err"),
    [
        (
            ["add", "x@example.org", "a@remote.example"],
            "unknown domain example.org (add it with: postier domain add example.org)",
        ),
        (
            ["add", "@example.org", "a@remote.example"],
            "unknown domain example.org (add it with: postier domain add example.org)",
        ),
        (
            ["add", "x@example.test", "not-an-address"],
            "malformed address 'not-an-address': no domain in 'not-an-address'",
        ),
        (
            ["add", "x y@example.test", "a@remote.example"],
            "malformed address 'x y@example.test': bad local part in 'x y@example.test'",
        ),
        (["add", "@", "a@remote.example"], "malformed domain '': empty domain"),
        (
            ["add", "alice@example.test", "a@remote.example"],
            "alice@example.test is a user; an alias cannot take its address",
        ),
        (
            ["add", "loop@example.test", "Loop@example.test"],
            "alias loop@example.test cannot forward to itself",
        ),
        (
            ["add", "dup@example.test", "b@remote.example"],
            "alias dup@example.test exists already (delete it first: postier alias del "
            "dup@example.test)",
        ),
        (["del", "none@example.test"], "no such alias none@example.test"),
        (["del", "@example.test"], "no such alias @example.test"),
        (
            ["del", "x@example.org"],
            "unknown domain example.org (add it with: postier domain add example.org)",
        ),
        (
            ["list", "example.org"],
            "unknown domain example.org (add it with: postier domain add example.org)",
        ),
    ],
)
def test_alias_bad_input(cli: Cli, args: list[str], err: str) -> None:
    ok(
        cli("user", "add", "alice@example.test", "--password-stdin", stdin="password\n"),
        "added user alice@example.test\n" + roles("alice@example.test"),
    )
    ok(
        cli("alias", "add", "dup@example.test", "a@remote.example"),
        "added alias dup@example.test -> a@remote.example\n",
    )
    fails(cli("alias", *args), err)
    ok(
        cli("alias", "list"),
        "abuse@example.test -> alice@example.test\n"
        "dup@example.test -> a@remote.example\n"
        "postmaster@example.test -> alice@example.test\n",
    )


def test_alias_needs_a_target(cli: Cli) -> None:
    r = cli("alias", "add", "x@example.test")
    assert (r.code, r.out) == (2, "")
    assert r.err.endswith("error: the following arguments are required: TARGET\n")


# --- serve -----------------------------------------------------------------------------


def test_serve_starts_and_stops_on_sigterm(cli: Cli) -> None:
    text = cli.config.read_text()
    cli.config.write_text(re.sub(r"(?m)^port = \d+$", "port = 0", text))
    log = cli.dir / "serve.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-m", "postier", "-c", str(cli.config), "serve"],
            cwd=cli.dir,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=clean_env(),
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            banner = []
            for line in proc.stdout:
                banner.append(line)
                if line.startswith("ready"):
                    break
            assert banner, log.read_text()
            data = cli.dir.resolve() / "data"
            where = f"config {cli.config.resolve()}, data in {data}"
            assert banner[0] == f"postier mail.example.test: {where}\n"
            assert any(line.startswith("  mx           127.0.0.1:") for line in banner)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
