"""`postier.imap.literals`: spool files for large APPEND literals, the per-user budget."""

from __future__ import annotations

from pathlib import Path

from postier.imap.literals import LiteralBudget, LiteralFile
from postier.imap.receiver import SpooledLiteral


def test_literal_file_spools_and_notes_nul(tmp_path: Path) -> None:
    f = LiteralFile(tmp_path / "spool")
    f.write(b"abc")
    f.write(b"d\x00e")
    assert f.spooled() == SpooledLiteral(f.path, 6, True)
    assert f.path.read_bytes() == b"abcd\x00e"
    assert f.path.name.startswith("imap-")
    assert f.path.suffix == ".tmp"  # swept at startup with the SMTP spool
    f.discard()
    assert not f.path.exists()
    f.discard()  # twice (the store may have taken it already): no error


def test_literal_file_that_cannot_be_created_fails_and_drops_bytes(tmp_path: Path) -> None:
    (tmp_path / "spool").write_bytes(b"")
    f = LiteralFile(tmp_path / "spool")
    assert f.failed
    f.write(b"xyz")
    assert f.size == 3
    f.discard()


def test_budget_per_user() -> None:
    b = LiteralBudget(100)
    assert b.charge(1, 60)
    assert not b.charge(1, 41)
    assert b.held(1) == 60
    assert b.charge(2, 100)
    assert b.charge(1, 40)
    b.release(1, 60)
    assert b.held(1) == 40
    b.release(1, 40)
    assert b.held(1) == 0
    assert b._held == {2: 100}  # nothing kept for users with nothing in flight
