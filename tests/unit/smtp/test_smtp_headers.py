"""The trace fields intake writes (postier/smtp/headers.py) on hostile client text."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from postier.smtp import headers


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


def test_received_date_is_now_and_made_once_a_second(monkeypatch) -> None:
    import email.utils

    made: list[float | None] = []
    real = email.utils.formatdate

    def counting(when=None, localtime=False, usegmt=False):  # type: ignore[no-untyped-def]
        made.append(when)
        return real(when, localtime, usegmt)

    monkeypatch.setattr(headers.email.utils, "formatdate", counting)
    monkeypatch.setattr(headers.time, "time", lambda: 1_800_000_000.25)
    args = {
        "helo": "c.test",
        "client_ip": "192.0.2.1",
        "client_name": None,
        "hostname": "mx.test",
        "protocol": "ESMTP",
        "qid": "Q",
        "tls": None,
        "auth_user": None,
        "recipient": None,
    }
    first = headers.received(**args)  # type: ignore[arg-type]
    second = headers.received(**args)  # type: ignore[arg-type]
    assert first == second
    assert first.endswith(f"; {real(1_800_000_000, localtime=True)}\r\n".encode())
    assert len(made) <= 1  # made once for that second (or before this test)
    monkeypatch.setattr(headers.time, "time", lambda: 1_800_000_001.0)
    assert headers.received(**args).endswith(  # type: ignore[arg-type]
        f"; {real(1_800_000_001, localtime=True)}\r\n".encode()
    )


def _clean_by_regex(text: str | None) -> str:
    """`headers._clean` without its fast path for short printable ASCII."""
    if not text:
        return ""
    text = re.sub(r"[\x00-\x1f\x7f]", "?", text[:255])
    return text.encode("utf-8", "replace")[:255].decode("utf-8", "ignore")


@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=250, max_size=260),
    )
)
def test_clean_fast_path_agrees_with_the_regex(text: str) -> None:
    assert headers._clean(text) == _clean_by_regex(text)
