"""Fuzz target ``mime``: the message parser and everything intake caches from it
(postier/mime: parse, envelope, bodystructure, sections, preview, summary).

Input: a whole message as received.

Allowed: nothing raises (the parser's rule: any bytes parse), except
`UnknownEncoding` from `binary` (BINARY's documented "unknown CTE" answer, RFC 3516
§4.3). `_summarize` is called directly: `summarize` catches everything at the intake
boundary, which would hide a parser bug behind an empty summary. Checked: part
offsets nest; ENVELOPE and BODYSTRUCTURE are one balanced IMAP value; every text of
the summary can be stored (valid UTF-8: no lone surrogates); sections of every
part are bytes or None.
"""

from __future__ import annotations

import contextlib

from postier.filters.text import message_texts
from postier.mime import (
    Part,
    Section,
    SectionText,
    UnknownEncoding,
    binary,
    binary_size,
    bodystructure,
    envelope,
    extract,
    parse,
)
from postier.mime.summary import _summarize

_TEXTS = (
    None,
    SectionText.MIME,
    SectionText.HEADER,
    SectionText.TEXT,
    SectionText.HEADER_FIELDS,
    SectionText.HEADER_FIELDS_NOT,
)


def _check_tree(part: Part, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.header_end <= part.body_start <= part.body_end <= hi
    for child in part.children:
        _check_tree(child, part.body_start, part.body_end)
    if part.message is not None:
        _check_tree(part.message, part.body_start, part.body_end)


def _paths(part: Part, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [prefix, (*prefix, 99)]
    if len(prefix) < 4:
        if part.is_multipart:
            for k, child in enumerate(part.children[:8], 1):
                out += _paths(child.message or child, (*prefix, k))
        else:
            out.append((*prefix, 1))
    return out


def check_imap_value(value: bytes) -> None:
    """One parenthesised IMAP value whose quoted strings and literals are well formed
    and whose parentheses balance."""
    assert value.startswith(b"(") and value.endswith(b")"), value[:80]
    depth = 0
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == 0x22:  # quoted = DQUOTE *QUOTED-CHAR DQUOTE
            i += 1
            while value[i] != 0x22:
                assert value[i] not in (0x0D, 0x0A, 0x00), value
                i += 2 if value[i] == 0x5C else 1
        elif c == 0x7B:  # literal = "{" number "}" CRLF *CHAR8
            close = value.index(b"}\r\n", i)
            i = close + 3 + int(value[i + 1 : close])
            continue
        elif c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            assert depth >= 0 or i == n - 1, value
        else:
            assert c not in (0x0D, 0x0A), value
        i += 1
    assert depth == 0, value


def check(data: bytes) -> None:
    root = parse(data)
    _check_tree(root, 0, len(data))
    check_imap_value(envelope(root))
    check_imap_value(bodystructure(root))
    check_imap_value(bodystructure(root, extensible=False))
    summary = _summarize(data)
    for text in (summary.subject, summary.from_, summary.to, summary.cc, summary.message_id):
        text.encode("utf-8")  # stored as TEXT: a lone surrogate cannot be
    summary.preview.encode("utf-8")
    for path in _paths(root)[:40]:
        for text in _TEXTS:
            if text is SectionText.MIME and not path:
                continue
            got = extract(data, root, Section(path, text, ("Subject", "content-type")))
            assert got is None or isinstance(got, bytes)
        with contextlib.suppress(UnknownEncoding):
            got = binary(data, root, path)
            size = binary_size(data, root, path)
            assert (got is None and size is None) or (got is not None and size == len(got))
    for _ctype, text in message_texts(data):
        text.encode("utf-8")
