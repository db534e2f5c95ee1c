"""The store's tables as both backends share them: what `store copy` moves and checks.

What it owns: for every table whose rows are state (not a cache, not a log that
only one process reads), its key and its columns with a backend-neutral type.
Each backend's row access (`sqlite/rows.py`, `postgres/rows.py`) turns these
neutral values into its own and back; `copy.py` moves and compares rows in
these terms only, so one algorithm serves both directions.

Rules:
- Neutral types: ``int``, ``text``, ``bool``, ``bytes``, ``list`` (a list of
  text: alias targets), ``stext`` (summary text: text in SQLite, UTF-8 BYTEA in
  PostgreSQL, `postgres/schema.py`). `nullable` columns may hold None.
- Rows are read and written in key order; the key is unique. Text keys compare by
  code point on both sides (SQLite's BINARY, PostgreSQL's ``COLLATE "C"``), so
  both backends list a table in the same order and `copy.verify` compares two
  streams row by row.
- Tables come parents first (foreign keys): copying them in this order never
  names a row that is not there yet.
- A column of one backend that is not here is derived (PostgreSQL's casefolded
  search columns, SQLite's header index), a lease that must not survive a move
  (queue claims), or unused; each backend's row module lists those
  (`NOT_COPIED`), and a test checks that every column of both schemas is one or
  the other, so a new column cannot be forgotten by the copy.
- ``blobs`` rows travel with their message bytes (`Table.data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["int", "text", "bool", "bytes", "list", "stext"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    #: rows carry message bytes (blobs): read and written with them
    data: bool = False
    #: an identity / AUTOINCREMENT column whose high-water mark is copied too
    serial: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def key_of(self, row: tuple[object, ...]) -> tuple[object, ...]:
        return tuple(row[self.names.index(k)] for k in self.key)

    def kind_of(self, name: str) -> Kind:
        for c in self.columns:
            if c.name == name:
                return c.kind
        raise KeyError(name)


def _cols(spec: str) -> tuple[Column, ...]:
    """``"id:int name:text special_use:text?"``: name, kind, ``?`` for nullable."""
    out = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        nullable = kind.endswith("?")
        out.append(Column(name, kind.rstrip("?"), nullable))  # type: ignore[arg-type]
    return tuple(out)


TABLES: tuple[Table, ...] = (
    Table("meta", ("key",), _cols("key:text value:int")),
    Table("domains", ("name",), _cols("name:text created:int dkim_selector:text")),
    Table(
        "users",
        ("id",),
        _cols(
            "id:int address:text domain:text password_hash:text quota_bytes:int created:int "
            "disabled:bool admin:bool"
        ),
        serial="id",
    ),
    Table("aliases", ("source",), _cols("source:text domain:text targets:list")),
    Table(
        "mailboxes",
        ("id",),
        _cols(
            "id:int user_id:int name:text special_use:text? uidvalidity:int uidnext:int "
            "highestmodseq:int"
        ),
        serial="id",
    ),
    Table("subscriptions", ("user_id", "name"), _cols("user_id:int name:text")),
    Table("access_keys", ("mailbox_id",), _cols("mailbox_id:int key:bytes")),
    Table(
        "blobs",
        ("id",),
        _cols(
            "id:text size:int envelope:bytes bodystructure:bytes body:bytes subject:stext "
            "from_addr:stext to_addr:stext cc:stext bcc:stext date:int? date_zone:int? "
            "message_id:stext preview:stext header_size:int crlf_size:int"
        ),
        data=True,
    ),
    Table(
        "messages",
        ("id",),
        _cols(
            "id:int mailbox_id:int uid:int modseq:int flags:text internal_date:int size:int "
            "blob_id:text"
        ),
        serial="id",
    ),
    Table("expunged", ("mailbox_id", "uid"), _cols("mailbox_id:int uid:int modseq:int")),
    Table(
        "queue",
        ("id",),
        _cols(
            "id:text sender:text blob_id:text size:int created:int next_attempt:int "
            "attempts:int held:bool envid:text ret:text smtputf8:bool body_8bit:bool "
            "auth_user:text is_bounce:bool last_error:text return_path_size:int? "
            "dkim_signature:bytes?"
        ),
    ),
    Table(
        "queue_recipients",
        ("qid", "position"),
        _cols(
            "qid:text position:int address:text state:text last_reply:text notify:text orcpt:text"
        ),
    ),
    Table("trace", ("id",), _cols("id:int qid:text at:int event:text detail:text"), serial="id"),
    Table(
        "greylist",
        ("network", "sender", "recipient"),
        _cols("network:text sender:text recipient:text first_seen:int last_seen:int attempts:int"),
    ),
    Table("greylist_pass", ("kind", "value"), _cols("kind:text value:text expires:int")),
    Table("bayes_tokens", ("model", "token"), _cols("model:int token:text spam:int ham:int")),
    Table("bayes_totals", ("model",), _cols("model:int spam:int ham:int")),
    Table("bayes_seen", ("model", "digest"), _cols("model:int digest:text is_spam:bool")),
)

BY_NAME = {t.name: t for t in TABLES}

#: what a row of `TABLES` is, neutral values in column order
Row = tuple[object, ...]
