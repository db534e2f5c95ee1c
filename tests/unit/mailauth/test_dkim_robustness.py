"""DKIM on malformed messages and key records: verification and signing answer,
never raise (inputs found by fuzzing, tests/fuzz/corpus/dkim and filters)."""

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
# a first line that is a continuation: dkimpy's parser raises IndexError
LEADING_WSP = b" x\r\nFrom: a@example.test\r\n\r\nbody\r\n"


async def test_unparsable_header_without_signature_is_unsigned() -> None:
    assert dkimverify.signature_tags(BROKEN) == []
    assert await dkimverify.verify(BROKEN, FakeResolver({})) == []
    assert await arc.verify(BROKEN, FakeResolver({})) == arc.ArcResult("none")
    assert await dkimverify.verify(LEADING_WSP, FakeResolver({})) == []


async def test_signatures_of_an_unparsable_header_are_still_evaluated() -> None:
    message = b"DKIM-Signature: v=1; d=example.test; s=sel\r\ndkim-signature : x\r\n" + BROKEN
    assert await dkimverify.verify(message, FakeResolver({})) == [
        dkimverify.DkimResult("permerror", "example.test", "sel", "", "no key record"),
        dkimverify.DkimResult("permerror", "", "", "", "unparsable signature"),
    ]
    sealed = b" x\r\nARC-Seal: i=1; a=rsa-sha256; d=example.test; s=sel; cv=none; b=x\r\n\r\n"
    assert await arc.verify(sealed, FakeResolver({})) == arc.ArcResult(
        "fail", 1, "malformed (IndexError)"
    )


@pytest.mark.parametrize(("message", "error"), [(b"", "TypeError"), (LEADING_WSP, "IndexError")])
def test_signing_what_dkimpy_cannot_parse_is_a_dkim_error(message: bytes, error: str) -> None:
    with pytest.raises(DkimError, match=f"dkimpy raised {error} on this message"):
        sign(message, [KEY])
    assert sign(b"\r\n", [KEY]).startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")


SIGNED = (
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=sel;"
    b" h=from; bh=%s; b=abcd\r\nFrom: a@example.test\r\n\r\n"
)


@pytest.mark.parametrize(
    ("bh", "record", "reason"),
    [
        # 'ab=c' passes dkimpy's own check; its b64decode then raised binascii.Error
        (b"ab=c", KEY.txt_record(), "malformed (Error)"),
        # a truncated p=: dkimpy's ASN.1 parser raised AssertionError; anyone can
        # publish such a key for their domain
        (
            b"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQU/9wOjbQIDAQAB",
            "malformed (AssertionError)",
        ),
    ],
)
async def test_what_dkimpy_raises_on_a_signature_is_a_permerror(
    bh: bytes, record: str, reason: str
) -> None:
    zone = {"sel._domainkey.example.test": {"TXT": [record]}}
    assert await dkimverify.verify(SIGNED % bh, FakeResolver(zone)) == [
        dkimverify.DkimResult("permerror", "example.test", "sel", "abcd", reason)
    ]
