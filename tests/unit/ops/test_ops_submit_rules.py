"""The sendmail command line and the input rules of local injection."""

from __future__ import annotations

import pytest

from postier.cli.send import SendmailOptions, _Usage, parse_sendmail_args
from postier.ops.submit import header_addresses, prepare, strip_bcc


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bob@x.test"], SendmailOptions(recipients=["bob@x.test"])),
        (["-t", "-oi"], SendmailOptions(extract=True, ignore_dots=True)),
        (
            ["-i", "-f", "me@x.test", "a@x.test", "b@x.test"],
            SendmailOptions(
                sender="me@x.test", ignore_dots=True, recipients=["a@x.test", "b@x.test"]
            ),
        ),
        (
            ["-fme@x.test", "-FMe Myself", "a@x.test"],
            SendmailOptions(sender="me@x.test", full_name="Me Myself", recipients=["a@x.test"]),
        ),
        (
            ["-r", "me@x.test", "--", "-odd@x.test"],
            SendmailOptions(sender="me@x.test", recipients=["-odd@x.test"]),
        ),
        (
            [
                "-C",
                "/etc/postier.toml",
                "-odb",
                "-oem",
                "-o",
                "Timeout",
                "-v",
                "-bm",
                "-em",
                "-N",
                "never",
                "-B",
                "8BITMIME",
                "a@x.test",
            ],
            SendmailOptions(config="/etc/postier.toml", recipients=["a@x.test"]),
        ),
    ],
)
def test_sendmail_args(argv: list[str], expected: SendmailOptions) -> None:
    assert parse_sendmail_args(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-bp"], "mode -bp is not supported (only -bm, deliver mail)"),
        (["-bs"], "mode -bs is not supported (only -bm, deliver mail)"),
        (["-q"], "-q (queue runs) is not supported: the server runs its queue"),
        (["-f"], "option -f needs a value"),
        (["-Z"], "unknown option -Z"),
    ],
)
def test_sendmail_args_refused(argv: list[str], message: str) -> None:
    with pytest.raises(_Usage) as info:
        parse_sendmail_args(argv)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("data", "ignore_dots", "out"),
    [
        (b"Subject: x\n\nbody\n", True, b"Subject: x\r\n\r\nbody\r\n"),
        (b"Subject: x\n\nbody", True, b"Subject: x\r\n\r\nbody\r\n"),
        (b"Subject: x\n\na\n.\nb\n", True, b"Subject: x\r\n\r\na\r\n.\r\nb\r\n"),
        (b"Subject: x\n\na\n.\nb\n", False, b"Subject: x\r\n\r\na\r\n"),
        (b"Subject: x\n\na\n.", False, b"Subject: x\r\n\r\na\r\n"),
        (b".\n", False, b""),
        (
            b"From me@x Mon Jan  1 00:00:00 2024\nSubject: x\n\nb\n",
            True,
            b"Subject: x\r\n\r\nb\r\n",
        ),
    ],
)
def test_prepare(data: bytes, ignore_dots: bool, out: bytes) -> None:
    assert prepare(data, ignore_dots=ignore_dots) == out


def test_strip_bcc_only_in_header() -> None:
    data = (
        b"To: a@x.test\r\nBcc: secret@x.test,\r\n  other@x.test\r\nSubject: s\r\n"
        b"\r\nBcc: this is body text\r\n"
    )
    assert strip_bcc(data) == (b"To: a@x.test\r\nSubject: s\r\n\r\nBcc: this is body text\r\n")
    assert header_addresses(data, ("To", "Bcc")) == ["a@x.test", "secret@x.test", "other@x.test"]
