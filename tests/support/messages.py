"""Messages for store tests: bytes (or a spool file) with the summary intake
would have computed, since the store never parses (`store.models.NewMessage`)."""

from __future__ import annotations

from pathlib import Path

from postier.mime.summary import summarize_source
from postier.store.api import Store
from postier.store.models import Mailbox, NewMessage


def new_message(data: bytes | Path) -> NewMessage:
    return NewMessage(data, summarize_source(data))


async def inbox_and_sent(store: Store) -> tuple[Mailbox, Mailbox]:
    """A domain, its user u@example.test, and that user's INBOX and Sent: where the
    migration tests put the messages a schema change must carry over."""
    await store.add_domain("example.test")
    user = await store.add_user("u@example.test", "h")
    inbox = await store.get_mailbox(user.id, "INBOX")
    sent = await store.get_mailbox(user.id, "Sent")
    assert inbox is not None and sent is not None
    return inbox, sent
