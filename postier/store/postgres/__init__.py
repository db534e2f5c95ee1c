"""The PostgreSQL backend: several postier nodes over one database (issue 16)."""

from postier.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
