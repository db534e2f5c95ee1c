"""Reply serialisation (RFC 5321 §4.2, RFC 2034) and the SASL PLAIN/LOGIN helpers."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.mail.replies import (
    R220_READY,
    R250_CHUNK_OK,
    R250_QUEUED,
    R334_CHALLENGE,
    R354_START_DATA,
    R421_TOO_MANY_ERRORS,
    R535_AUTH_FAILED,
    R550_NO_SUCH_USER,
    R553_NOT_OWNER,
    R554_RELAY_DENIED,
    Reply,
)
from postier.smtp import sasl

REPLIES = [
    pytest.param(
        R220_READY("mx.example.test"), b"220 mx.example.test ESMTP postier\r\n", id="greeting"
    ),
    pytest.param(R354_START_DATA, b"354 End data with <CR><LF>.<CR><LF>\r\n", id="354"),
    pytest.param(R334_CHALLENGE(""), b"334 \r\n", id="334-empty"),
    pytest.param(R250_QUEUED("ABC123"), b"250 2.0.0 Ok: queued as ABC123\r\n", id="queued"),
    pytest.param(R250_CHUNK_OK(42), b"250 2.0.0 Ok: 42 bytes\r\n", id="chunk"),
    pytest.param(
        R421_TOO_MANY_ERRORS, b"421 4.7.0 Too many errors, closing connection\r\n", id="421"
    ),
    pytest.param(R535_AUTH_FAILED, b"535 5.7.8 Authentication credentials invalid\r\n", id="535"),
    pytest.param(
        R553_NOT_OWNER("bob@example.test"),
        b"553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user\r\n",
        id="553",
    ),
    pytest.param(
        R550_NO_SUCH_USER("bob@example.test"),
        b"550 5.1.1 <bob@example.test>: Recipient address rejected: User unknown\r\n",
        id="550",
    ),
    pytest.param(
        R554_RELAY_DENIED("x@y.test"), b"554 5.7.1 <x@y.test>: Relay access denied\r\n", id="554"
    ),
    pytest.param(
        Reply(250, "2.0.0", "first\nsecond\nthird"),
        b"250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 third\r\n",
        id="multiline-enhanced",
    ),
    pytest.param(
        Reply(250, None, "mx\nPIPELINING"), b"250-mx\r\n250 PIPELINING\r\n", id="multiline"
    ),
    pytest.param(
        Reply(550, "5.1.1", "<j\u00f6rg@x\r\ny>\x00"),
        b"550-5.1.1 <j?rg@x\r\n550 5.1.1 y>?\r\n",
        id="unprintable-replaced",
    ),
]


@pytest.mark.parametrize(("reply", "wire"), REPLIES)
def test_reply_bytes(reply: Reply, wire: bytes) -> None:
    assert reply.to_bytes() == wire


def test_reply_properties() -> None:
    assert Reply(354, None, "go").is_positive
    assert not Reply(450, "4.0.0", "later").is_positive
    assert Reply(421, "4.3.2", "bye").is_closing
    assert not Reply(451, "4.3.0", "oops").is_closing
    assert str(R535_AUTH_FAILED) == "535 5.7.8 Authentication credentials invalid"


@given(st.text(max_size=200))
def test_reply_never_breaks_framing(text: str) -> None:
    wire = Reply(550, "5.0.0", text).to_bytes()
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    assert all(line[:4] in (b"550-", b"550 ") for line in lines[:-1])
    assert lines[-2].startswith(b"550 ")
    assert all(0x20 <= b < 0x7F for line in lines for b in line)


# --- SASL --------------------------------------------------------------------------------


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_decode_response() -> None:
    assert sasl.decode_response(b64(b"hello")) == b"hello"
    assert sasl.decode_response(b64(b"hello").decode()) == b"hello"
    assert sasl.decode_response(b"=", initial=True) == b""
    with pytest.raises(sasl.SaslError):
        sasl.decode_response(b"=")
    with pytest.raises(sasl.SaslCancelled):
        sasl.decode_response(b"*")
    for bad in (b"abc", b"a b=", b"!!!!", b"aGVsbG8=x"):
        with pytest.raises(sasl.SaslError):
            sasl.decode_response(bad)


@pytest.mark.parametrize(
    ("message", "parsed"),
    [
        (b"\x00alice\x00secret", ("", "alice", "secret")),
        (b"admin\x00alice\x00s\xc3\xa9cret", ("admin", "alice", "s\u00e9cret")),
    ],
)
def test_parse_plain(message: bytes, parsed: tuple[str, str, str]) -> None:
    assert sasl.parse_plain(message) == parsed


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"alice\x00secret",
        b"\x00\x00secret",
        b"\x00alice\x00",
        b"a\x00b\x00c\x00d",
        b"\x00\xff\x00x",
    ],
)
def test_parse_plain_rejects(message: bytes) -> None:
    with pytest.raises(sasl.SaslError):
        sasl.parse_plain(message)


def test_login_helpers() -> None:
    assert base64.b64decode(sasl.LOGIN_USERNAME_PROMPT) == b"Username:"
    assert base64.b64decode(sasl.LOGIN_PASSWORD_PROMPT) == b"Password:"
    assert sasl.encode_challenge(b"Username:") == sasl.LOGIN_USERNAME_PROMPT
    assert sasl.decode_text("j\u00f6rg".encode()) == "j\u00f6rg"
    for bad in (b"a\x00b", b"\xff"):
        with pytest.raises(sasl.SaslError):
            sasl.decode_text(bad)
