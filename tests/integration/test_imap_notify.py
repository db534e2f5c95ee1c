"""IMAP NOTIFY (RFC 5465) on the real server: one client asks for events, a second
client (or an SMTP delivery) changes things, and the first one's exact unsolicited
responses are checked, between commands, in IDLE and at the end of commands."""

from __future__ import annotations

import re
import socket

import pytest

from tests.integration.test_imap import ALICE, SIMPLE, Raw, close_clients, deliver
from tests.integration.test_imap import _close_sockets as _close_sockets
from tests.support.server import ServerThread

MSG = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
BADEVENT = b"[BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"


def client(server: ServerThread) -> Raw:
    c = Raw(server.port("imap"))
    c.login()
    assert c.cmd("E ENABLE IMAP4rev2").endswith(b"E OK ENABLE completed\r\n")
    return c


def silent(c: Raw, wait: float = 0.4) -> None:
    """Nothing arrives unasked for `wait` seconds."""
    assert not c.buf
    c.sock.settimeout(wait)
    try:
        with pytest.raises(TimeoutError):
            c.sock.recv(1)
    finally:
        c.sock.settimeout(10)


def append(c: Raw, box: str, data: bytes = MSG, flags: str = "") -> int:
    reply = c.cmd(f"A APPEND {box} ({flags}) {{{len(data)}+}}\r\n".encode() + data)
    m = re.search(rb"APPENDUID \d+ (\d+)", reply)
    assert m is not None, reply
    return int(m.group(1))


def uidvalidity(c: Raw, box: str) -> int:
    m = re.search(rb"UIDVALIDITY (\d+)", c.cmd(f"S STATUS {box} (UIDVALIDITY)"))
    assert m is not None
    return int(m.group(1))


def test_capability_and_refusals(server: ServerThread) -> None:
    c = client(server)
    assert b" NOTIFY" in c.cmd("C CAPABILITY")
    for events in (
        b"(personal (MessageNew MessageExpunge AnnotationChange))",
        b"(subtree INBOX (MailboxMetadataChange))",
        b"(personal (ServerMetadataChange))",
        b"(selected (MessageNew MessageExpunge X-Private))",
    ):
        assert c.cmd(b"N NOTIFY SET " + events) == (
            b"N NO " + BADEVENT + b" Unsupported NOTIFY event\r\n"
        )
    names = " ".join(f"n{i}" for i in range(1001))
    assert c.cmd(f"N NOTIFY SET (mailboxes ({names}) (MailboxName))") == (
        b"N NO [NOTIFICATIONOVERFLOW] Too many mailbox names\r\n"
    )
    assert c.cmd("N NOTIFY SET (selected (MailboxName))") == (
        b"N BAD Only message events apply to SELECTED\r\n"
    )
    pre = Raw(server.port("imap"))
    assert pre.cmd("N NOTIFY NONE") == b"N BAD Log in first\r\n"


