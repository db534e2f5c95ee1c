"""`postier.mail.imapurl`: IMAP URLs (RFC 5092) absolute and relative, URLAUTH parts
(RFC 4467), and refusals."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

import pytest

from postier.mail.imapurl import ImapUrl, UrlError, parse, quote_mailbox, quote_user


def test_absolute_message_part_url() -> None:
    u = parse("imap://fred;AUTH=*@Mail.Example.COM:143/INBOX;UIDVALIDITY=785799047/;UID=113330"
              "/;SECTION=1.5.9/;PARTIAL=10.20")  # fmt: skip
    assert u == ImapUrl(
        host="mail.example.com", port=143, user="fred", auth="*", mailbox="INBOX",
        uidvalidity=785799047, uid=113330, section="1.5.9", partial=(10, 20),
    )  # fmt: skip
    assert u.is_message
    assert str(u) == (
        "imap://fred;AUTH=*@mail.example.com:143/INBOX;UIDVALIDITY=785799047/;UID=113330"
        "/;SECTION=1.5.9/;PARTIAL=10.20"
    )


def test_mailbox_is_percent_encoded_utf8_and_hierarchical() -> None:
    u = parse("imap://h/Archiv/R%C3%A9sum%C3%A9%20Dossier/;uid=7/;section=HEADER.FIELDS%20(To)")
    assert u.mailbox == "Archiv/Résumé Dossier"
    assert u.uid == 7 and u.section == "HEADER.FIELDS (To)"
    assert quote_mailbox("a;b?c/d é") == "a%3Bb%3Fc/d%20%C3%A9"
    assert quote_user("fred@example.com") == "fred%40example.com"
    assert parse("imap://fred%40example.com@h/").user == "fred@example.com"
    with pytest.raises(UrlError, match="Mailbox name is not UTF-8"):
        parse("imap://h/%E9t%E9/;UID=1")  # Latin-1, not UTF-8 (RFC 5092 §3.2)


def test_server_and_mailbox_list_forms() -> None:
    assert parse("imap://h") == ImapUrl(host="h")
    assert parse("imap://h/") == ImapUrl(host="h")
    assert parse("imap://[::1]:993/INBOX") == ImapUrl(host="[::1]", port=993, mailbox="INBOX")
    u = parse("imap://h/gray-council?SUBJECT%20shadows")
    assert u.mailbox == "gray-council" and u.search == "SUBJECT shadows" and not u.is_message


@pytest.mark.parametrize(
    "url",
    [
        "imap://h/INBOX/;UID=0",  # nz-number
        "imap://h/INBOX/;UID=4294967296",  # 32-bit
        "imap://h/INBOX;UIDVALIDITY=x/;UID=1",
        "imap://h/INBOX/;UID=1/;SECTION=",
        "imap://h/INBOX/;UID=1/;PARTIAL=1.0",
        "imap://h/INBOX/;UID=1;SECTION=1",  # "/" before ";SECTION=" (RFC 5092 §11)
        "imap://h/INBOX/;UID=1/;FOO=1",
        "imap://h/INBOX?a/;UID=1",  # nothing after a search
        "imap://h:99999/INBOX",
        "imap://h/IN BOX",  # SP must be %-encoded
        "imap://h/INB\u00f6X",  # so must 8-bit characters
        "imap:///INBOX",  # no server
        "imap://h/INBOX/;UID=1/;URLAUTH=nobody",
        "http://h/INBOX",
    ],
)
def test_refusals(url: str) -> None:
    with pytest.raises(UrlError):
        parse(url)


def test_relative_urls_resolve_against_the_base() -> None:
    base = "imap://fred@h/INBOX;UIDVALIDITY=5/"
    # RFC 5092 §7.1: ";UID=" and ";SECTION=" are path segments
    assert parse(";UID=20/;SECTION=1.2", base) == ImapUrl(
        host="h", user="fred", mailbox="INBOX", uidvalidity=5, uid=20, section="1.2"
    )
    assert parse("/Sent/;UID=3", base) == ImapUrl(host="h", user="fred", mailbox="Sent", uid=3)
    assert parse("//other/Drafts/;UID=4", base).host == "other"
    assert parse("/a/b/../c/;UID=1", base).mailbox == "a/c"
    with pytest.raises(UrlError, match="Relative URL without a base"):
        parse("/INBOX/;UID=1")
    with pytest.raises(UrlError, match="too long"):
        parse("imap://h/" + "a" * 9000)


def test_urlauth_rump_and_verifier() -> None:
    text = (
        "imap://joe@example.com/INBOX/;uid=20/;section=1.2;EXPIRE=2026-05-06T12:00:00Z"
        ";urlauth=submit+fred:internal:91354a473744909de610943775f92038"
    )
    u = parse(text)
    assert u.rump == text[: text.index(":internal")]
    assert u.access == "submit+fred" and u.mechanism == "INTERNAL"
    assert u.token == "91354a473744909de610943775f92038"
    assert u.expire == datetime(2026, 5, 6, 12, tzinfo=UTC)
    rump = parse("imap://joe@example.com/INBOX/;uid=20;urlauth=anonymous")
    assert rump.rump == "imap://joe@example.com/INBOX/;uid=20;urlauth=anonymous"
    assert rump.mechanism is None and rump.section is None


def test_parsing_is_linear_on_hostile_input() -> None:
    start = time.perf_counter()
    for text in (
        "imap://" + "a" * 8000,
        "imap://h/" + "%41" * 2600 + "/;",
        "imap://h/a/;UID=1/;SECTION=" + "1/" * 3900,
    ):
        with pytest.raises(UrlError):
            parse(text + "\x00")
        with contextlib.suppress(UrlError):
            parse(text)
    assert time.perf_counter() - start < 0.5
