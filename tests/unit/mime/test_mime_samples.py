"""Exact ENVELOPE / BODYSTRUCTURE / BODY for the sample messages in tests/data/mime.

Sizes were checked by hand against the CRLF files (and against Dovecot's own
bodystructure test message in test_mime_parse.py); every leaf size is also
cross-checked against the section it describes.
"""

from collections.abc import Iterator

import pytest

from postier.mime import Part, Section, bodystructure, envelope, extract, parse

ALICE = b'(("Alice" NIL "alice" "example.org"))'
BOB_BARE = b'((NIL NIL "bob" "example.test"))'

CASES = {
    "simple.eml": (
        b'("Mon, 1 Jan 2024 10:00:00 +0000" "Lunch?" (("Alice Example" NIL "alice" "example.org"))'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' (("Bob" NIL "bob" "example.test")) NIL NIL NIL "<simple-1@example.org>")',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 28 2 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 28 2)',
    ),
    "no_content_type.eml": (
        b'(NIL "plain old mail" ((NIL NIL "alice" "example.org")) ((NIL NIL "alice" "example.org"))'
        b' ((NIL NIL "alice" "example.org")) ' + BOB_BARE + b" NIL NIL NIL NIL)",
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 24 2 NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 24 2)',
    ),
    "alternative.eml": (
        b'("Tue, 2 Jan 2024 11:30:00 +0100" "Alternative" '
        + ALICE
        + b" "
        + ALICE
        + b" "
        + ALICE
        + b" "
        + BOB_BARE
        + b' NIL NIL NIL "<alt-1@example.org>")',
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 17 0 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 99 0 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "alt-boundary") NIL NIL NIL)',
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 17 0)'
        b'("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 99 0) "alternative")',
    ),
    "mixed_attachment.eml": (
        b'("Wed, 3 Jan 2024 09:00:00 +0000" "Rates" '
        + ALICE
        + b" "
        + ALICE
        + b" "
        + ALICE
        + b" "
        + BOB_BARE
        + b" NIL NIL NIL NIL)",
        b'(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 15 1 NIL NIL NIL NIL)'
        b'("application" "pdf" ("name" "rates.pdf") "<pdf-1@example.org>" "The rates" "base64" 64'
        b' NIL ("attachment" ("filename*" "utf-8\'\'%E2%82%AC%20rates.pdf"'
        b' "title*" "us-ascii\'en\'This%20is%20even%20more%20")) NIL NIL)'
        b' "mixed" ("boundary" "XYZ") NIL NIL NIL)',
        b'(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 15 1)'
        b'("application" "pdf" ("name" "rates.pdf") "<pdf-1@example.org>" "The rates" "base64" 64)'
        b' "mixed")',
    ),
    "nested.eml": (
        b'(NIL "Nested" '
        + ALICE
        + b" "
        + ALICE
        + b" "
        + ALICE
        + b" "
        + BOB_BARE
        + b" NIL NIL NIL NIL)",
        b'((("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL)'
        b'(("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 37 0 NIL NIL NIL NIL)'
        b'("image" "png" NIL "<img1>" NIL "base64" 12 NIL ("inline" NIL) NIL NIL)'
        b' "related" ("boundary" "deep") NIL NIL NIL)'
        b' "alternative" ("boundary" "inner") NIL NIL NIL)'
        b'("text" "csv" ("charset" "utf-8") NIL NIL "7BIT" 8 1 NIL'
        b' ("attachment" ("filename" "data.csv")) ("en" "de") "http://example.org/data.csv")'
        b' "mixed" ("boundary" "outer") NIL NIL NIL)',
        b'((("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 10 0)'
        b'(("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 37 0)'
        b'("image" "png" NIL "<img1>" NIL "base64" 12) "related") "alternative")'
        b'("text" "csv" ("charset" "utf-8") NIL NIL "7BIT" 8 1) "mixed")',
    ),
    "rfc822_attachment.eml": (
        b'("Thu, 4 Jan 2024 12:00:00 +0000" "Fwd: Hello" (("Bob" NIL "bob" "example.test"))'
        b' (("Bob" NIL "bob" "example.test")) (("Bob" NIL "bob" "example.test")) '
        + ALICE
        + b" NIL NIL NIL NIL)",
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 16 0 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7BIT" 317'
        b' ("Wed, 3 Jan 2024 08:00:00 -0500" "Hello" (("Carol" NIL "carol" "example.net"))'
        b' (("Carol" NIL "carol" "example.net")) (("Carol" NIL "carol" "example.net"))'
        b' (("Bob" NIL "bob" "example.test")) NIL NIL NIL "<inner@example.net>")'
        b' (("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 0 NIL NIL NIL NIL)'
        b'("text" "html" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 0 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "in") NIL NIL NIL) 16 NIL ("attachment" NIL) NIL NIL)'
        b' "mixed" ("boundary" "fwd") NIL NIL NIL)',
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 16 0)'
        b'("message" "rfc822" NIL NIL NIL "7BIT" 317'
        b' ("Wed, 3 Jan 2024 08:00:00 -0500" "Hello" (("Carol" NIL "carol" "example.net"))'
        b' (("Carol" NIL "carol" "example.net")) (("Carol" NIL "carol" "example.net"))'
        b' (("Bob" NIL "bob" "example.test")) NIL NIL NIL "<inner@example.net>")'
        b' (("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 0)'
        b'("text" "html" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 0) "alternative") 16) "mixed")',
    ),
    "encoded_words.eml": (
        b'("Fri, 5 Jan 2024 14:15:16 +0100" "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= =?UTF-8?Q?_aus?= Berlin"'
        b' (("=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?=" NIL "joerg" "example.de"))'
        b' (("=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?=" NIL "joerg" "example.de"))'
        b' (("=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?=" NIL "joerg" "example.de"))'
        b' (("Doe, John" NIL "john" "example.com")'
        b'("=?iso-8859-1?q?Andr=E9?=" NIL "andre" "example.fr"))'
        b' NIL NIL NIL "<ew-1@example.de>")',
        b'("text" "plain" ("charset" "utf-8") NIL NIL "base64" 30 1 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "utf-8") NIL NIL "base64" 30 1)',
    ),
    "group.eml": (
        b'("Sat, 6 Jan 2024 08:00:00 +0000" "Groups" (("Announcer" NIL "news" "example.org"))'
        b' (("Announcer" NIL "news" "example.org")) (("Announcer" NIL "news" "example.org"))'
        b' ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        b' ((NIL NIL "Team" NIL)(NIL NIL "alice" "example.org")("Bob B" NIL "bob" "example.test")'
        b'(NIL NIL NIL NIL)(NIL NIL "carol" "example.net")) NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1 NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1)',
    ),
    "missing_headers.eml": (
        b'(NIL "only a subject" NIL NIL NIL NIL NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 19 1 NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 19 1)',
    ),
    "malformed_boundaries.eml": (
        b'(NIL "Broken MIME" ((NIL NIL "sloppy" "example.org")) ((NIL NIL "sloppy" "example.org"))'
        b' ((NIL NIL "sloppy" "example.org")) NIL NIL NIL NIL NIL)',
        # "--b1   " (transport padding) is a delimiter, "--b1x" is not; no close delimiter
        b'(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 35 2 NIL NIL NIL NIL)'
        b'("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 27 1 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "b1") NIL NIL NIL)',
        b'(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 35 2)'
        b'("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 27 1) "mixed")',
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_envelope_and_bodystructure(sample, name):
    data = sample(name)
    root = parse(data)
    env, bs, body = CASES[name]
    assert envelope(root) == env
    assert bodystructure(root) == bs
    assert bodystructure(root, extensible=False) == body


def _leaf_paths(part: Part, prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Part]]:
    if part.is_multipart:
        for k, child in enumerate(part.children, 1):
            yield from _leaf_paths(child, (*prefix, k))
    else:
        yield (prefix or (1,)), part


@pytest.mark.parametrize("name", sorted(CASES))
def test_sizes_match_sections(sample, name):
    """The size BODYSTRUCTURE reports is the length of BODY[section]."""
    data = sample(name)
    root = parse(data)
    for path, part in _leaf_paths(root):
        got = extract(data, root, Section(path))
        assert got is not None
        assert len(got) == part.size
        assert got.count(b"\n") == part.lines or part.maintype.lower() not in ("text", "message")


def test_lf_only_input(sample):
    data = sample("mixed_attachment.eml", lf=True)
    root = parse(data)
    assert bodystructure(root, extensible=False) == (
        b'(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 14 1)'
        b'("application" "pdf" ("name" "rates.pdf") "<pdf-1@example.org>" "The rates" "base64" 64)'
        b' "mixed")'
    )
    assert extract(data, root, Section((1,))) == b"See attached.\n"
    assert extract(data, root, Section((2,), Section.parse("2.MIME").text)) == (
        b'Content-Type: application/pdf; name="rates.pdf"\n'
        b"Content-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment;\n"
        b" filename*=utf-8''%E2%82%AC%20rates.pdf;\n"
        b" title*0*=us-ascii'en'This%20is%20;\n"
        b' title*1="even more "\n'
        b"Content-ID: <pdf-1@example.org>\n"
        b"Content-Description: The rates\n\n"
    )
    assert envelope(root) == envelope(parse(sample("mixed_attachment.eml")))
