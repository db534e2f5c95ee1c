"""postier.store: the storage interface (`api`, `models`, `errors`) and its backends.

`open_store(settings)` returns the backend named by ``store.backend``, not yet
opened (``store = open_store(s); await store.open(); ...; await store.close()``).
Queue ids, which every backend shares, are `postier.mail.queueid`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postier.config.schema import Settings
    from postier.store.api import Store


def open_store(settings: Settings) -> Store:
    """The configured backend, constructed but not opened."""
    backend = settings.store.backend
    if backend == "sqlite":
        from postier.store.sqlite import SqliteStore

        return SqliteStore(
            settings.server.data_dir,
            default_quota=settings.store.default_quota,
            inline_max=settings.store.inline_max,
        )
    if backend == "postgres":
        from postier.store.postgres import PostgresStore
        from postier.store.postgres.store import default_node_name

        return PostgresStore(
            settings.store.postgres_dsn,
            node=default_node_name(settings.server.data_dir),
            default_quota=settings.store.default_quota,
        )
    raise ValueError(f"store.backend: unknown backend {backend!r} (sqlite or postgres)")
