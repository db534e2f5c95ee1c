"""postier.store.sqlite: the embedded backend (SQLite index + blob files)."""

from postier.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
