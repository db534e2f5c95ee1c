"""The README's first hour, run as written: `make run` (the Makefile's own recipe, in
a temporary folder, ports overridden to 0), the swaks and imaplib lines of "Trying
it", `postier user add` without `-c`, and the banner after the demo password
changed. Tests never use development ports: the recipe's `serve` step runs after
its `init` step wrote postier.toml, whose ports are then set to 0."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from postier.config.load import ENV_VAR
from tests.conftest import need_tool
from tests.support.tty import on_tty

REPO = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    """Our environment without POSTIER_CONFIG, nor the variables of a `make test`
    that runs us (a nested make would announce its directories)."""
    drop = {ENV_VAR, "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def make_run_recipe(folder: Path) -> list[str]:
    """The shell lines `make run` executes in `folder` (make -n; the virtualenv
    step is taken as done: `.venv` here is the repository's own)."""
    (folder / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    (folder / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    (folder / ".venv").symlink_to(REPO / ".venv")
    out = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "run"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        env=env(),
    )
    return out.stdout.splitlines()


def readme_block(after: str) -> list[str]:
    """The commands of the first indented block after the line starting `after`,
    continuation lines joined, trailing comments dropped."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("    "):
            block.append(line[4:])
        elif block:
            break
    joined = "\n".join(block).replace("\\\n", " ")
    return [re.sub(r"\s+#.*$", "", c).strip() for c in joined.splitlines() if c.strip()]


class Serve:
    """The recipe's serve line as a child process; ports read from its banner."""

    def __init__(self, line: str, folder: Path) -> None:
        self.log = (folder / f"serve-{time.time_ns()}.log").open("w")
        self.proc = subprocess.Popen(
            shlex.split(line),
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env(),
        )
        self.banner: list[str] = []
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            self.banner.append(text.rstrip("\n"))
            if text.startswith("ready"):
                break
        assert self.banner and self.banner[-1].startswith("ready"), self.banner
        self.ports = {
            m.group(1): int(m.group(2))
            for m in (re.match(r"^\s+(\w+)\s+\S+:(\d+)", x) for x in self.banner)
            if m
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(30) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


def test_readme_first_hour(tmp_path: Path) -> None:
    recipe = make_run_recipe(tmp_path)
    assert recipe == [
        "test -f postier.toml || .venv/bin/postier init --dev --demo --domain example.test",
        ".venv/bin/postier -c postier.toml serve",
    ]
    init, serve = recipe
    first = subprocess.run(
        init, shell=True, cwd=tmp_path, capture_output=True, text=True, env=env(), check=False
    )
    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    data = tmp_path.resolve() / "data"
    assert first.stdout == (
        f"wrote {tmp_path.resolve() / 'postier.toml'}\n"
        f"domain example.test: added in {data}\n"
        "added user demo@example.test (password printed by 'postier serve')\n"
        "added alias postmaster@example.test -> demo@example.test\n"
        "added alias abuse@example.test -> demo@example.test\n"
    )
    config = tmp_path / "postier.toml"
    assert config.is_file()  # a real file every later command finds
    # tests never use development ports
    config.write_text(re.sub(r"(?m)^port = \d+$", "port = 0", config.read_text()))
    srv = Serve(serve, tmp_path)
    try:
        data = tmp_path.resolve() / "data"
        assert (
            srv.banner[0] == f"postier mail.example.test: config {config.resolve()}, data in {data}"
        )
        [login] = [x for x in srv.banner if x.strip().startswith("login:")]
        m = re.fullmatch(r"  login: demo@example\.test  password: (\S{16})", login)
        assert m, login
        password = m.group(1)

        # "Send yourself a message and read it back", as written but for the ports
        swaks, imap = readme_block("Send yourself a message")
        swaks = swaks.replace("127.0.0.1:2587", f"127.0.0.1:{srv.ports['submission']}")
        args = [need_tool("swaks"), *shlex.split(swaks.replace("PASSWORD", password))[1:]]
        sent = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert re.search(r"<~  250 2\.0\.0 Ok: queued as [0-9A-Z]{16}", sent.stdout)
        imap = imap.replace("'127.0.0.1',2143", f"'127.0.0.1',{srv.ports['imap']}")
        args = shlex.split(imap.replace("PASSWORD", password))
        assert args[0] == "python3"
        read = subprocess.run(
            [sys.executable, *args[1:]], capture_output=True, text=True, timeout=60, check=False
        )
        assert read.stdout == "('OK', [b'1'])\n", read.stderr

        # "Administer it from another terminal in the same folder": no -c
        add, list_users = readme_block("Administer it")
        assert add == ".venv/bin/postier user add alice@example.test"
        argv = shlex.split(add)
        argv[0] = str(tmp_path / argv[0])
        code, shown = on_tty(argv, tmp_path, env(), ["alice's password"] * 2)
        assert code == 0, shown
        assert shown.endswith("added user alice@example.test\n")
        listed = subprocess.run(
            shlex.split(list_users), cwd=tmp_path, capture_output=True, text=True, env=env()
        )
        assert listed.stdout == "alice@example.test\ndemo@example.test\n"

        # elsewhere, without -c: a clear error, and no ./data made there
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        lost = subprocess.run(
            [str(tmp_path / ".venv/bin/postier"), "user", "list"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            env=env(),
        )
        assert (lost.returncode, lost.stdout) == (2, "")
        assert lost.stderr.startswith("postier: no configuration: give -c FILE, set POSTIER_CONFIG")
        assert list(elsewhere.iterdir()) == []
        # -c after the command
        found = subprocess.run(
            [str(tmp_path / ".venv/bin/postier"), "user", "list", "-c", str(config)],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            env=env(),
        )
        assert found.stdout == listed.stdout

        # the demo password changed: the banner must not print the old one
        changed = subprocess.run(
            [".venv/bin/postier", "user", "passwd", "demo@example.test", "--password-stdin"],
            cwd=tmp_path,
            input="a new password\n",
            capture_output=True,
            text=True,
            env=env(),
        )
        assert changed.stdout == "password changed for demo@example.test\n", changed.stderr
    finally:
        srv.stop()
    # the second `make run`: init is skipped (postier.toml exists), the banner is honest
    again = subprocess.run(
        init, shell=True, cwd=tmp_path, capture_output=True, text=True, env=env(), check=False
    )
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    srv = Serve(serve, tmp_path)
    try:
        assert "  login: demo@example.test  (password changed since it was generated)" in srv.banner
        assert not any(password in x for x in srv.banner)
    finally:
        srv.stop()


def test_make_run_data_is_private(tmp_path: Path) -> None:
    """`make run`'s data holds password hashes and mail: owner only."""
    init, _ = make_run_recipe(tmp_path)
    subprocess.run(init, shell=True, cwd=tmp_path, capture_output=True, env=env(), check=True)
    modes = {
        name: (tmp_path / name).stat().st_mode & 0o777
        for name in ("data", "data/postier.db", "data/demo-password", "data/blobs")
    }
    assert modes == {
        "data": 0o700,
        "data/postier.db": 0o600,
        "data/demo-password": 0o600,
        "data/blobs": 0o700,
    }
