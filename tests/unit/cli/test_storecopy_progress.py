"""`postier store copy` progress on stderr: a bar redrawn in place at a terminal,
plain lines (one per table, then at most every ten seconds) otherwise."""

from __future__ import annotations

import io

from postier.cli import storecopy
from postier.store.copy import CopyError, parse_target


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_at_a_terminal() -> None:
    stream = Tty()
    bar = storecopy.Progress(stream)
    bar.update("copy", "messages", 0, 200)
    bar.update("copy", "messages", 200, 200)
    bar.end()
    text = stream.getvalue()
    assert text.startswith("\rcopy   messages")
    assert "[" + "#" * 30 + "] 100% 200/200" in text
    assert text.endswith("\n") and text.count("\n") == 1


def test_plain_lines_otherwise(monkeypatch) -> None:
    stream = io.StringIO()
    clock = [100.0]
    monkeypatch.setattr(storecopy.time, "monotonic", lambda: clock[0])
    bar = storecopy.Progress(stream)
    bar.update("copy", "users", 0, 3)
    bar.update("copy", "users", 3, 3)
    bar.update("copy", "messages", 0, 5000)
    for done in range(500, 5000, 500):
        clock[0] += 1
        bar.update("copy", "messages", done, 5000)  # quiet: less than 10 s apart
    clock[0] += 10
    bar.update("copy", "messages", 4800, 5000)
    bar.update("copy", "messages", 5000, 5000)
    bar.end()
    assert stream.getvalue().splitlines() == [
        "copy users: 0/3 rows",
        "copy users: 3/3 rows",
        "copy messages: 0/5000 rows",
        "copy messages: 4800/5000 rows",
        "copy messages: 5000/5000 rows",
    ]


def test_targets() -> None:
    assert parse_target("postgresql://u@h:5432/db") == ("postgres", "postgresql://u@h:5432/db")
    assert parse_target("sqlite:/var/lib/x") == ("sqlite", "/var/lib/x")
    for bad in ("mysql://x", "sqlite:", "/var/lib/x"):
        try:
            parse_target(bad)
        except CopyError:
            continue
        raise AssertionError(bad)