def test_status_indicator_lists_watched_mailboxes(server: ServerThread) -> None:
    c = client(server)
    append(c, "Drafts", flags="\\Seen")
    append(c, "Drafts")
    uv = {box: uidvalidity(c, box) for box in ("Archive", "Drafts", "INBOX")}
    reply = c.cmd(
        "N NOTIFY SET STATUS (mailboxes (Drafts Archive nosuch) (MessageNew MessageExpunge))"
    )
    assert reply == (
        b"* STATUS Archive (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %d UNSEEN 0)\r\n"
        b"* STATUS Drafts (MESSAGES 2 UIDNEXT 3 UIDVALIDITY %d UNSEEN 1)\r\n"
        b"N OK NOTIFY completed\r\n" % (uv["Archive"], uv["Drafts"])
    )
    # the selected mailbox is left out; CONDSTORE adds HIGHESTMODSEQ (§3.1)
    c.cmd("S SELECT INBOX (CONDSTORE)")
    reply = c.cmd("N NOTIFY SET STATUS (personal (MessageNew MessageExpunge))")
    boxes = re.findall(rb"\* STATUS (\S+) \(", reply)
    assert boxes == [b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"]
    assert re.search(
        rb"\* STATUS Drafts \(MESSAGES 2 UIDNEXT 3 UIDVALIDITY \d+ UNSEEN 1 HIGHESTMODSEQ \d+\)",
        reply,
    )


def test_other_mailboxes_between_commands(server: ServerThread) -> None:
    a = client(server)
    b = client(server)
    assert (
        a.cmd(
            "N NOTIFY SET (personal (MessageNew MessageExpunge FlagChange MailboxName "
            "SubscriptionChange))"
        )
        == b"N OK NOTIFY completed\r\n"
    )
    # a message appended elsewhere: STATUS, with no command from the client
    uid = append(b, "Drafts")
    assert a.line() == b"* STATUS Drafts (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
    # an SMTP delivery to INBOX
    deliver(server, SIMPLE)
    assert a.line() == b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
    # flags: without CONDSTORE, only a change of UNSEEN is worth a STATUS (§5.1)
    b.cmd("S SELECT Drafts")
    b.cmd(f"F UID STORE {uid} +FLAGS (\\Seen)")
    assert a.line() == b"* STATUS Drafts (UNSEEN 0)\r\n"
    b.cmd(f"F UID STORE {uid} +FLAGS ($Later)")
    silent(a)
    b.cmd(f"F UID STORE {uid} +FLAGS (\\Deleted)")
    silent(a)
    b.cmd("X EXPUNGE")
    assert a.line() == b"* STATUS Drafts (MESSAGES 0 UIDNEXT 2 UNSEEN 0)\r\n"
    # mailbox names and subscriptions (§5.4, §5.5)
    b.cmd("C CREATE Work")
    assert a.line() == b'* LIST (\\HasNoChildren) "/" Work\r\n'
    b.cmd("C CREATE Work/2024")
    assert a.until(b"* LIST (\\HasChildren)") == (
        b'* LIST (\\HasNoChildren) "/" Work/2024\r\n* LIST (\\HasChildren) "/" Work\r\n'
    )
    b.cmd("R RENAME Work Play")
    assert a.line() == b'* LIST (\\HasChildren) "/" Play ("OLDNAME" (Work))\r\n'
    b.cmd("S SUBSCRIBE Play/2024")
    assert a.line() == b'* LIST (\\HasNoChildren \\Subscribed) "/" Play/2024\r\n'
    b.cmd("S UNSUBSCRIBE Play/2024")
    assert a.line() == b'* LIST (\\HasNoChildren) "/" Play/2024\r\n'
    b.cmd("D DELETE Play/2024")
    assert a.until(b"* LIST (\\HasNoChildren)") == (
        b'* LIST (\\NonExistent) "/" Play/2024\r\n* LIST (\\HasNoChildren) "/" Play\r\n'
    )
    # a's own changes are not announced back (§5)
    a.cmd("C CREATE Mine")
    append(a, "Junk")
    assert a.cmd("N NOOP") == b"N OK NOOP completed\r\n"
    silent(a)
    # NOTIFY NONE: quiet again
    assert a.cmd("N NOTIFY NONE") == b"N OK NOTIFY completed\r\n"
    append(b, "Junk")
    b.cmd("C CREATE Quiet")
    silent(a)
    assert a.cmd("N NOOP") == b"N OK NOOP completed\r\n"


def test_condstore_flag_changes_and_filters(server: ServerThread) -> None:
    a = client(server)
    b = client(server)
    a.cmd("E ENABLE CONDSTORE")
    b.cmd("C CREATE Lists/imap")
    b.cmd("C CREATE Listsx")
    uv = uidvalidity(a, "Lists/imap")
    assert (
        a.cmd(
            "N NOTIFY SET (subtree Lists (MessageNew MessageExpunge FlagChange)) "
            "(mailboxes Listsx (MailboxName))"
        )
        == b"N OK NOTIFY completed\r\n"
    )
    append(b, "Listsx")  # MailboxName only: no STATUS
    append(b, "INBOX")  # not watched
    uid = append(b, "Lists/imap")
    m = re.fullmatch(
        rb"\* STATUS Lists/imap \(MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ (\d+)\)\r\n",
        a.line(),
    )
    assert m is not None
    b.cmd("S SELECT Lists/imap")
    b.cmd(f"F UID STORE {uid} +FLAGS ($Later)")
    modseq = int(m.group(1)) + 1
    assert a.line() == b"* STATUS Lists/imap (UIDVALIDITY %d HIGHESTMODSEQ %d)\r\n" % (uv, modseq)
    b.cmd(f"F UID STORE {uid} +FLAGS (\\Seen)")
    assert a.line() == (
        b"* STATUS Lists/imap (UIDVALIDITY %d HIGHESTMODSEQ %d UNSEEN 0)\r\n" % (uv, modseq + 1)
    )
    b.cmd("R RENAME Listsx Lists2")  # MAILBOXES names one name exactly (§6.6)
    assert a.line() == b'* LIST (\\HasNoChildren) "/" Lists2 ("OLDNAME" (Listsx))\r\n'
    b.cmd("C CREATE Lists/new")
    silent(a)


def test_selected_mailbox_immediate_and_fetch(server: ServerThread) -> None:
    a = client(server)
    b = client(server)
    a.cmd("S SELECT INBOX")
    assert (
        a.cmd(
            "N NOTIFY SET (selected (MessageNew (UID FLAGS BODY.PEEK[HEADER.FIELDS (Subject)]) "
            "MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge))"
        )
        == b"N OK NOTIFY completed\r\n"
    )
    deliver(server, SIMPLE)
    assert a.until(b"* 1 FETCH") == (
        b"* 1 EXISTS\r\n"
        b"* 1 FETCH (UID 1 FLAGS () BODY[HEADER.FIELDS (Subject)] {24}\r\n"
        b"Subject: Lunch plans\r\n\r\n)\r\n"
    )
    b.cmd("S SELECT INBOX")
    b.cmd("F STORE 1 +FLAGS (\\Flagged)")
    assert a.line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n"
    b.cmd("F STORE 1 +FLAGS (\\Deleted)")
    assert a.line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Deleted))\r\n"
    b.cmd("X EXPUNGE")
    assert a.line() == b"* 1 EXPUNGE\r\n"  # SELECTED: at once, between commands (§6.1.1)
    # the client's own APPEND to the selected mailbox: EXISTS, but no FETCH (§5.2)
    assert append(a, "INBOX") == 2
    assert a.cmd("N NOOP") == b"N OK NOOP completed\r\n"
    # other mailboxes still report through STATUS; the selected one does not
    append(b, "Sent")
    assert a.line() == b"* STATUS Sent (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
    silent(a)


