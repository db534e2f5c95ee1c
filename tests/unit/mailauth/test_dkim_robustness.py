"""DKIM on malformed messages and key records: verification and signing answer,
never raise (inputs found by fuzzing, tests/fuzz/corpus/dkim and filters)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.dns.fake import FakeResolver
from postier.mailauth import arc, dkimpy, dkimverify
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


_BODY_PIECES = st.lists(
    st.sampled_from([b"a", b"bc", b" ", b"\t", b"  \t ", b"\r\n", b"\r", b"\n", b"x y"]),
    max_size=60,
).map(b"".join)


@given(_BODY_PIECES)
def test_relaxed_body_canonicalisation_by_slices_is_dkimpys(body: bytes) -> None:
    """Each regex pass holds the GIL: signing a 20 MB body held it 0.7 s. Over
    SLICE octets the passes go a slice at a time, cut between two octets that
    are neither blank nor CR/LF: the output is dkimpy's own. (SLICE is tiny
    here, so that small bodies take that path.)"""
    want_strip = re.sub(b"[\t ]+\r\n", b"\r\n", body)
    want_compress = re.sub(b"[\t ]+", b" ", body)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dkimpy, "SLICE", 3)
        assert dkimpy.strip_trailing_whitespace(body) == want_strip
        assert dkimpy.compress_whitespace(body) == want_compress
        assert dkimpy.dkim.canonicalization.Relaxed.canonicalize_body(body) == (
            _dkimpy_relaxed(body)
        )


def _dkimpy_relaxed(body: bytes) -> bytes:
    c = dkimpy.dkim.canonicalization
    return c.correct_empty_body(
        c.strip_trailing_lines(re.sub(b"[\t ]+", b" ", re.sub(b"[\t ]+\r\n", b"\r\n", body)))
    )


def test_a_large_body_is_canonicalised_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = dkimpy._compress

    def spy(content: bytes) -> bytes:
        calls.append(len(content))
        return real(content)

    monkeypatch.setattr(dkimpy, "_compress", spy)
    body = b"word  word\t\r\n" * (3 * dkimpy.SLICE // 13)
    assert dkimpy.compress_whitespace(body) == re.sub(b"[\t ]+", b" ", body)
    assert len(calls) >= 3
    assert max(calls) <= dkimpy.SLICE + 13
