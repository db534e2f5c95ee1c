"""Messages for store tests: bytes (or a spool file) with the summary intake
would have computed, since the store never parses (`store.models.NewMessage`)."""

from __future__ import annotations

from pathlib import Path

from postier.mime.summary import summarize_source
from postier.store.models import NewMessage


def new_message(data: bytes | Path) -> NewMessage:
    return NewMessage(data, summarize_source(data))
