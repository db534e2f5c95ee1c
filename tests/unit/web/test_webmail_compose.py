"""The compose form turned into a message: address lists, limits, the bytes."""

from __future__ import annotations

import email
import email.policy

import pytest

from postier.web.webmail.compose import (
    MAX_RECIPIENTS,
    ComposeError,
    Draft,
    build,
    message_ids,
    reply_draft,
)
from postier.web.webmail.render import render


def test_message_and_envelope() -> None:
    rcpts, data = build(
        "alice@example.test",
        Draft(
            to='Bob <bob@example.test>, "Smith, Carol" <carol@example.org>',
            cc="bob@example.test, dave@example.net",
            subject="  Café\r\n  time ",
            body="line one\nline two",
        ),
        "mail.example.test",
    )
    # one envelope recipient per address, in the order typed
    assert [str(a) for a in rcpts] == ["bob@example.test", "carol@example.org", "dave@example.net"]
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["From"] == "alice@example.test"
    assert msg["To"] == 'Bob <bob@example.test>, "Smith, Carol" <carol@example.org>'
    assert msg["Subject"] == "Café time"
    assert msg["Message-ID"].endswith("@mail.example.test>")
    assert msg["Date"]
    assert msg.get_content() == "line one\r\nline two\r\n"


@pytest.mark.parametrize(
    ("draft", "says"),
    [
        (Draft(), "at least one recipient"),
        (Draft(to="not an address"), "To:"),
        (Draft(to="bob@example.test", cc="a@@b"), "Cc:"),
        (Draft(to=", ".join(f"u{i}@example.test" for i in range(MAX_RECIPIENTS + 1))), "At most"),
        (Draft(to="bob@example.test", subject="x" * 501), "subject"),
    ],
)
def test_refused(draft: Draft, says: str) -> None:
    with pytest.raises(ComposeError, match=says):
        build("alice@example.test", draft, "mail.example.test")


def test_message_ids_keep_only_ids() -> None:
    assert message_ids("<a@b> junk <c@d>\r\nX-Evil: 1 <e<f> <>") == ["<a@b>", "<c@d>"]


def test_reply_draft() -> None:
    msg = render(
        b'From: "Bob, B." <bob@example.test>\r\nReply-To: list@example.org\r\n'
        b"To: alice@example.test, dave@example.net\r\nCc: Alice <ALICE@example.test>\r\n"
        b"Subject: Re: plans\r\nMessage-ID: <m2@x>\r\nReferences: <m0@x> <m1@x>\r\n\r\n"
        b"one\r\n\r\ntwo\r\n"
    )
    one = reply_draft(msg, "alice@example.test", to_all=False)
    assert (one.to, one.cc, one.subject) == ("list@example.org", "", "Re: plans")
    assert one.in_reply_to == "<m2@x>" and one.references == "<m0@x> <m1@x> <m2@x>"
    assert one.body.endswith("wrote:\n> one\n>\n> two\n")
    every = reply_draft(msg, "alice@example.test", to_all=True)
    assert every.cc == "dave@example.net"  # not the user, in any case
    _, data = build("alice@example.test", every, "mail.example.test")
    assert b"In-Reply-To: <m2@x>\r\n" in data
    assert b"References: <m0@x> <m1@x> <m2@x>\r\n" in data


def test_reply_names_are_quoted_when_typed_back() -> None:
    msg = render(b'From: "Bob, B." <bob@example.test>\r\nSubject: x\r\n\r\nx\r\n')
    draft = reply_draft(msg, "alice@example.test", to_all=False)
    assert draft.to == '"Bob, B." <bob@example.test>' and draft.subject == "Re: x"
    rcpts, _ = build("alice@example.test", draft, "h")
    assert [str(a) for a in rcpts] == ["bob@example.test"]


def test_forward_draft_quotes_and_names_the_original() -> None:
    from postier.web.webmail.compose import forward_draft
    from postier.web.webmail.render import render

    msg = render(
        b"From: Dave <d@x.test>\r\nTo: a@x.test\r\nSubject: Fwd: Report\r\n"
        b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html\r\n\r\n<p>One</p><p>Two &amp; <b>three</b></p>"
        b"<script>evil()</script>\r\n"
    )
    d = forward_draft(msg, "3/7")
    assert d.subject == "Fwd: Report" and d.forward == "3/7" and d.to == ""
    assert "> From: Dave <d@x.test>" in d.body
    assert "> One\n> Two & three" in d.body  # the HTML part's text, quoted
    assert "evil" not in d.body


def test_bcc_is_envelope_only_and_kept_for_the_sender() -> None:
    from postier.web.webmail.compose import with_bcc

    draft = Draft(to="b@example.test", bcc="Carol <c@example.test>", subject="s", body="x")
    rcpts, data = build("a@example.test", draft, "mail.example.test")
    assert [str(a) for a in rcpts] == ["b@example.test", "c@example.test"]
    assert b"Bcc" not in data and b"c@example.test" not in data
    assert with_bcc(data, draft).startswith(b"Bcc: Carol <c@example.test>\r\n")


def test_drafts_need_no_recipient() -> None:
    with pytest.raises(ComposeError):
        build("a@example.test", Draft(subject="s"), "mail.example.test")
    rcpts, data = build("a@example.test", Draft(subject="s"), "h", need_recipients=False)
    assert rcpts == [] and b"Subject: s" in data


def test_form_data_and_attachments() -> None:
    from postier.web.webmail.compose import MAX_FILES, Upload, form_data, safe_filename

    body = (
        b'--B\r\nContent-Disposition: form-data; name="to"\r\n\r\nb@example.test\r\n'
        b'--B\r\nContent-Disposition: form-data; name="body"\r\n\r\nline 1\r\nline 2\r\n'
        b'--B\r\nContent-Disposition: form-data; name="files"; filename="r.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n%PDF\r\n\r\n"
        b'--B\r\nContent-Disposition: form-data; name="files"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n"
    )
    fields, files = form_data(body, "multipart/form-data; boundary=B")
    assert fields == {"to": "b@example.test", "body": "line 1\r\nline 2"}
    assert files == [Upload("r.pdf", "application/pdf", b"%PDF\r\n")]
    many = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nx\r\n'
        for _ in range(MAX_FILES + 1)
    )
    with pytest.raises(ComposeError):
        form_data(many + b"--B--\r\n", "multipart/form-data; boundary=B")
    assert safe_filename("C:\\Users\\me\\a\nb.txt") == "ab.txt"
    assert safe_filename("../") == "attachment"
    _, data = build(
        "a@example.test",
        Draft(to="b@example.test", subject="s", body="x"),
        "h",
        [Upload("r.pdf", "application/pdf", b"%PDF"), Upload("y", "bad type;", b"y")],
    )
    assert b'filename="r.pdf"' in data and b"Content-Type: application/pdf" in data
    assert b"Content-Type: application/octet-stream" in data


def test_correspondents() -> None:
    from postier.web.webmail.compose import correspondents

    got = correspondents(
        ["Bob <b@x.test>, me@x.test", "carol@x.test", "B <B@X.test>", "not an address"],
        "me@x.test",
    )
    assert got == ["B <B@X.test>", "carol@x.test"]
