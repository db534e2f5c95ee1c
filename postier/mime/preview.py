"""A short plain-text preview of a message, for webmail lists (and RFC 8970 PREVIEW).

Rules:
- The text comes from the first text/plain part that is not an attachment;
  failing that, the first text/html part with markup, scripts and styles
  removed and entities decoded. Encapsulated messages are searched too, after
  the parts of the enclosing message.
- Only the first `max_octets` octets of the encoded body are read, so the
  cost does not grow with the message; transfer encoding and charset are
  undone, whitespace runs become one space, and the result is cut to
  `max_chars` characters.
- Never raises; a message without text gives "".
"""

from __future__ import annotations

import html
import re

from postier.mime.encoding import decode_base64, decode_charset, decode_qp
from postier.mime.parse import Part

DEFAULT_MAX_CHARS = 200
DEFAULT_MAX_OCTETS = 16_384

# The start of a section whose text is not shown. The end is found with str.find
# from there (`_strip_hidden`): the regex ``<(script|...)\b.*?</\1\s*>`` searched
# to the end of the text from every unclosed "<script", quadratic.
_HIDDEN_START = re.compile(r"<(script|style|head|title)\b|<!--", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>?")


def _is_attachment(p: Part) -> bool:
    return p.disposition is not None and p.disposition.lower() == "attachment"


def pick_text_part(root: Part) -> Part | None:
    """The part a preview (or a simple reader) should show."""
    html_part: Part | None = None
    for p in root.walk():
        if p.is_multipart or p.message is not None or _is_attachment(p):
            continue
        ct = p.content_type
        if ct == "text/plain":
            return p
        if ct == "text/html" and html_part is None:
            html_part = p
    return html_part


def _trim_partial_utf8(b: bytes) -> bytes:
    """Drop a UTF-8 sequence cut off at the end (RFC 3629 §3 lead octets)."""
    for back in range(1, min(4, len(b)) + 1):
        c = b[-back]
        if c < 0x80:
            return b
        if c >= 0xC0:
            need = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
            return b[:-back] if need > back else b
    return b


def _strip_hidden(markup: str) -> str:
    """`markup` without scripts, styles, head, title and comments; an unclosed
    comment hides the rest, an unclosed element is left to `_TAG` (the rules of
    the regex this replaces). Linear: each search starts where the last one of
    its kind ended, and a closing tag found missing once is not searched again."""
    lower = markup.lower()
    out: list[str] = []
    pos = 0
    unclosed: set[str] = set()
    while True:
        m = _HIDDEN_START.search(markup, pos)
        if m is None:
            out.append(markup[pos:])
            return "".join(out)
        name = m.group(1)
        if name is None:  # a comment runs to "-->", or to the end
            end = lower.find("-->", m.end())
            out.append(markup[pos : m.start()] + " ")
            if end < 0:
                return "".join(out)
            pos = end + 3
            continue
        name = name.lower()
        end = -1 if name in unclosed else _closing_tag(lower, "</" + name, m.end())
        if end < 0:
            unclosed.add(name)
            out.append(markup[pos : m.end()])
            pos = m.end()
            continue
        out.append(markup[pos : m.start()] + " ")
        pos = end


def _closing_tag(lower: str, closing: str, pos: int) -> int:
    """The index after the first ``closing\\s*>`` at or after `pos`, or -1."""
    while True:
        end = lower.find(closing, pos)
        if end < 0:
            return -1
        after = end + len(closing)
        while after < len(lower) and lower[after].isspace():
            after += 1
        if lower.startswith(">", after):
            return after + 1
        pos = after


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment (good enough for a preview line)."""
    text = _strip_hidden(markup)
    text = _TAG.sub(" ", text)
    return html.unescape(text)


def preview(
    data: bytes,
    root: Part,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_octets: int = DEFAULT_MAX_OCTETS,
) -> str:
    part = pick_text_part(root)
    if part is None:
        return ""
    raw = data[part.body_start : min(part.body_end, part.body_start + max_octets)]
    cte = part.cte
    if cte == "base64":
        raw = decode_base64(raw)
    elif cte == "quoted-printable":
        raw = decode_qp(raw)
    truncated = part.size > max_octets
    if truncated:
        raw = _trim_partial_utf8(raw)
    text = decode_charset(raw, part.param("charset") or "us-ascii")
    if truncated:
        text = text.rstrip("\ufffd")  # a character cut in half at the read limit
    if part.content_type == "text/html":
        text = html_to_text(text)
    text = _squeeze(text, max_chars)
    if len(text) > max_chars:
        text = text[:max_chars].rstrip()
    return text


def _squeeze(text: str, max_chars: int) -> str:
    """``" ".join(text.split())``, or a start of it at least `max_chars` long.

    The words of a start of the text, joined, are a start of all its words
    joined (a word cut at the end is a start of that word), so a growing start
    is tried first: a preview needs a few hundred characters, not a split of
    the 16 KiB read."""
    n = max_chars + 64  # most text: one split of a few hundred characters
    while n < len(text):
        words = " ".join(text[:n].split())
        if len(words) >= max_chars:
            return words
        n *= 4
    return " ".join(text.split())
