"""Header search over the header index (`schema` V11: the FTS5 table `header_index`).

Rules:
- The answer is exactly "the casefolded needle is a substring of the casefolded
  value" (RFC 9051 §6.4.4), the same as testing each summary: both sides are folded
  by `schema.fold` and the trigram tokenizer folds nothing more, so a phrase match
  is a substring match, with no false hits to filter out afterwards.
- A needle of 3 characters or more is a phrase query: its cost follows the index
  entries of its trigrams, not the size of the mailbox. Shorter needles have no
  trigram; they are tested with instr() on the indexed text of the mailbox's rows
  (one pass in SQLite, no summary read). A needle holding NUL, which SQLite's text
  functions stop at, is tested in Python over the same rows.
- The needle reaches the index only inside an FTS5 string (its quotes doubled), so
  no client text is ever read as query syntax.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from postier.store.sqlite.schema import fold_text

#: the API's field names → the index's columns
COLUMNS = {"subject": "subject", "from": "from_addr", "to": "to_addr", "cc": "cc", "bcc": "bcc"}


def search(
    conn: sqlite3.Connection, mailbox_id: int, needle: str, fields: Sequence[str]
) -> list[int]:
    """UIDs (ascending) of the messages of `mailbox_id` with `needle` in one of
    `fields`. `ValueError` for a field the index does not hold."""
    unknown = set(fields) - COLUMNS.keys()
    if unknown:
        raise ValueError(f"no header index for {sorted(unknown)}")
    cols = sorted({COLUMNS[f] for f in fields})
    if not cols:
        return []
    folded = fold_text(needle)
    try:
        folded.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no stored (UTF-8) text holds one
        return []
    if not folded:  # "" is in every value
        sql = "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid"
        return [r[0] for r in conn.execute(sql, (mailbox_id,))]
    if "\x00" in folded:
        sql = (
            f"SELECT m.uid, {', '.join('h.' + c for c in cols)} FROM messages m "  # noqa: S608 - column names are constants
            "CROSS JOIN header_index h ON h.rowid = m.id WHERE m.mailbox_id = ? ORDER BY m.uid"
        )
        return [
            r[0]
            for r in conn.execute(sql, (mailbox_id,))
            if any(v is not None and folded in v for v in r[1:])
        ]
    if len(folded) < 3:  # no trigram to look up
        test = " OR ".join(f"instr(h.{c}, ?) > 0" for c in cols)
        sql = (
            "SELECT m.uid FROM messages m CROSS JOIN header_index h ON h.rowid = m.id "  # noqa: S608 - column names are constants
            f"WHERE m.mailbox_id = ? AND ({test}) ORDER BY m.uid"
        )
        return [r[0] for r in conn.execute(sql, (mailbox_id, *([folded] * len(cols))))]
    query = "{" + " ".join(cols) + '} : "' + folded.replace('"', '""') + '"'
    # the index first (CROSS JOIN keeps SQLite from walking the mailbox instead)
    sql = (
        "SELECT m.uid FROM header_index h CROSS JOIN messages m ON m.id = h.rowid "
        "WHERE header_index MATCH ? AND m.mailbox_id = ? ORDER BY m.uid"
    )
    return [r[0] for r in conn.execute(sql, (query, mailbox_id))]
