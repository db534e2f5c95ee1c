"""DKIM on malformed messages: verification and signing answer, never raise
(inputs found by fuzzing, tests/fuzz/corpus/dkim and filters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.dns.fake import FakeResolver
from postier.mailauth import arc, dkimverify
from postier.mailauth.dkim import DkimError, DkimKey, sign

KEY = DkimKey(
    "example.test",
    "sel",
    "rsa",
    (Path(__file__).resolve().parents[2] / "fuzz" / "dkim_key.pem").read_bytes(),
)
# a header line that is neither a field nor a continuation: dkimpy's parser refuses it
BROKEN = b"From: a@example.test\r\nX5O.test\r\nSubject: x\r\n\r\nbody\r\n"


async def test_unparsable_header_without_signature_is_unsigned() -> None:
    assert dkimverify.signature_tags(BROKEN) == []
    assert await dkimverify.verify(BROKEN, FakeResolver({})) == []
    assert await arc.verify(BROKEN, FakeResolver({})) == arc.ArcResult("none")


async def test_unparsable_header_makes_each_signature_a_permerror() -> None:
    message = b"DKIM-Signature: v=1; d=example.test; s=sel\r\ndkim-signature : x\r\n" + BROKEN
    assert dkimverify.signature_tags(message) == [None, None]
    results = await dkimverify.verify(message, FakeResolver({}))
    assert results == [dkimverify.DkimResult("permerror", "", "", "", "unparsable signature")] * 2
    assert results[0].auth_results() == "dkim=permerror (unparsable signature)"


async def test_unparsable_arc_seal_fails_the_chain() -> None:
    message = b"ARC-Seal: i=1; a=rsa-sha256; d=example.test; s=sel; cv=none; b=x\r\n" + BROKEN
    result = await arc.verify(message, FakeResolver({}))
    assert result.status == "fail"
    assert result.sets == 1


def test_signing_an_empty_message_is_a_dkim_error() -> None:
    with pytest.raises(DkimError, match="empty message"):
        sign(b"", [KEY])
    assert sign(b"\r\n", [KEY]).startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")


# found by fuzzing (tests/fuzz/corpus/dkim): dkimpy's header parser raises IndexError
# when the first line is a continuation (white space first)
LEADING_WSP = b" x\r\nFrom: a@example.test\r\n\r\nbody\r\n"


async def test_a_header_starting_with_white_space_is_unsigned_not_a_crash() -> None:
    assert dkimverify.signature_tags(LEADING_WSP) == []
    assert await dkimverify.verify(LEADING_WSP, FakeResolver({})) == []
    signed = b" x\r\nDKIM-Signature: v=1; d=example.test; s=sel\r\n\r\nbody\r\n"
    assert await dkimverify.verify(signed, FakeResolver({})) == [
        dkimverify.DkimResult("permerror", "", "", "", "unparsable signature")
    ]
    sealed = b" x\r\nARC-Seal: i=1; a=rsa-sha256; d=example.test; s=sel; cv=none; b=x\r\n\r\n"
    assert await arc.verify(sealed, FakeResolver({})) == arc.ArcResult(
        "fail", 1, "malformed message header"
    )


def test_signing_a_header_starting_with_white_space_is_a_dkim_error() -> None:
    with pytest.raises(DkimError, match="header starts with a continuation"):
        sign(LEADING_WSP, [KEY])


async def test_bad_base64_in_bh_is_a_permerror() -> None:
    # found by fuzzing (tests/fuzz/corpus/dkim): binascii.Error from dkimpy's
    # b64decode of bh= escaped verification and crashed the DKIM stage
    message = (
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=sel;"
        b" h=from; bh=ab=c; b=abcd\r\nFrom: a@example.test\r\n\r\nbody\r\n"
    )
    zone = {"sel._domainkey.example.test": {"TXT": [KEY.txt_record()]}}
    assert await dkimverify.verify(message, FakeResolver(zone)) == [
        dkimverify.DkimResult(
            "permerror", "example.test", "sel", "abcd", "malformed signature: Incorrect padding"
        )
    ]


async def test_a_key_record_dkimpy_cannot_parse_is_a_permerror() -> None:
    # found by fuzzing (make test's bounded run; tests/fuzz/corpus/dkim): a truncated
    # p= made dkimpy's ASN.1 parser raise AssertionError out of verify(), so anyone
    # publishing such a key got the DKIM stage to crash (451 on every retry)
    message = (
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=sel;"
        b" h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=abcd\r\n"
        b"From: a@example.test\r\n\r\n"
    )
    zone = {
        "sel._domainkey.example.test": {
            "TXT": ["v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQU/9wOjbQIDAQAB"]
        }
    }
    assert await dkimverify.verify(message, FakeResolver(zone)) == [
        dkimverify.DkimResult(
            "permerror", "example.test", "sel", "abcd", "unverifiable (AssertionError)"
        )
    ]
