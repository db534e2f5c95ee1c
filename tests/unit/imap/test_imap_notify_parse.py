"""NOTIFY (RFC 5465 §8) through the command parser: every filter and event form, and
the exact BAD for what the grammar or §5/§6.1 forbid (each also fed byte by byte)."""

from __future__ import annotations

import pytest

from postier.imap.parse import FetchAtt, Notify, NotifyGroup, Section
from tests.unit.imap.test_imap_parse import bad, parse

NEW_EXP = ("MessageNew", "MessageExpunge")

CASES = [
    (b"n NOTIFY NONE", Notify("n", None)),
    (b"n notify none", Notify("n", None)),
    (
        b"n NOTIFY SET (selected (MessageNew MessageExpunge))",
        Notify("n", (NotifyGroup("SELECTED", NEW_EXP),)),
    ),
    (
        b"n NOTIFY SET STATUS (Selected-Delayed (messagenew (uid body.peek[header.fields "
        b"(from to subject)]) messageexpunge flagchange)) (subtree Lists (MessageNew "
        b"MessageExpunge))",
        Notify(
            "n",
            (
                NotifyGroup(
                    "SELECTED-DELAYED",
                    (*NEW_EXP, "FlagChange"),
                    fetch=(
                        FetchAtt("UID"),
                        FetchAtt(
                            "BODY",
                            Section(text="HEADER.FIELDS", fields=("from", "to", "subject")),
                            peek=True,
                        ),
                    ),
                ),
                NotifyGroup("SUBTREE", NEW_EXP, ("Lists",)),
            ),
            status=True,
        ),
    ),
    (
        # BODY[...] in a notification never sets \Seen: read as BODY.PEEK (§5.2)
        b"n NOTIFY SET (selected (MessageNew (BODY[TEXT]<0.10>) MessageExpunge))",
        Notify(
            "n",
            (
                NotifyGroup(
                    "SELECTED",
                    NEW_EXP,
                    fetch=(FetchAtt("BODY", Section(text="TEXT"), (0, 10), True),),
                ),
            ),
        ),
    ),
    (
        b'n NOTIFY SET (mailboxes (INBOX "a b" {3+}\r\nx/y) (MailboxName)) (personal NONE) '
        b"(inboxes (SubscriptionChange)) (subscribed (FlagChange MessageNew MessageExpunge))",
        Notify(
            "n",
            (
                NotifyGroup("MAILBOXES", ("MailboxName",), ("INBOX", "a b", "x/y")),
                NotifyGroup("PERSONAL"),
                NotifyGroup("INBOXES", ("SubscriptionChange",)),
                NotifyGroup("SUBSCRIBED", ("FlagChange", *NEW_EXP)),
            ),
        ),
    ),
    (
        # unknown and unsupported events parse; the handler refuses them (NO BADEVENT)
        b"n NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange X-Thing))",
        Notify("n", (NotifyGroup("PERSONAL", (*NEW_EXP, "AnnotationChange", "X-Thing")),)),
    ),
    (
        b"n NOTIFY SET (mailboxes inbox/Sub (MailboxName MailboxName))",
        Notify("n", (NotifyGroup("MAILBOXES", ("MailboxName",), ("INBOX/Sub",)),)),
    ),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[c[0][:50].decode() for c in CASES])
def test_notify(line: bytes, expected: Notify) -> None:
    assert parse(line + b"\r\n") == expected


PAIR = b"MessageNew and MessageExpunge go together"
ERRORS = [
    (b"n NOTIFY", b"n BAD Missing argument"),
    (b"n NOTIFY GET", b"n BAD Expected SET or NONE"),
    (b"n NOTIFY NONE (personal NONE)", b"n BAD Unexpected extra arguments"),
    (b"n NOTIFY SET", b"n BAD Missing argument"),
    (b"n NOTIFY SET STATUS", b"n BAD Missing argument"),
    (b"n NOTIFY SET STATE (personal NONE)", b"n BAD Expected STATUS or an event group"),
    (b"n NOTIFY SET (everything (MessageNew))", b"n BAD Unknown mailbox filter EVERYTHING"),
    (b"n NOTIFY SET (personal)", b"n BAD Expected space"),
    (b"n NOTIFY SET (personal ALL)", b"n BAD Expected an event list or NONE"),
    (b"n NOTIFY SET (personal ())", b"n BAD Expected event"),
    (b"n NOTIFY SET (subtree (MessageNew MessageExpunge))", b"n BAD Expected space"),
    (b"n NOTIFY SET (mailboxes () (MailboxName))", b"n BAD Expected mailbox name"),
    (
        b"n NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed NONE)",
        b"n BAD Only one SELECTED or SELECTED-DELAYED group",
    ),
    (b"n NOTIFY SET (selected (MailboxName))", b"n BAD Only message events apply to SELECTED"),
    (b"n NOTIFY SET (personal (MessageNew))", b"n BAD " + PAIR),
    (b"n NOTIFY SET (personal (MessageExpunge))", b"n BAD " + PAIR),
    (
        b"n NOTIFY SET (personal (FlagChange))",
        b"n BAD FlagChange needs MessageNew and MessageExpunge",
    ),
    (
        b"n NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",
        b"n BAD MessageNew fetch attributes need SELECTED",
    ),
    (
        b"n NOTIFY SET (selected (MessageNew (RFC822) MessageExpunge))",
        b"n BAD RFC822 would set \\Seen; use BODY.PEEK",
    ),
    (b"n NOTIFY SET (selected (MessageNew (ALL) MessageExpunge))", b"n BAD Unknown fetch item ALL"),
    (b"n NOTIFY SET (personal NONE) ", b"n BAD Missing argument"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "response"), ERRORS, ids=[e[0][:60].decode() for e in ERRORS])
def test_notify_malformed(line: bytes, response: bytes) -> None:
    assert bad(line + b"\r\n") == response + b"\r\n"
