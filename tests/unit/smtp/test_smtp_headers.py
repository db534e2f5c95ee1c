"""Header look-ups at intake (postier/smtp/headers.py) on hostile field values."""

from __future__ import annotations

import pytest

from postier.smtp import headers


def test_addresses() -> None:
    values = ['"A, B" <a@Example.TEST.>, g: c@d.test;', "x"]
    assert headers.addresses(values) == ["a@example.test", "c@d.test"]


@pytest.mark.parametrize("value", [":" * 2000, "(" * 2000 + "a@b.test"])
def test_addresses_of_a_field_the_stdlib_parser_recurses_on(value: str) -> None:
    # found by fuzzing (tests/fuzz/corpus/address): email.utils.getaddresses raised
    # RecursionError, which crashed the DMARC and headers filter stages (451 forever)
    assert headers.addresses([value]) == []
    view = headers.HeaderView.of(f"From: {value}\r\n\r\n".encode())
    assert headers.addresses(view.fields("From")) == []


def test_received_lines_stay_under_998_octets_whatever_the_client_sent() -> None:
    # found by fuzzing (tests/fuzz/corpus/address): 255 *characters* of a non-ASCII
    # HELO name and as many of its reverse name made a 1292-octet line
    field = headers.received(
        helo="é" * 300,
        client_ip="192.0.2.1",
        client_name="\U0001f600" * 300,
        hostname="mx.example.test",
        protocol="UTF8SMTP",
        qid="Q1",
        tls=None,
        auth_user="ü" * 300,
        recipient="x" * 300 + "\r\nX: y",
        when=0.0,
    )
    lines = field.split(b"\r\n")
    assert (
        lines[0]
        == ("Received: from " + "é" * 127 + " (" + "\U0001f600" * 63 + " [192.0.2.1])").encode()
    )
    assert lines[1] == ("\t(Authenticated sender: " + "ü" * 127 + ")").encode()
    assert lines[3].startswith(b"\tfor <" + b"x" * 255 + b">; ")
    assert max(len(line) for line in lines) <= 998
    assert headers.return_path("é" * 300) == ("Return-Path: <" + "é" * 127 + ">\r\n").encode()
