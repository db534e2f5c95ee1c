"""The IMAP command parser: a table per command (every literal form included) and
the exact BAD for malformed input. Every input is framed by the real Receiver, once
whole and once byte by byte."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from postier.imap.errors import ParseError
from postier.imap.parse import (
    Append,
    AppendMessage,
    Authenticate,
    CancelUpdate,
    Capability,
    CatPart,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchAtt,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    QResync,
    Rename,
    Search,
    SearchAge,
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSet,
    SearchSize,
    SearchText,
    Section,
    Select,
    SetQuota,
    Sort,
    SortCriterion,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Thread,
    Unselect,
    Unsubscribe,
    parse_command,
)
from postier.imap.receiver import NEED_DATA, NeedLiteral, RawCommand, Receiver
from postier.imap.sequence import SequenceSet


def frame(data: bytes, bytewise: bool = False) -> RawCommand:
    r = Receiver()
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    found: list[RawCommand] = []
    for chunk in chunks:
        r.receive_data(chunk)
        while (event := r.next()) is not NEED_DATA:
            if isinstance(event, RawCommand):
                found.append(event)
            else:
                assert isinstance(event, NeedLiteral), event
    assert len(found) == 1
    return found[0]


def parse(data: bytes, **kw: bool | int) -> Command:
    raw = frame(data)
    assert frame(data, bytewise=True) == raw
    return parse_command(raw, **kw)  # type: ignore[arg-type]


def bad(data: bytes, **kw: bool | int) -> bytes:
    with pytest.raises(ParseError) as info:
        parse(data, **kw)
    return info.value.response()


S = SequenceSet.parse
TZ_MINUS7 = timezone(-timedelta(hours=7))

CASES: list[tuple[bytes, Command]] = [
    # --- any state
    (b"a CAPABILITY", Capability("a")),
    (b"a capability", Capability("a")),
    (b"a NOOP", Noop("a")),
    (b"a LOGOUT", Logout("a")),
    (b"a STARTTLS", StartTLS("a")),
    (b"a ID NIL", Id("a", None)),
    (b"a ID ()", Id("a", ())),
    (
        b'a ID ("name" "Thunderbird" "version" NIL)',
        Id("a", (("name", "Thunderbird"), ("version", None))),
    ),
    (b'a ID ({4}\r\nname "x")', Id("a", (("name", "x"),))),
    # --- not authenticated
    (b"a AUTHENTICATE PLAIN", Authenticate("a", "PLAIN")),
    (b"a AUTHENTICATE plain AGZyZWQAcGFzcw==", Authenticate("a", "PLAIN", b"\x00fred\x00pass")),
    (b"a AUTHENTICATE PLAIN =", Authenticate("a", "PLAIN", b"")),
    (b"a AUTHENTICATE SCRAM-SHA-256", Authenticate("a", "SCRAM-SHA-256")),
    (b"a LOGIN fred secret", Login("a", "fred", "secret")),
    (b'a LOGIN "fred@example.test" "p\\"a\\\\ss"', Login("a", "fred@example.test", 'p"a\\ss')),
    (b"a LOGIN {4}\r\nfred {6}\r\nsecret", Login("a", "fred", "secret")),
    (b"a LOGIN {4+}\r\nfred {6+}\r\nsecret", Login("a", "fred", "secret")),
    (b'a LOGIN "j\xc3\xb6rg" x]y', Login("a", "jörg", "x]y")),
    # --- authenticated
    (b"a ENABLE CONDSTORE utf8=accept", Enable("a", ("CONDSTORE", "UTF8=ACCEPT"))),
    (b"a SELECT INBOX", Select("a", "INBOX")),
    (b"a SELECT inbox", Select("a", "INBOX")),
    (b'a SELECT "iNbOx"', Select("a", "INBOX")),
    (b"a SELECT inbox/Sub", Select("a", "INBOX/Sub")),
    (b"a SELECT Inboxes", Select("a", "Inboxes")),
    (b"a SELECT &AOk-t&AOk-", Select("a", "été")),
    (b"a SELECT {5}\r\nSent ", Select("a", "Sent ")),
    (b"a SELECT Sent (CONDSTORE)", Select("a", "Sent", condstore=True)),
    (b"a EXAMINE Sent", Examine("a", "Sent")),
    (
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        Select("a", "INBOX", qresync=QResync(67890007, 20050715194045000, S("41,43:211,214:541"))),
    ),
    (
        b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:5,7 2:6,9)))",
        Select(
            "a",
            "INBOX",
            qresync=QResync(
                67890007, 90060115194045000, S("41:211,214:541"), S("1:5,7"), S("2:6,9")
            ),
        ),
    ),
    (
        b"a SELECT INBOX (QRESYNC (1 2 (1 5)) CONDSTORE)",
        Select("a", "INBOX", condstore=True, qresync=QResync(1, 2, None, S("1"), S("5"))),
    ),
    (b"a CREATE Projects/2024", Create("a", "Projects/2024")),
    (b"a CREATE Stuff (USE (\\archive \\Sent))", Create("a", "Stuff", ("\\Archive", "\\Sent"))),
    (b"a CREATE x (USE ())", Create("a", "x")),
    (b"a DELETE Trash", Delete("a", "Trash")),
    (b"a RENAME Old New", Rename("a", "Old", "New")),
    (b'a RENAME "a b" {3}\r\nc d', Rename("a", "a b", "c d")),
    (b"a SUBSCRIBE News", Subscribe("a", "News")),
    (b"a UNSUBSCRIBE News", Unsubscribe("a", "News")),
    (b'a LIST "" *', List("a", "", ("*",))),
    (b'a LIST "" ""', List("a", "", ("",))),
    (b"a LIST ~/Mail/ %", List("a", "~/Mail/", ("%",))),
    (b'a LIST "" "&AOk-*"', List("a", "", ("é*",))),
    (b'a LIST "" inbox', List("a", "", ("INBOX",))),
    (b'a LIST "" foo]bar*', List("a", "", ("foo]bar*",))),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" %',
        List("a", "", ("%",), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}), extended=True),
    ),
    (
        b'a LIST () "" ("INBOX" Drafts/%)',
        List("a", "", ("INBOX", "Drafts/%"), extended=True),
    ),
    (
        b'a LIST "" % RETURN (CHILDREN SUBSCRIBED special-use)',
        List(
            "a",
            "",
            ("%",),
            returns=frozenset({"CHILDREN", "SUBSCRIBED", "SPECIAL-USE"}),
            extended=True,
        ),
    ),
    (
        b'a LIST (SPECIAL-USE REMOTE) "" * RETURN (STATUS (MESSAGES UNSEEN))',
        List(
            "a",
            "",
            ("*",),
            frozenset({"SPECIAL-USE", "REMOTE"}),
            frozenset({"STATUS"}),
            ("MESSAGES", "UNSEEN"),
            extended=True,
        ),
    ),
    (b'a LIST "" % RETURN ()', List("a", "", ("%",), extended=True)),
    (b'a LSUB "" *', Lsub("a", "", "*")),
    (b"a LSUB #news. comp.mail.%", Lsub("a", "#news.", "comp.mail.%")),
    (b"a NAMESPACE", Namespace("a")),
    (
        b"a STATUS blurdybloop (UIDNEXT MESSAGES size deleted highestmodseq appendlimit)",
        Status(
            "a",
            "blurdybloop",
            ("UIDNEXT", "MESSAGES", "SIZE", "DELETED", "HIGHESTMODSEQ", "APPENDLIMIT"),
        ),
    ),
    (
        b"a STATUS INBOX (UIDVALIDITY UNSEEN RECENT)",
        Status("a", "INBOX", ("UIDVALIDITY", "UNSEEN", "RECENT")),
    ),
    (b"a APPEND INBOX {5}\r\nhello", Append("a", "INBOX", (AppendMessage(b"hello"),))),
    (  # RFC 4469 §5
        b'a APPEND Drafts (\\Draft) CATENATE (TEXT {2}\r\nhi URL "/INBOX/;UID=1" '
        b"TEXT ~{1+}\r\n\x00 url /a/;UID=2) {1}\r\nx",
        Append(
            "a",
            "Drafts",
            (
                AppendMessage(
                    b"",
                    ("\\Draft",),
                    catenate=(
                        CatPart(text=b"hi"),
                        CatPart(url="/INBOX/;UID=1"),
                        CatPart(text=b"\x00", binary=True),
                        CatPart(url="/a/;UID=2"),
                    ),
                ),
                AppendMessage(b"x"),
            ),
        ),
    ),
    (b"a APPEND INBOX {5+}\r\nhello", Append("a", "INBOX", (AppendMessage(b"hello"),))),
    (b"a APPEND INBOX {0}\r\n", Append("a", "INBOX", (AppendMessage(b""),))),
    (
        b"a APPEND Drafts (\\Seen \\draft $Label) {3}\r\nabc",
        Append("a", "Drafts", (AppendMessage(b"abc", ("\\Seen", "\\Draft", "$Label")),)),
    ),
    (
        b'a APPEND saved-messages (\\Seen) "17-Jul-1996 02:44:25 -0700" {4}\r\nm\r\nx',
        Append(
            "a",
            "saved-messages",
            (
                AppendMessage(
                    b"m\r\nx", ("\\Seen",), datetime(1996, 7, 17, 2, 44, 25, tzinfo=TZ_MINUS7)
                ),
            ),
        ),
    ),
    (
        b'a APPEND x " 7-Jul-1996 02:44:25 +0000" {1}\r\nm',
        Append(
            "a",
            "x",
            (
                AppendMessage(
                    b"m", (), datetime(1996, 7, 7, 2, 44, 25, tzinfo=timezone(timedelta(0)))
                ),
            ),
        ),
    ),
    (b"a APPEND x () {1}\r\nm", Append("a", "x", (AppendMessage(b"m"),))),
    (
        b"a APPEND x ~{3}\r\na\x00b",
        Append("a", "x", (AppendMessage(b"a\x00b", binary=True),)),
    ),
    (
        b"a APPEND x ~{3+}\r\na\x00b",
        Append("a", "x", (AppendMessage(b"a\x00b", binary=True),)),
    ),
    (
        b"a APPEND x UTF8 (~{2}\r\n\xc3\xa9)",
        Append("a", "x", (AppendMessage(b"\xc3\xa9", binary=True, utf8=True),)),
    ),
    (
        b"a APPEND x (\\Seen) {1}\r\nm {2+}\r\nmm (\\Flagged) ~{3}\r\nmmm",
        Append(
            "a",
            "x",
            (
                AppendMessage(b"m", ("\\Seen",)),
                AppendMessage(b"mm"),
                AppendMessage(b"mmm", ("\\Flagged",), binary=True),
            ),
        ),
    ),
    (b"a IDLE", Idle("a")),
    # --- selected
    (b"a CHECK", Check("a")),
    (b"a CLOSE", Close("a")),
    (b"a UNSELECT", Unselect("a")),
    (b"a EXPUNGE", Expunge("a")),
    (b"a UID EXPUNGE 3000:3002", Expunge("a", S("3000:3002"))),
    (b"a uid expunge $", Expunge("a", S("$"))),
    (b"a SEARCH ALL", Search("a", SearchAll())),
    (b"a SEARCH 1:3,*", Search("a", SearchSet(S("1:3,*")))),
    (b"a SEARCH $", Search("a", SearchSet(S("$")))),
    (b"a UID SEARCH UID 1:*", Search("a", SearchSet(S("1:*"), uid=True), uid=True)),
    (
        b'a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(
            "a",
            SearchAnd(
                (
                    SearchFlag("\\Flagged"),
                    SearchDate("internal", "since", date(1994, 2, 1)),
                    SearchNot(SearchHeader("From", "Smith")),
                )
            ),
        ),
    ),
    (
        b'a SEARCH OR (ANSWERED UNSEEN) (SENTBEFORE "01-jan-2020") TO x',
        Search(
            "a",
            SearchAnd(
                (
                    SearchOr(
                        SearchAnd((SearchFlag("\\Answered"), SearchFlag("\\Seen", False))),
                        SearchDate("sent", "before", date(2020, 1, 1)),
                    ),
                    SearchHeader("To", "x"),
                )
            ),
        ),
    ),
    (
        b"a SEARCH CHARSET UTF-8 TEXT {5}\r\nXX\xe2\x82\xac",
        Search("a", SearchText("text", "XX€"), charset="UTF-8"),
    ),
    (
        b"a SEARCH CHARSET ISO-8859-1 BODY {3}\r\ncaf",
        Search("a", SearchText("body", "caf"), charset="ISO-8859-1"),
    ),
    (
        b'a SEARCH CHARSET "iso-8859-1" SUBJECT {4}\r\ncaf\xe9',
        Search("a", SearchHeader("Subject", "café"), charset="ISO-8859-1"),
    ),
    (
        b"a SEARCH HEADER X-Spam-Flag YES CC a BCC b",
        Search(
            "a",
            SearchAnd(
                (
                    SearchHeader("X-Spam-Flag", "YES"),
                    SearchHeader("Cc", "a"),
                    SearchHeader("Bcc", "b"),
                )
            ),
        ),
    ),
    (
        b"a SEARCH LARGER 1024 SMALLER 9223372036854775807",
        Search(
            "a", SearchAnd((SearchSize("larger", 1024), SearchSize("smaller", 9223372036854775807)))
        ),
    ),
    (
        b"a SEARCH KEYWORD $Junk UNKEYWORD $NotJunk DRAFT UNDRAFT DELETED UNDELETED",
        Search(
            "a",
            SearchAnd(
                (
                    SearchFlag("$Junk"),
                    SearchFlag("$NotJunk", False),
                    SearchFlag("\\Draft"),
                    SearchFlag("\\Draft", False),
                    SearchFlag("\\Deleted"),
                    SearchFlag("\\Deleted", False),
                )
            ),
        ),
    ),
    (
        b"a SEARCH SEEN UNANSWERED UNFLAGGED ON 5-Mar-2024 BEFORE 5-Mar-2024 SENTON 1-Jan-2000 "
        b"SENTSINCE 1-Jan-2000",
        Search(
            "a",
            SearchAnd(
                (
                    SearchFlag("\\Seen"),
                    SearchFlag("\\Answered", False),
                    SearchFlag("\\Flagged", False),
                    SearchDate("internal", "on", date(2024, 3, 5)),
                    SearchDate("internal", "before", date(2024, 3, 5)),
                    SearchDate("sent", "on", date(2000, 1, 1)),
                    SearchDate("sent", "since", date(2000, 1, 1)),
                )
            ),
        ),
    ),
    (
        b"a SEARCH NEW OLD RECENT",
        Search(
            "a",
            SearchAnd(
                (
                    SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))),
                    SearchFlag("\\Recent", False),
                    SearchFlag("\\Recent"),
                )
            ),
        ),
    ),
    (b"a SEARCH MODSEQ 620162338", Search("a", SearchModSeq(620162338))),
    (
        b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
        Search("a", SearchModSeq(620162338, "/flags/\\draft", "all")),
    ),
    (
        b"a SEARCH YOUNGER 3600 OLDER 60",
        Search("a", SearchAnd((SearchAge("younger", 3600), SearchAge("older", 60)))),
    ),
    (b"a SEARCH ((ALL))", Search("a", SearchAll())),
    (b"a SEARCH NOT NOT ALL", Search("a", SearchNot(SearchNot(SearchAll())))),
    (b"a SEARCH RETURN () ALL", Search("a", SearchAll(), returns=())),
    (
        b"a UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) CHARSET US-ASCII UNSEEN",
        Search(
            "a",
            SearchFlag("\\Seen", False),
            uid=True,
            charset="US-ASCII",
            returns=("MIN", "MAX", "COUNT", "ALL", "SAVE"),
        ),
    ),
    (b"a SEARCH RETURN (SAVE) 1:5", Search("a", SearchSet(S("1:5")), returns=("SAVE",))),
    # RFC 5267 §4: CONTEXT, UPDATE, PARTIAL (the range as written)
    (
        b"a SEARCH RETURN (CONTEXT UPDATE PARTIAL 500:1 COUNT) ALL",
        Search(
            "a", SearchAll(), returns=("CONTEXT", "UPDATE", "PARTIAL", "COUNT"), partial=(500, 1)
        ),
    ),
    # RFC 5267 §3 (ESORT): SORT RETURN (...)
    (
        b"a UID SORT RETURN (MIN PARTIAL 1:10) (DATE) UTF-8 ALL",
        Sort(
            "a",
            (SortCriterion("DATE"),),
            "UTF-8",
            SearchAll(),
            uid=True,
            returns=("MIN", "PARTIAL"),
            partial=(1, 10),
        ),
    ),
    (
        b"a SORT RETURN () (SIZE) UTF-8 ALL",
        Sort("a", (SortCriterion("SIZE"),), "UTF-8", SearchAll(), returns=()),
    ),
    (b'a CANCELUPDATE "B01" "x]y"', CancelUpdate("a", ("B01", "x]y"))),  # RFC 5267 §4.3.5
    (
        b"a SORT (REVERSE ARRIVAL subject) UTF-8 ALL",
        Sort("a", (SortCriterion("ARRIVAL", True), SortCriterion("SUBJECT")), "UTF-8", SearchAll()),
    ),
    (
        b"a UID SORT (DATE) US-ASCII UNSEEN FROM x",
        Sort(
            "a",
            (SortCriterion("DATE"),),
            "US-ASCII",
            SearchAnd((SearchFlag("\\Seen", False), SearchHeader("From", "x"))),
            uid=True,
        ),
    ),
    (b"a THREAD REFERENCES UTF-8 ALL", Thread("a", "REFERENCES", "UTF-8", SearchAll())),
    (
        b"a UID THREAD orderedsubject US-ASCII SINCE 5-MAR-2000",
        Thread(
            "a",
            "ORDEREDSUBJECT",
            "US-ASCII",
            SearchDate("internal", "since", date(2000, 3, 5)),
            uid=True,
        ),
    ),
    (b"a FETCH 1 FLAGS", Fetch("a", S("1"), (FetchAtt("FLAGS"),))),
    (
        b"a FETCH 1:* ALL",
        Fetch(
            "a",
            S("1:*"),
            tuple(FetchAtt(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")),
        ),
    ),
    (
        b"a FETCH 2 fast",
        Fetch("a", S("2"), tuple(FetchAtt(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE"))),
    ),
    (
        b"a FETCH 2 FULL",
        Fetch(
            "a",
            S("2"),
            tuple(
                FetchAtt(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")
            ),
        ),
    ),
    (
        b"a FETCH 1 (UID RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE BODY BODYSTRUCTURE "
        b"ENVELOPE INTERNALDATE MODSEQ)",
        Fetch(
            "a",
            S("1"),
            tuple(
                FetchAtt(n)
                for n in (
                    "UID",
                    "RFC822",
                    "RFC822.HEADER",
                    "RFC822.TEXT",
                    "RFC822.SIZE",
                    "BODY",
                    "BODYSTRUCTURE",
                    "ENVELOPE",
                    "INTERNALDATE",
                    "MODSEQ",
                )
            ),
        ),
    ),
    (b"a FETCH 1 BODY[]", Fetch("a", S("1"), (FetchAtt("BODY", Section()),))),
    (
        b"a FETCH 1 body.peek[]<0.2048>",
        Fetch("a", S("1"), (FetchAtt("BODY", Section(), (0, 2048), peek=True),)),
    ),
    (
        b"a FETCH 1 (BODY[HEADER] BODY[TEXT] BODY[1] BODY[1.2.3] BODY[2.MIME] BODY[1.TEXT] "
        b"BODY[3.HEADER])",
        Fetch(
            "a",
            S("1"),
            (
                FetchAtt("BODY", Section(text="HEADER")),
                FetchAtt("BODY", Section(text="TEXT")),
                FetchAtt("BODY", Section((1,))),
                FetchAtt("BODY", Section((1, 2, 3))),
                FetchAtt("BODY", Section((2,), "MIME")),
                FetchAtt("BODY", Section((1,), "TEXT")),
                FetchAtt("BODY", Section((3,), "HEADER")),
            ),
        ),
    ),
    (
        b'a FETCH 1 BODY.PEEK[HEADER.FIELDS (From "Subject" {2}\r\nTo)]',
        Fetch(
            "a",
            S("1"),
            (
                FetchAtt(
                    "BODY",
                    Section(text="HEADER.FIELDS", fields=("From", "Subject", "To")),
                    peek=True,
                ),
            ),
        ),
    ),
    (
        b"a FETCH 1 BODY[1.HEADER.FIELDS.NOT (Received DKIM-Signature)]<10.20>",
        Fetch(
            "a",
            S("1"),
            (
                FetchAtt(
                    "BODY",
                    Section((1,), "HEADER.FIELDS.NOT", ("Received", "DKIM-Signature")),
                    (10, 20),
                ),
            ),
        ),
    ),
    (
        b"a FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[3])",
        Fetch(
            "a",
            S("1"),
            (
                FetchAtt("BINARY", Section()),
                FetchAtt("BINARY", Section((1, 2)), (0, 100), True),
                FetchAtt("BINARY.SIZE", Section((3,))),
            ),
        ),
    ),
    (
        b"a UID FETCH 1:* FLAGS",
        Fetch("a", S("1:*"), (FetchAtt("FLAGS"), FetchAtt("UID")), uid=True),
    ),
    (
        b"a UID FETCH 1:* (UID FLAGS)",
        Fetch("a", S("1:*"), (FetchAtt("UID"), FetchAtt("FLAGS")), uid=True),
    ),
    (
        b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        Fetch("a", S("1:*"), (FetchAtt("FLAGS"), FetchAtt("MODSEQ")), changed_since=12345),
    ),
    (
        b"a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        Fetch(
            "a",
            S("300:500"),
            (FetchAtt("FLAGS"), FetchAtt("UID"), FetchAtt("MODSEQ")),
            uid=True,
            changed_since=12345,
            vanished=True,
        ),
    ),
    (b"a FETCH $ FLAGS", Fetch("a", S("$"), (FetchAtt("FLAGS"),))),
    (
        b"a STORE 2:4 +FLAGS (\\Deleted)",
        Store("a", S("2:4"), "add", ("\\Deleted",)),
    ),
    (
        b"a STORE 1 -FLAGS.SILENT \\seen $Junk",
        Store("a", S("1"), "remove", ("\\Seen", "$Junk"), silent=True),
    ),
    (b"a STORE 1 FLAGS ()", Store("a", S("1"), "replace", ())),
    (
        b"a UID STORE 1:* (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        Store("a", S("1:*"), "add", ("\\Deleted",), True, True, 320162338),
    ),
    (b"a COPY 2:4 MEETING", Copy("a", S("2:4"), "MEETING")),
    (b"a UID COPY 1,3 {5}\r\nTrash", Copy("a", S("1,3"), "Trash", uid=True)),
    (b"a MOVE 1 Junk", Move("a", S("1"), "Junk")),
    (b"a UID MOVE 42 INBOX", Move("a", S("42"), "INBOX", uid=True)),
    # --- quota (RFC 9208)
    (b'a GETQUOTA ""', GetQuota("a", "")),
    (b"a GETQUOTAROOT INBOX", GetQuotaRoot("a", "INBOX")),
    (
        b'a SETQUOTA "" (STORAGE 512 MESSAGE 1000)',
        SetQuota("a", "", (("STORAGE", 512), ("MESSAGE", 1000))),
    ),
    (b'a SETQUOTA "" ()', SetQuota("a", "")),
    # --- tags
    (b"A001]x NOOP", Noop("A001]x")),
    (b"a]b NOOP", Noop("a]b")),
]


@pytest.mark.parametrize(
    ("line", "expected"), CASES, ids=[c[0][:60].decode("latin-1") for c in CASES]
)
def test_parse(line: bytes, expected: Command) -> None:
    assert parse(line + b"\r\n") == expected


def test_utf8_mailbox_names_when_enabled() -> None:
    assert parse(b'a SELECT "\xc3\xa9t\xc3\xa9"\r\n', utf8=True) == Select("a", "été")
    # no modified UTF-7 decoding once UTF-8 is on (RFC 6855 §3)
    assert parse(b"a SELECT &AOk-\r\n", utf8=True) == Select("a", "&AOk-")
    assert (
        bad(b'a SELECT "\xc3\xa9"\r\n')
        == b"a NO [CANNOT] Mailbox name is not valid modified UTF-7\r\n"
    )
    assert bad(b'a SELECT "\xff"\r\n', utf8=True) == b"a BAD Mailbox name is not valid UTF-8\r\n"
    assert bad(b"a SELECT {3}\r\na\x01b\r\n", utf8=True) == (
        b"a NO [CANNOT] Mailbox name contains control characters\r\n"
    )


def test_fetch_att_helpers() -> None:
    cmd = parse(
        b"a FETCH 1 (BODY.PEEK[1.HEADER.FIELDS (From {3}\r\nX-Y)]<5.10> BODY[] BINARY.PEEK[2]"
        b" RFC822 RFC822.HEADER BINARY[1]<0.9> BINARY.SIZE[1])\r\n"
    )
    assert isinstance(cmd, Fetch)
    names = [i.response_name() for i in cmd.items]
    assert names == [
        "BODY[1.HEADER.FIELDS (From X-Y)]<5>",
        "BODY[]",
        "BINARY[2]",
        "RFC822",
        "RFC822.HEADER",
        "BINARY[1]<0>",
        "BINARY.SIZE[1]",
    ]
    assert [i.sets_seen for i in cmd.items] == [False, True, False, True, False, True, False]


ERRORS: list[tuple[bytes, bytes]] = [
    (b"", b"* BAD Empty command"),
    (b"+a NOOP", b"* BAD Missing or invalid tag"),
    (b"a", b"a BAD Missing command"),
    (b"a ", b"a BAD Missing command"),
    (b"a FROB", b"a BAD Unknown command"),
    (b"a UID NOOP", b"a BAD Unknown UID command"),
    (b"a NOOP x", b"a BAD Unexpected extra arguments"),
    (b"a NOOP ", b"a BAD Unexpected extra arguments"),
    (b"a LOGIN fred", b"a BAD Missing argument"),
    (b"a LOGIN  fred x", b"a BAD Expected user name"),
    (b'a LOGIN "fred x', b"a BAD Unterminated quoted string"),
    (b'a LOGIN "fr\\ed" x', b"a BAD Invalid escape in quoted string"),
    (b'a LOGIN "fr\x00ed" x', b"a BAD NUL in quoted string"),
    (b"a LOGIN {3}\r\nf\x00d x", b"a BAD NUL in literal (use literal8)"),
    (b"a LOGIN ~{3}\r\nfed x", b"a BAD literal8 is only allowed for APPEND data"),
    (b'a LOGIN "\xff" x', b"a BAD User name is not valid UTF-8"),
    (b"a AUTHENTICATE PLAIN A===", b"a BAD Invalid base64 in initial response"),
    (b"a AUTHENTICATE PLAIN AB", b"a BAD Invalid base64 in initial response"),
    (b"a AUTHENTICATE PLAIN *", b"a BAD Invalid base64 in initial response"),
    (b"a ENABLE", b"a BAD Missing argument"),
    (b"a SELECT", b"a BAD Missing argument"),
    (b"a SELECT (x)", b"a BAD Expected mailbox name"),
    (b"a SELECT &Jjo", b"a NO [CANNOT] Mailbox name is not valid modified UTF-7"),
    (b"a SELECT &AGE-", b"a NO [CANNOT] Mailbox name is not valid modified UTF-7"),
    (b"a SELECT {3}\r\na\x01b", b"a NO [CANNOT] Mailbox name is not valid modified UTF-7"),
    (b"a SELECT INBOX (FOO)", b"a BAD Unknown or repeated select parameter FOO"),
    (
        b"a SELECT INBOX (CONDSTORE CONDSTORE)",
        b"a BAD Unknown or repeated select parameter CONDSTORE",
    ),
    (b"a SELECT INBOX (QRESYNC (0 1))", b"a BAD UIDVALIDITY must not be zero"),
    (b"a SELECT INBOX (QRESYNC (1 0))", b"a BAD Mod-sequence must not be zero"),
    (b"a SELECT INBOX (QRESYNC (1 2 1:*))", b"a BAD Invalid known-uids"),
    (b"a SELECT INBOX (QRESYNC (1 2 3 (1)))", b"a BAD Expected space"),
    (b"a CREATE x (FOO (y))", b"a BAD Unknown create parameter FOO"),
    (b"a CREATE x (USE (Sent))", b"a BAD Expected \\"),
    (b"a RENAME x", b"a BAD Missing argument"),
    (b'a LIST (FOO) "" *', b"a BAD Unknown LIST selection option FOO"),
    (b'a LIST (RECURSIVEMATCH) "" *', b"a BAD RECURSIVEMATCH requires another selection option"),
    (b'a LIST "" * RETURN (FOO)', b"a BAD Unknown LIST return option FOO"),
    (b'a LIST "" * FOO (x)', b"a BAD Expected RETURN"),
    (b'a LIST "" * RETURN (STATUS (FOO))', b"a BAD Unknown status item FOO"),
    (b'a LIST ""', b"a BAD Missing argument"),
    (b"a STATUS INBOX ()", b"a BAD Missing status item"),
    (b"a STATUS INBOX (MESSAGES FOO)", b"a BAD Unknown status item FOO"),
    (b"a STATUS INBOX MESSAGES", b"a BAD Expected ("),
    (b"a APPEND INBOX", b"a BAD Missing argument"),
    (b'a APPEND INBOX "hello"', b"a BAD Invalid date-time"),
    (b"a APPEND INBOX hello", b"a BAD Expected message literal"),
    (b"a APPEND INBOX (\\Seen)", b"a BAD Missing argument"),
    (b'a APPEND INBOX "31-Feb-2024 00:00:00 +0000" {1}\r\nx', b"a BAD Invalid date-time"),
    (b'a APPEND INBOX "1-Foo-2024 00:00:00 +0000" {1}\r\nx', b"a BAD Invalid date-time"),
    (b"a APPEND INBOX UTF8 ({1}\r\nx)", b"a BAD UTF8 data must be a literal8"),
    (b"a APPEND INBOX {1}\r\nx junk", b"a BAD Expected message literal"),
    (b"a APPEND INBOX CATENATE", b"a BAD Missing argument"),
    (b"a APPEND INBOX CATENATE ()", b"a BAD Expected CATENATE part"),
    (b"a APPEND INBOX CATENATE (TEXT x)", b"a BAD Expected TEXT literal"),
    (b"a APPEND INBOX CATENATE (URL)", b"a BAD Expected space"),
    (b"a APPEND INBOX CATENATE (TEXT {1}\r\n\x00)", b"a BAD NUL in literal (use literal8)"),
    (b"a APPEND INBOX CAT (URL x)", b"a BAD Expected message literal"),
    (b"a SEARCH", b"a BAD Missing argument"),
    (b"a SEARCH FOO", b"a BAD Unknown search key FOO"),
    (b"a SEARCH FROM", b"a BAD Missing argument"),
    (b"a SEARCH (ALL", b"a BAD Missing argument"),
    (b"a SEARCH ALL)", b"a BAD Expected space"),
    (b"a SEARCH ()", b"a BAD Expected search key"),
    (b"a SEARCH OR ALL", b"a BAD Missing argument"),
    (b"a SEARCH SINCE 1-Foo-2020", b"a BAD Invalid date"),
    (b"a SEARCH SINCE 30-Feb-2020", b"a BAD Invalid date"),
    (b'a SEARCH SINCE "1-Jan-2020', b"a BAD Invalid date"),
    (b"a SEARCH LARGER x", b"a BAD Expected size"),
    (b"a SEARCH LARGER 99999999999999999999", b"a BAD Size out of range"),
    (b"a SEARCH 0:3", b"a BAD Invalid sequence set"),
    (b"a SEARCH UID 1,$", b"a BAD Invalid sequence set"),
    (b"a SEARCH HEADER {3}\r\na:b x", b"a BAD Invalid header name"),
    (b'a SEARCH MODSEQ "/foo" all 1', b"a BAD Invalid MODSEQ entry name"),
    (b'a SEARCH MODSEQ "/flags/x" none 1', b"a BAD Invalid MODSEQ entry type"),
    (b"a SEARCH OLDER 0", b"a BAD Number must not be zero"),
    (b"a SEARCH RETURN (FOO) ALL", b"a BAD Unknown search return option FOO"),
    (b"a SEARCH RETURN (PARTIAL 1:5 ALL) ALL", b"a BAD PARTIAL conflicts with ALL"),
    (b"a SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL", b"a BAD PARTIAL can be used only once"),
    (b"a SEARCH RETURN (PARTIAL 0:5) ALL", b"a BAD Partial range must not be zero"),
    (b"a SEARCH RETURN (PARTIAL 1:*) ALL", b"a BAD Expected partial range"),
    (b"a SEARCH RETURN (PARTIAL) ALL", b"a BAD Expected space"),
    (b"a SORT RETURN (SAVE (DATE) UTF-8 ALL", b"a BAD Expected search return option"),
    (b"a CANCELUPDATE", b"a BAD Missing argument"),
    (b"a CANCELUPDATE B01", b"a BAD Expected a quoted tag"),
    (b"a SEARCH CHARSET KLINGON ALL", b"a NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"),
    (b"a SEARCH CHARSET US-ASCII FROM {1}\r\n\xff", b"a BAD Search string is not valid US-ASCII"),
    (b"a SEARCH FROM {1}\r\n\xff", b"a BAD Search string is not valid UTF-8"),
    (b"a SORT (FOO) UTF-8 ALL", b"a BAD Unknown sort key FOO"),
    (b"a SORT (DATE) ALL", b"a NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"),
    (b"a SORT (DATE) UTF-8", b"a BAD Missing argument"),
    (b"a FETCH", b"a BAD Missing argument"),
    (b"a FETCH 1", b"a BAD Missing argument"),
    (b"a FETCH x FLAGS", b"a BAD Expected sequence set"),
    (b"a FETCH 1 FOO", b"a BAD Unknown fetch item FOO"),
    (b"a FETCH 1 (FLAGS", b"a BAD Missing argument"),
    (b"a FETCH 1 ()", b"a BAD Expected fetch item"),
    (b"a FETCH 1 BODY.PEEK", b"a BAD BODY.PEEK requires a section"),
    (b"a FETCH 1 BODY[FOO]", b"a BAD Invalid section"),
    (b"a FETCH 1 BODY[MIME]", b"a BAD MIME requires a part number"),
    (b"a FETCH 1 BODY[0]", b"a BAD Section part must not be zero"),
    (b"a FETCH 1 BODY[1.]", b"a BAD Invalid section"),
    (b"a FETCH 1 BODY[HEADER.FIELDS]", b"a BAD Expected space"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]", b"a BAD Expected header name"),
    (b"a FETCH 1 BODY[]<0>", b"a BAD Expected ."),
    (b"a FETCH 1 BODY[]<0.0>", b"a BAD Partial length must not be zero"),
    (b"a FETCH 1 BINARY[TEXT]", b"a BAD Expected ]"),
    (b"a FETCH 1 FLAGS[]", b"a BAD Unknown fetch item FLAGS"),
    (b"a FETCH 1 FLAGS (FOO)", b"a BAD Unknown or repeated fetch modifier FOO"),
    (
        b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)",
        b"a BAD VANISHED requires UID FETCH and CHANGEDSINCE",
    ),
    (b"a UID FETCH 1 FLAGS (VANISHED)", b"a BAD VANISHED requires UID FETCH and CHANGEDSINCE"),
    (b"a STORE 1 FLAGS", b"a BAD Missing argument"),
    (b"a STORE 1 +FLAGZ (\\Seen)", b"a BAD Expected FLAGS, FLAGS.SILENT"),
    (b"a STORE 1 (FOO 1) FLAGS ()", b"a BAD Unknown store modifier FOO"),
    (b"a STORE 1 FLAGS (\\Seen", b"a BAD Missing argument"),
    (b"a STORE 1 FLAGS (\\)", b"a BAD Expected flag"),
    (b"a COPY 1", b"a BAD Missing argument"),
    (b"a MOVE 1:2 x y", b"a BAD Unexpected extra arguments"),
    (b"a UID EXPUNGE", b"a BAD Missing argument"),
    (b"a ID", b"a BAD Missing argument"),
    (b"a ID (name x)", b"a BAD Expected field name"),
    (b'a ID ("name")', b"a BAD Expected space"),
    (b"a ID FOO", b"a BAD Expected ID parameter list"),
    (b'a SETQUOTA "" (STORAGE)', b"a BAD Expected space"),
    (b'a SETQUOTA "" (STORAGE x)', b"a BAD Expected resource limit"),
]


@pytest.mark.parametrize(
    ("line", "response"), ERRORS, ids=[e[0][:60].decode("latin-1") for e in ERRORS]
)
def test_malformed(line: bytes, response: bytes) -> None:
    assert bad(line + b"\r\n") == response + b"\r\n"


def test_too_many_id_fields() -> None:
    fields = b" ".join(b'"k%d" "v"' % i for i in range(31))
    assert bad(b"a ID (" + fields + b")\r\n") == b"a BAD Too many ID fields\r\n"
    ok = b" ".join(b'"k%d" "v"' % i for i in range(30))
    assert isinstance(parse(b"a ID (" + ok + b")\r\n"), Id)


def test_nesting_depth_limit() -> None:
    ok = b"a SEARCH " + b"(" * 15 + b"ALL" + b")" * 15 + b"\r\n"
    assert parse(ok) == Search("a", SearchAll())
    deep = b"a SEARCH " + b"(" * 16 + b"ALL" + b")" * 16 + b"\r\n"
    assert bad(deep) == b"a BAD Search key nested too deeply\r\n"
    assert (
        bad(b"a SEARCH " + b"NOT " * 16 + b"ALL\r\n") == b"a BAD Search key nested too deeply\r\n"
    )
    assert (
        bad(b"a SEARCH " + b"OR ALL " * 16 + b"ALL\r\n")
        == b"a BAD Search key nested too deeply\r\n"
    )
    assert isinstance(parse(b"a SEARCH " + b"NOT " * 3 + b"ALL\r\n", max_depth=4), Search)
    assert bad(b"a SEARCH " + b"NOT " * 4 + b"ALL\r\n", max_depth=4) == (
        b"a BAD Search key nested too deeply\r\n"
    )


def test_very_deep_nesting_does_not_recurse_unbounded() -> None:
    line = b"a SEARCH " + b"(" * 50_000 + b"ALL" + b")" * 50_000
    raw = RawCommand("a", (line,))
    with pytest.raises(ParseError) as info:
        parse_command(raw)
    assert info.value.response() == b"a BAD Search key nested too deeply\r\n"


def test_numbers_are_bounded() -> None:
    assert bad(b"a FETCH 4294967296 FLAGS\r\n") == b"a BAD Invalid sequence set\r\n"
    assert bad(b"a STORE 1 (UNCHANGEDSINCE 9223372036854775808) FLAGS ()\r\n") == (
        b"a BAD Mod-sequence out of range\r\n"
    )
    assert bad(b"a SEARCH OLDER 4294967296\r\n") == b"a BAD Number out of range\r\n"