def test_own_append_to_selected_gets_exists_only(server: ServerThread) -> None:
    a = client(server)
    a.cmd("S SELECT INBOX")
    a.cmd("N NOTIFY SET (selected (MessageNew (UID) MessageExpunge))")
    data = MSG
    reply = a.cmd(f"A APPEND INBOX () {{{len(data)}+}}\r\n".encode() + data)
    assert reply.startswith(b"* 1 EXISTS\r\nA OK [APPENDUID "), reply
    silent(a)


def test_selected_delayed_holds_expunges(server: ServerThread) -> None:
    a = client(server)
    b = client(server)
    deliver(server, SIMPLE, SIMPLE)
    a.cmd("S SELECT INBOX")
    a.cmd("N NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
    b.cmd("S SELECT INBOX")
    b.cmd("F STORE 1 +FLAGS (\\Deleted)")
    silent(a)  # no FlagChange asked for: flags wait for a command
    b.cmd("X EXPUNGE")
    silent(a)  # SELECTED-DELAYED: the expunge waits too (§6.1.2)
    deliver(server, SIMPLE)
    assert a.line() == b"* 3 EXISTS\r\n"
    # FETCH may not announce the expunge (RFC 9051 §7.5.1): message 1 stays addressable
    assert a.cmd("F FETCH 1:* (UID)") == (
        b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nF OK FETCH completed\r\n"
    )
    assert a.cmd("N NOOP") == b"* 1 EXPUNGE\r\nN OK NOOP completed\r\n"


def test_no_selected_group_leaves_the_selected_mailbox_to_commands(server: ServerThread) -> None:
    a = client(server)
    a.cmd("S SELECT INBOX")
    a.cmd("N NOTIFY SET (personal (MessageNew MessageExpunge))")
    deliver(server, SIMPLE)
    silent(a)  # RFC 5465 §3.1: no SELECTED means no message events for it
    assert a.cmd("N NOOP") == b"* 1 EXISTS\r\nN OK NOOP completed\r\n"


def test_idle_reports_other_mailboxes(server: ServerThread) -> None:
    a = client(server)
    b = client(server)
    a.cmd("S SELECT INBOX")
    a.cmd("N NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")
    a.send(b"I IDLE\r\n")
    assert a.line() == b"+ idling\r\n"
    append(b, "Archive")
    assert a.line() == b"* STATUS Archive (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
    deliver(server, SIMPLE)
    assert a.line() == b"* 1 EXISTS\r\n"  # IDLE reports the selected mailbox as ever
    b.cmd("D DELETE Archive")
    assert a.line() == b'* LIST (\\NonExistent) "/" Archive\r\n'
    a.send(b"DONE\r\n")
    assert a.line() == b"I OK IDLE terminated\r\n"


def test_selected_mailbox_deleted_between_commands(server: ServerThread) -> None:
    a = client(server)
    b = client(server)
    b.cmd("C CREATE Temp")
    a.cmd("S SELECT Temp")
    a.cmd("N NOTIFY SET (selected (MessageNew MessageExpunge))")
    append(b, "Temp")
    assert a.line() == b"* 1 EXISTS\r\n"
    b.cmd("D DELETE Temp")
    assert a.line() == b"* BYE Selected mailbox was deleted\r\n"
    with pytest.raises((EOFError, ConnectionError, socket.timeout)):
        a.line()


def test_notify_is_kept_across_select(server: ServerThread) -> None:
    a = client(server)
    b = client(server)
    a.cmd(
        "N NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge))"
    )
    a.cmd("S SELECT Drafts")
    append(b, "INBOX")
    assert a.line() == b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
    a.cmd("S SELECT INBOX")
    append(b, "INBOX")
    assert a.line() == b"* 2 EXISTS\r\n"
    append(b, "Drafts")
    assert a.line() == b"* STATUS Drafts (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
    close_clients()
    assert ALICE


def test_feed_overflow_compares_everything(server: ServerThread) -> None:
    """A session whose feed was cut off (it fell behind) loses no event: it compares
    every mailbox with what it last told the client."""
    server.store._hub.max_pending = 2  # subscriptions made from now on hold 2 changes
    a = client(server)
    b = client(server)
    for _ in range(3):
        append(b, "Drafts")
    a.cmd("N NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")
    b.cmd("S SELECT Drafts")
    b.cmd("C COPY 1:3 Archive")  # three changes in one commit: a's feed overflows
    assert a.line() == b"* STATUS Archive (MESSAGES 3 UIDNEXT 4 UNSEEN 3)\r\n"
    b.cmd("C CREATE Later")
    assert a.line() == b'* LIST (\\HasNoChildren) "/" Later\r\n'
