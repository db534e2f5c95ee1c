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
