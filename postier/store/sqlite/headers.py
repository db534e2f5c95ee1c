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
- Rows not indexed yet (`header_pending`, schema 14: the store indexes them in
  batches soon after their commit) are tested from their blob rows, folded the
  same way, in the same statement as the index: one snapshot, so a batch indexed
  meanwhile is neither missed nor counted twice. There are few: at most what the
  server took in since its last batch, a second or so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from postier.store.sqlite.schema import fold_text

#: the rows not indexed yet, with their message and blob rows (the blob's columns
#: have the index's names)
_PENDING = (
    "header_pending p CROSS JOIN messages m ON m.id = p.id CROSS JOIN blobs b ON b.id = m.blob_id"
)

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
        values = ", ".join("{t}." + c for c in cols)
        # the second column tells the indexed rows (folded) from the pending ones
        sql = (
            f"SELECT m.uid, 0, {values.format(t='h')} FROM messages m "  # noqa: S608 - column names are constants
            "CROSS JOIN header_index h ON h.rowid = m.id WHERE m.mailbox_id = ? "
            f"UNION ALL SELECT m.uid, 1, {values.format(t='b')} FROM {_PENDING} "
            "WHERE m.mailbox_id = ?"
        )
        return sorted(
            r[0]
            for r in conn.execute(sql, (mailbox_id, mailbox_id))
            if any(v is not None and folded in (fold_text(v) if r[1] else v) for v in r[2:])
        )
    # the rows not indexed yet, from their blob rows (few: module rules)
    pending = " OR ".join(f"instr(postier_fold(b.{c}), ?) > 0" for c in cols)
    pending_sql = f"SELECT m.uid FROM {_PENDING} WHERE m.mailbox_id = ? AND ({pending})"  # noqa: S608 - column names are constants
    pending_args = (mailbox_id, *([folded] * len(cols)))
    if len(folded) < 3:  # no trigram to look up
        test = " OR ".join(f"instr(h.{c}, ?) > 0" for c in cols)
        sql = (
            "SELECT m.uid FROM messages m CROSS JOIN header_index h ON h.rowid = m.id "  # noqa: S608 - column names are constants
            f"WHERE m.mailbox_id = ? AND ({test}) UNION {pending_sql} ORDER BY 1"
        )
        args = (mailbox_id, *([folded] * len(cols)), *pending_args)
        return [r[0] for r in conn.execute(sql, args)]
    query = "{" + " ".join(cols) + '} : "' + folded.replace('"', '""') + '"'
    # the index first (CROSS JOIN keeps SQLite from walking the mailbox instead)
    sql = (
        "SELECT m.uid FROM header_index h CROSS JOIN messages m ON m.id = h.rowid "  # noqa: S608 - column names are constants
        f"WHERE header_index MATCH ? AND m.mailbox_id = ? UNION {pending_sql} ORDER BY 1"
    )
    return [r[0] for r in conn.execute(sql, (query, mailbox_id, *pending_args))]
