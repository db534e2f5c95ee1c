"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.imap import utf7


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("", ""),
        ("a&b", "a&-b"),
        ("&", "&-"),
        ("été", "&AOk-t&AOk-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("Entwürfe", "Entw&APw-rfe"),
        ("😀", "&2D3eAA-"),
        ("tab\there", "tab&AAk-here"),
    ],
)
def test_encode_decode(text: str, encoded: str) -> None:
    assert utf7.encode(text) == encoded
    assert utf7.decode(encoded) == text


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("&U,BTFw", "unterminated"),
        ("&U,B!Fw-", "invalid character"),
        ("&A-", "truncated"),
        ("&AOl-", "padding"),  # low bits of the last character set
        ("&AGE-", "printable"),  # "a" hidden in BASE64
        ("&AOkA-", "odd number"),
        ("&2D0-", "surrogate"),
        ("caf\u00e9", "must be encoded"),
        ("a\x01b", "must be encoded"),
        # found by the canonical-encoding property (tests/fuzz/test_properties.py):
        # a null shift between two runs, another spelling of "&AOkA6Q-"
        ("&AOk-&AOk-", "adjacent"),
        ("x&AOk-&AOk-y", "adjacent"),
    ],
)
def test_decode_rejects(encoded: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        utf7.decode(encoded)


def test_encode_rejects_lone_surrogate() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        utf7.encode("a\ud800")


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_round_trip(name: str) -> None:
    encoded = utf7.encode(name)
    assert encoded.isascii()
    assert utf7.decode(encoded) == name
