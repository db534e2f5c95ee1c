"""The compose form turned into a message: address lists, limits, the bytes."""

from __future__ import annotations

import email
import email.policy

import pytest

from postier.web.webmail.compose import MAX_RECIPIENTS, ComposeError, Draft, build


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
