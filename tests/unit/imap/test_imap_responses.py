"""The IMAP response serialiser: exact bytes for every builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from postier.imap import responses as r
from postier.imap.errors import LocalProtocolError, ParseError


def test_status_responses() -> None:
    assert r.tagged("a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert r.tagged("a1", "NO", "Mailbox exists", r.ALREADYEXISTS) == (
        b"a1 NO [ALREADYEXISTS] Mailbox exists\r\n"
    )
    assert r.tagged("a1", "OK", "", r.READ_WRITE) == b"a1 OK [READ-WRITE] completed\r\n"
    assert r.untagged_status("OK", "Still here", r.code_uidvalidity(3857529045)) == (
        b"* OK [UIDVALIDITY 3857529045] Still here\r\n"
    )
    assert r.bye("Autologout; idle for too long") == b"* BYE Autologout; idle for too long\r\n"
    assert r.untagged_status("PREAUTH", "hi") == b"* PREAUTH hi\r\n"
    # resp-text never carries a line break (no response injection)
    assert r.tagged("a1", "NO", "bad\r\n* 1 EXISTS") == b"a1 NO bad  * 1 EXISTS\r\n"


@pytest.mark.parametrize("tag", ["", "a b", "a+1", "a*", "é"])
def test_invalid_tag_is_our_bug(tag: str) -> None:
    with pytest.raises(LocalProtocolError):
        r.tagged(tag, "OK", "x")


def test_unknown_status_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        r.tagged("a", "MAYBE", "x")


def test_continuations() -> None:
    assert r.continuation("Ready") == b"+ Ready\r\n"
    assert r.continuation() == b"+ \r\n"
    assert r.challenge(b"\x00hi") == b"+ AGhp\r\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("INBOX", b"INBOX"),
        ("a]b", b"a]b"),
        ("", b'""'),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("a b", b'"a b"'),
        ('a"b\\c', b'"a\\"b\\\\c"'),
        ("a%", b'"a%"'),
        ("a*", b'"a*"'),
        ("(x)", b'"(x)"'),
        ("{3}", b'"{3}"'),
        ("été", b"{5}\r\n\xc3\xa9t\xc3\xa9"),
        ("a\r\nb", b"{4}\r\na\r\nb"),
        ("a\x00b", b"{3}\r\na\x80b"),  # no NUL in a literal: 0x80 (as Dovecot)
    ],
)
def test_astring(value: str, expected: bytes) -> None:
    assert r.astring(value) == expected


def test_strings_with_utf8_enabled() -> None:
    assert r.astring("été", utf8=True) == b'"\xc3\xa9t\xc3\xa9"'
    assert r.string(b"\xff", utf8=True) == b"{1}\r\n\xff"  # not UTF-8: literal
    assert r.string("a\nb", utf8=True) == b"{3}\r\na\nb"
    assert r.nstring(None) == b"NIL"
    assert r.nstring("x") == b'"x"'
    assert r.literal(b"ab") == b"{2}\r\nab"
    assert r.literal(b"a\x00", binary=True) == b"~{2}\r\na\x00"
    with pytest.raises(LocalProtocolError):
        r.quoted("a\r\nb")
    with pytest.raises(LocalProtocolError):
        r.quoted("é")


def test_mailbox_names() -> None:
    assert r.mailbox("INBOX") == b"INBOX"
    assert r.mailbox("inbox") == b"INBOX"
    assert r.mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert r.mailbox("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'
    assert r.mailbox("a&b") == b"a&-b"
    assert r.mailbox("Sent Items") == b'"Sent Items"'


def test_flags() -> None:
    flags = frozenset({"$Junk", "\\Seen", "\\Answered", "$aaa", "\\Deleted"})
    assert r.flag_list(flags) == b"(\\Answered \\Deleted \\Seen $aaa $Junk)"
    assert r.flag_list([]) == b"()"
    assert r.flags(["\\Seen", "\\Draft"]) == b"* FLAGS (\\Seen \\Draft)\r\n"
    assert r.code_permanentflags(["\\Seen", "\\Deleted"]) == "PERMANENTFLAGS (\\Deleted \\Seen \\*)"
    assert r.code_permanentflags([], new_keywords=False) == "PERMANENTFLAGS ()"
    assert r.code_permanentflags([]) == "PERMANENTFLAGS (\\*)"


def test_untagged_data() -> None:
    assert r.exists(23) == b"* 23 EXISTS\r\n"
    assert r.recent(0) == b"* 0 RECENT\r\n"
    assert r.expunge(3) == b"* 3 EXPUNGE\r\n"
    assert (
        r.capability(["IMAP4rev2", "IMAP4rev1", "IDLE"])
        == b"* CAPABILITY IMAP4rev2 IMAP4rev1 IDLE\r\n"
    )
    assert r.enabled(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert r.enabled([]) == b"* ENABLED\r\n"
    assert r.untagged(5, "FETCH", b"(UID 9)") == b"* 5 FETCH (UID 9)\r\n"


def test_list_responses() -> None:
    assert (
        r.list_response("INBOX", ["\\HasNoChildren"]) == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    )
    assert r.list_response("", ["\\Noselect"]) == b'* LIST (\\Noselect) "/" ""\r\n'
    assert r.list_response("Été", [], delimiter=None) == b"* LIST () NIL &AMk-t&AOk-\r\n"
    assert r.list_response("Été", [], utf8=True) == b'* LIST () "/" "\xc3\x89t\xc3\xa9"\r\n'
    assert r.list_response("Foo", ["\\NonExistent"], childinfo=["SUBSCRIBED"]) == (
        b'* LIST (\\NonExistent) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert r.list_response("Ärger", [], oldname="Arger", utf8=True) == (
        b'* LIST () "/" "\xc3\x84rger" ("OLDNAME" (Arger))\r\n'
    )
    assert r.list_response("Sent", ["\\Sent"], kind="LSUB") == b'* LSUB (\\Sent) "/" Sent\r\n'


def test_status() -> None:
    assert r.status("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    )
    assert r.status("a b", []) == b'* STATUS "a b" ()\r\n'


def test_search_responses() -> None:
    assert r.search([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert r.search([]) == b"* SEARCH\r\n"
    assert r.search([1], modseq=917162500) == b"* SEARCH 1 (MODSEQ 917162500)\r\n"
    assert r.sort([5, 3]) == b"* SORT 5 3\r\n"
    assert r.esearch("A282", min=2, max=47, count=3, all=[2, 3, 4, 7, 47]) == (
        b'* ESEARCH (TAG "A282") MIN 2 MAX 47 ALL 2:4,7,47 COUNT 3\r\n'
    )
    assert r.esearch("a", uid=True, count=0, all=[]) == b'* ESEARCH (TAG "a") UID COUNT 0\r\n'
    assert r.esearch(None, all=[1], modseq=5) == b"* ESEARCH ALL 1 MODSEQ 5\r\n"
    assert r.vanished([41, 43, 44, 45]) == b"* VANISHED 41,43:45\r\n"
    assert r.vanished([3], earlier=True) == b"* VANISHED (EARLIER) 3\r\n"
    assert r.vanished([]) == b""


def test_fetch() -> None:
    when = datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7)))
    out = r.fetch(
        12,
        [
            ("FLAGS", frozenset({"\\Seen"})),
            ("INTERNALDATE", when),
            ("RFC822.SIZE", 4286),
            ("UID", 42),
            ("ENVELOPE", r.Raw(b'("date" "subj" NIL NIL NIL NIL NIL NIL NIL NIL)')),
            ("BODY[HEADER]<0>", b"Subject: x\r\n\r\n"),
            ("BODY[2]", None),
            ("BINARY[1]", r.Binary(b"a\x00")),
            ("BINARY[2]", r.Binary(b"ab")),
            ("MODSEQ", r.Raw(b"(624140003)")),
        ],
    )
    assert out == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b'RFC822.SIZE 4286 UID 42 ENVELOPE ("date" "subj" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b"BODY[HEADER]<0> {14}\r\nSubject: x\r\n\r\n BODY[2] NIL BINARY[1] ~{2}\r\na\x00 "
        b"BINARY[2] {2}\r\nab MODSEQ (624140003))\r\n"
    )
    # in pieces, each literal's octets stand alone (the same object: never copied)
    body = b"x" * 5000 + b"\x00"
    pieces = r.fetch_parts(
        3, [("UID", 7), ("BODY[]", body), ("BINARY[1]", r.Binary(b"ab")), ("FLAGS", frozenset())]
    )
    assert pieces[0] == b"* 3 FETCH (UID 7 BODY[] {5001}\r\n"
    assert pieces[1] == b"x" * 5000 + b"\x80"  # NUL as 0x80 in a plain literal, size kept
    assert pieces[2:] == [b" BINARY[1] {2}\r\n", b"ab", b" FLAGS ())\r\n"]
    plain = b"y" * 100
    assert r.fetch_parts(1, [("RFC822", plain)])[1] is plain
    with pytest.raises(LocalProtocolError):
        r.fetch(1, [("X", True)])


def test_date_time() -> None:
    assert r.date_time(datetime(2024, 1, 5, 9, 8, 7, tzinfo=UTC)) == (
        b'" 5-Jan-2024 09:08:07 +0000"'
    )
    assert r.date_time(datetime(2024, 12, 25, 23, 0, 0)) == b'"25-Dec-2024 23:00:00 +0000"'
    ist = timezone(timedelta(hours=5, minutes=30))
    assert r.date_time(datetime(2024, 3, 1, 0, 0, 0, tzinfo=ist)) == b'" 1-Mar-2024 00:00:00 +0530"'


def test_response_codes() -> None:
    assert r.code_appenduid(38505, [3955]) == "APPENDUID 38505 3955"
    assert r.code_appenduid(38505, [3955, 3956, 3957, 3960]) == "APPENDUID 38505 3955:3957,3960"
    assert r.code_copyuid(38505, [304, 319, 320, 321], [3956, 3957, 3958, 3959]) == (
        "COPYUID 38505 304,319:321 3956:3959"
    )
    with pytest.raises(LocalProtocolError):
        r.code_copyuid(1, [1], [])
    assert r.code_uidnext(4392) == "UIDNEXT 4392"
    assert r.code_unseen(12) == "UNSEEN 12"
    assert r.code_highestmodseq(715194045007) == "HIGHESTMODSEQ 715194045007"
    assert r.code_modified([7, 9, 10]) == "MODIFIED 7,9:10"
    assert r.code_capability(["IMAP4rev2", "AUTH=PLAIN"]) == "CAPABILITY IMAP4rev2 AUTH=PLAIN"
    assert r.code_badcharset() == "BADCHARSET (UTF-8 US-ASCII)"
    assert r.code_appendlimit(1000) == "APPENDLIMIT 1000"
    assert r.tagged("A003", "OK", "APPEND completed", r.code_appenduid(38505, [3955])) == (
        b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"
    )
    assert (
        r.tagged("a", "NO", "No such mailbox", r.TRYCREATE)
        == b"a NO [TRYCREATE] No such mailbox\r\n"
    )


def test_other_untagged() -> None:
    assert r.namespace() == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert (
        r.namespace([("", "/")], [("~", "/")], None)
        == b'* NAMESPACE (("" "/")) (("~" "/")) NIL\r\n'
    )
    assert (
        r.id_response([("name", "postier"), ("os", None)])
        == b'* ID ("name" "postier" "os" NIL)\r\n'
    )
    assert r.id_response(None) == b"* ID NIL\r\n"
    assert r.quota("", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert r.quotaroot("INBOX", [""]) == b'* QUOTAROOT INBOX ""\r\n'
    assert r.quotaroot("x", []) == b"* QUOTAROOT x\r\n"


def test_parse_error_response() -> None:
    assert ParseError("Unknown command", tag="a1").response() == b"a1 BAD Unknown command\r\n"
    assert ParseError("x").response() == b"* BAD x\r\n"
    assert ParseError("gone", tag="a1", fatal=True, code="TOOBIG").response() == (
        b"* BYE [TOOBIG] gone\r\n"
    )
    assert repr(ParseError("x", tag="a")) == (
        "ParseError('x', tag='a', code=None, status='BAD', fatal=False)"
    )
