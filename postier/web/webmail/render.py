"""A stored message as the reader shows it: headers, text, sanitised HTML, attachments.

Rules:
- Pure and synchronous, bytes in: the routes run it in the web pool, off the event
  loop. Every step is linear in the message (one `mime.parse`, one decode per part
  shown, one nh3 pass).
- Header values are decoded to text (encoded-words undone) and never trusted as
  markup: the templates escape them like any other text.
- The HTML part goes through nh3 (ammonia: an HTML5 parser and an allow-list)
  with no scripts, no event handlers, no forms, no `<base>`, `<meta>` or
  `<style>`, links limited to absolute http, https and mailto URLs, and inline
  `style` limited to properties that take no URL (a value that could fetch or
  run anything drops the attribute). Remote image sources are removed and counted
  (loading one tells the sender the mail was read) unless the reader asked for
  them; `cid:` sources become the URL the caller gives for that part (raster
  image types only: an SVG is a document that can carry script). The result
  is shown in a sandboxed frame whose CSP is `default-src 'none'`, so a hole in
  the sanitiser still runs no script and loads nothing.
- What is shown is bounded, so no message makes the reader (or the browser)
  wait more than linear time: a text or HTML part shows its first `SHOW_MAX`
  characters (`Rendered.clipped` says the rest is in the download), and HTML
  reaches nh3 with at most `DEPTH_MAX` elements open at once (`shallow`):
  html5ever looks through its open elements (and its list of formatting ones)
  at each tag, so 40,000 nested `<div>` (200 KB) cost it 2 s, and a 1 MB run
  of them ~50 s; deeper start tags are dropped, as browsers stop nesting.
- An attachment is any leaf that is not the text or HTML shown: one with a
  filename or `Content-Disposition: attachment`, a non-text part, or an
  encapsulated message (listed whole, not entered). It is addressed by its index
  in the message's depth-first walk, which is the same on every parse of the
  same bytes.
"""

from __future__ import annotations

import contextlib
import html
import re
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import nh3

from postier.mime import Part, parse, parse_address_list
from postier.mime.encoding import (
    UnknownEncoding,
    decode_charset,
    decode_transfer,
    decode_words,
    header_text,
)
from postier.web.webmail import verdicts

#: elements kept (nh3's defaults without image maps; `img` stays so alt text shows)
TAGS = frozenset(nh3.ALLOWED_TAGS - {"area", "map"})
ATTRIBUTES: dict[str, set[str]] = {
    **{k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items() if k not in {"area", "map"}},
    "*": {"style", "title", "lang", "dir"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
#: part types shown as inline (`cid:`) images: raster formats a browser decodes
#: as images only (no SVG: it is a document that can carry script)
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: CSS properties that take no URL (so `url()` and the like cannot appear)
STYLE_PROPERTIES = frozenset(
    {
        "color",
        "background-color",
        "font-family",
        "font-size",
        "font-style",
        "font-weight",
        "text-align",
        "text-decoration",
        "line-height",
        "margin",
        "margin-top",
        "margin-bottom",
        "margin-left",
        "margin-right",
        "padding",
        "padding-top",
        "padding-bottom",
        "padding-left",
        "padding-right",
        "border",
        "border-collapse",
        "border-color",
        "border-style",
        "border-width",
        "width",
        "max-width",
        "height",
        "vertical-align",
        "white-space",
    }
)


#: characters of a text or HTML part shown (`compose.MAX_BODY`: a draft written
#: here shows whole); the rest of a longer part is in its download
SHOW_MAX = 1_000_000
#: elements open at once in the HTML handed to nh3 (Chromium's parser stops
#: nesting at 512)
DEPTH_MAX = 256
#: octets of a shown part's encoded body decoded at most: enough for `SHOW_MAX`
#: characters of 4 octets, quoted-printable (3 a decoded octet) included
DECODE_MAX = 3 * 4 * SHOW_MAX

#: a `style` attribute whose value holds one of these is dropped whole: whatever
#: the property, these fetch (url, image-set), run (IE's expression) or hide a
#: word from this check (backslash escapes)
STYLE_REFUSED = ("url(", "image", "expression", "javascript", "\\", "@")


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    size: int  # octets as transmitted (encoded)


@dataclass
class Rendered:
    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    date: str = ""
    text: str | None = None
    html: str | None = None  # sanitised
    #: the HTML part's text (for quoting when there is no text part)
    html_text: str | None = None
    blocked_images: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    message_id: str = ""
    references: str = ""
    in_reply_to: str = ""
    bcc: str = ""  # only in the user's own copies (Sent, Drafts)
    #: (display name, addr-spec) of Reply-To (else From), To and Cc, for replies
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    to_cc: list[tuple[str, str]] = field(default_factory=list)
    #: the spam filter's reasons (X-Spam-Report, one per rule that scored) and
    #: verdict (X-Spam-Status), and the sender checks of the Authentication-Results
    #: field this server wrote (none without `authserv_id`)
    spam_reasons: list[str] = field(default_factory=list)
    spam_status: str = ""
    checks: list[verdicts.Check] = field(default_factory=list)
    #: the text or HTML shown is the start of a longer part (`SHOW_MAX`)
    clipped: bool = False


def _addresses(root: Part, *names: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in names:
        raw = root.text_header(name)
        if raw is None:
            continue
        for a in parse_address_list(raw):
            if a.host is not None and a.mailbox is not None:
                out.append((" ".join(decode_words(a.name or "").split()), a.addr_spec))
    return out


def _header(root: Part, name: str) -> str:
    raw = root.header(name)
    return header_text(raw) if raw is not None else ""


def _is_attachment(p: Part) -> bool:
    return (p.disposition or "").lower() == "attachment" or bool(p.filename)


def _leaves(root: Part) -> list[tuple[int, Part]]:
    """(index in `root.walk()`, part) of every leaf, encapsulated messages whole."""
    out: list[tuple[int, Part]] = []
    skip: set[int] = set()
    for i, p in enumerate(root.walk()):
        if id(p) in skip:
            if p.message is not None:
                skip.add(id(p.message))
            skip.update(id(c) for c in p.children)
            continue
        if p.is_multipart:
            continue
        if p.message is not None and p is not root:
            out.append((i, p))
            skip.add(id(p.message))
            continue
        out.append((i, p))
    return out


def _sorted_out(root: Part) -> tuple[Part | None, Part | None, list[tuple[Attachment, Part]]]:
    """(the text part shown, the HTML part shown, the attachments with their parts)."""
    text_part: Part | None = None
    html_part: Part | None = None
    attached: list[tuple[Attachment, Part]] = []
    for index, p in _leaves(root):
        inline_text = p.message is None and p.maintype.lower() == "text" and not _is_attachment(p)
        if inline_text and p.content_type == "text/plain" and text_part is None:
            text_part = p
        elif inline_text and p.content_type == "text/html" and html_part is None:
            html_part = p
        else:
            name = p.filename or ("message.eml" if p.message is not None else f"part-{index}")
            attached.append((Attachment(index, name, p.content_type, p.size), p))
    return text_part, html_part, attached


def decoded(data: bytes, p: Part) -> bytes:
    """The body of `p` with its transfer encoding undone (as is when unknown)."""
    body = data[p.body_start : p.body_end]
    try:
        return decode_transfer(body, p.encoding)
    except UnknownEncoding:
        return body


def _shown(data: bytes, p: Part) -> tuple[str, bool]:
    """(the text shown of part `p`, whether it is clipped): at most `SHOW_MAX`
    characters, decoded from at most the octets they can take (`DECODE_MAX` of
    the encoded body: a 40 MB quoted-printable part is not undone whole to show
    its first megabyte)."""
    end = min(p.body_end, p.body_start + DECODE_MAX)
    body = data[p.body_start : end]
    with contextlib.suppress(UnknownEncoding):  # shown as it is
        body = decode_transfer(body, p.encoding)
    charset = p.param("charset")
    # no charset spends more than 4 octets a character
    clipped = end < p.body_end or len(body) > 4 * SHOW_MAX
    text = decode_charset(body[: 4 * SHOW_MAX] if clipped else body, charset)
    if len(text) > SHOW_MAX:
        return text[:SHOW_MAX], True
    return text, clipped


#: what `shallow` reads: a tag's start (its name) or a comment's
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)|<!--")


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


#: elements that have no end tag (never open)
_VOID = _names("area base br col embed hr img input keygen link meta param source track wbr")
#: elements whose content is text up to their end tag (no tags inside)
_RAW_END = {
    name: re.compile(f"</{name}", re.IGNORECASE)
    for name in _names("script style textarea title xmp iframe noembed noframes noscript")
}
#: formatting elements: html5ever keeps them in a list of their own when
#: something else closes them, and reopens them at the next text (a list
#: that holds one of each (tag, attributes) at most three times)
_FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
#: elements that close the list's entries opened inside them
_MARKERS = _names("applet caption marquee object td template th")
#: start tag → the current elements it closes first, in turn (HTML's implied
#: end tags, the ones an unclosed <p>, <li>, <td> or <tr> relies on)
_CLOSES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        _names(
            "address article aside blockquote div dl fieldset footer h1 h2 h3 h4 h5 h6 "
            "header main nav ol pre section table ul"
        ),
        ("p",),
    ),
    "p": ("p",),
    "li": ("p", "li"),
    "dt": ("p", "dt"),
    "dd": ("p", "dd"),
    "option": ("option",),
    "td": ("td", "th"),
    "th": ("td", "th"),
    "tr": ("td", "th", "tr"),
}


def shallow(markup: str, limit: int = DEPTH_MAX) -> str:
    """`markup` without the start tags that would open more than `limit`
    elements at once, nor the end tags that would close them: html5ever's work
    per tag grows with its open elements and its list of formatting elements
    (module rules), so its parse of the result is linear. One pass, each
    character read once; elements are counted as a parser could open them,
    never fewer (a `<p>` or `<li>` closed by the next one counts once; a
    formatting element closed by another's end tag stays counted, as it stays
    in html5ever's list), so only HTML that nests past `limit` loses tags.
    Whatever it leaves is still sanitised by nh3."""
    if markup.count("<") <= limit:
        return markup  # cannot nest deeper
    out: list[str] = []
    stack: list[str] = []
    open_: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    #: the start tags of formatting elements on `stack` (same positions)
    tags: list[str] = []
    #: per marker level, formatting elements closed by another element's end
    #: tag, by their tag text (html5ever's list holds 3 alike at most)
    kept: list[Counter[str]] = [Counter()]
    lingering = 0
    copied = scan = 0

    def pop() -> None:
        nonlocal lingering
        name = stack.pop()
        tags.pop()
        open_[name] -= 1
        if name in _MARKERS and len(kept) > 1:
            lingering -= sum(min(3, n) for n in kept.pop().values())

    while (m := _TAG.search(markup, scan)) is not None:
        name = m.group(2)
        if name is None:  # a comment: up to its end, or the rest of the text
            end = markup.find("-->", m.end())
            if end < 0:
                break
            scan = end + 3
            continue
        # the tag ends at the first ">" (a quoted one too: never later than a parser)
        end = markup.find(">", m.end())
        scan = end = len(markup) if end < 0 else end + 1
        name = name.lower()
        if m.group(1):  # an end tag
            if dropped[name]:
                dropped[name] -= 1
            else:
                if open_[name]:
                    while stack[-1] != name:
                        if stack[-1] in _FORMATTING:
                            counts = kept[-1]
                            counts[tags[-1]] += 1
                            if counts[tags[-1]] <= 3:
                                lingering += 1
                        pop()
                    pop()
                continue
        elif name in _VOID:
            continue
        else:
            for closed in _CLOSES.get(name, ()):
                if stack and stack[-1] == closed:
                    pop()  # <p>a<p>b: the second closes the first
            if len(stack) + lingering < limit:
                stack.append(name)
                tags.append(markup[m.start() : end].lower() if name in _FORMATTING else "")
                open_[name] += 1
                if name in _MARKERS:
                    kept.append(Counter())
                raw = _RAW_END.get(name)
                if raw is not None:  # its text, up to its end tag
                    text_end = raw.search(markup, scan)
                    if text_end is None:
                        break
                    scan = text_end.start()
                continue
            dropped[name] += 1
        out.append(markup[copied : m.start()])
        copied = end
    out.append(markup[copied:])
    return "".join(out)


def sanitise(
    markup: str,
    *,
    remote: bool = False,
    inline: Callable[[str], str | None] | None = None,
) -> tuple[str, int]:
    """(safe HTML, remote image sources removed). With `remote`, http and https
    image sources stay (the reader asked to load them). `inline` maps a `cid:`
    source's Content-ID to the URL that serves that part (None: no such part);
    without it, `cid:` sources go too."""
    blocked = 0

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        nonlocal blocked
        lowered = value.strip().lower()
        if lowered.startswith("cid:"):
            if tag == "img" and attr == "src" and inline is not None:
                return inline(content_id(value.strip()[4:]))
            return None
        if tag == "img" and attr == "src":
            if remote and lowered.startswith(("http://", "https://")):
                return value
            blocked += 1
            return None
        if attr == "style" and any(w in value.lower() for w in STYLE_REFUSED):
            return None
        return value

    clean = nh3.clean(
        shallow(markup),
        tags=set(TAGS),
        attributes=ATTRIBUTES,
        url_schemes=set(URL_SCHEMES | {"cid"}),
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=set(STYLE_PROPERTIES),
        strip_comments=True,
        url_relative="deny",
    )
    return clean, blocked


def content_id(text: str) -> str:
    """A Content-ID as `cid:` URLs and the header compare it (RFC 2392: the
    URL's is %-encoded, the header's in angle brackets)."""
    return urllib.parse.unquote(text.strip().strip("<>").strip()).lower()


def render(
    data: bytes,
    *,
    remote: bool = False,
    inline_url: Callable[[int], str] | None = None,
    authserv_id: str = "",
) -> Rendered:
    """The message as the reader shows it. `remote`: keep remote image sources;
    `inline_url`: the URL of a part by index, for `cid:` images (images only);
    `authserv_id`: this server's, whose Authentication-Results are believed."""
    root = parse(data)
    out = Rendered(
        subject=_header(root, "subject"),
        from_=_header(root, "from"),
        to=_header(root, "to"),
        cc=_header(root, "cc"),
        date=_header(root, "date"),
        message_id=_header(root, "message-id"),
        references=_header(root, "references"),
        in_reply_to=_header(root, "in-reply-to"),
        bcc=_header(root, "bcc"),
        reply_to=_addresses(root, "reply-to") or _addresses(root, "from"),
        to_cc=_addresses(root, "to", "cc"),
        spam_reasons=[r.strip() for r in _header(root, "x-spam-report").split("* ") if r.strip()],
        spam_status=_header(root, "x-spam-status"),
        checks=verdicts.checks(
            (
                value.decode("utf-8", "replace")
                for name, value in root.fields
                if name == "authentication-results"
            ),
            authserv_id,
        ),
    )
    text_part, html_part, attached = _sorted_out(root)
    out.attachments = [a for a, _ in attached]
    if text_part is not None:
        out.text, clipped = _shown(data, text_part)
        out.clipped |= clipped
    if html_part is not None:
        markup, clipped = _shown(data, html_part)
        out.clipped |= clipped
        inline = None
        if inline_url is not None:
            leaves = dict(_leaves(root))
            cids: dict[str, int] = {}
            for index, p in leaves.items():
                cid = p.text_header("content-id")
                if cid and p.content_type in INLINE_IMAGES:
                    cids.setdefault(content_id(cid), index)

            def inline(cid: str) -> str | None:
                index = cids.get(cid)
                return None if index is None or inline_url is None else inline_url(index)

        out.html, out.blocked_images = sanitise(markup, remote=remote, inline=inline)
        out.html_text = html_to_text(out.html)
    return out


#: elements after which the text of an HTML part breaks a line
_BREAKS = ("<br", "</p>", "</div>", "</li>", "</tr>", "</h1>", "</h2>", "</h3>", "</blockquote>")


def html_to_text(clean_html: str) -> str:
    """The text of sanitised HTML (for quoting): line breaks where blocks end,
    every tag dropped by nh3, entities undone. Linear; the result is text, shown
    escaped like any other."""
    marked = clean_html
    for tag in _BREAKS:
        marked = marked.replace(tag, "\n" + tag)
    text = html.unescape(nh3.clean(marked, tags=set(), strip_comments=True))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def images(data: bytes) -> dict[int, Part]:
    """The parts `inline_image` serves (types of `INLINE_IMAGES`), by index: one
    parse serves every image of a message."""
    return {i: p for i, p in _leaves(parse(data)) if p.content_type in INLINE_IMAGES}


def inline_image(
    data: bytes, index: int, parts: dict[int, Part] | None = None
) -> tuple[str, bytes] | None:
    """(content type, decoded octets) of the part at `index` when it is an image
    type of `INLINE_IMAGES`, else None. `parts`: `images(data)`, when known."""
    p = (images(data) if parts is None else parts).get(index)
    if p is None:
        return None
    return p.content_type, decoded(data, p)


def attachment(data: bytes, index: int) -> tuple[str, bytes] | None:
    """(filename, decoded octets) of the attachment at `index`, None if none is."""
    parts = dict(_leaves(parse(data)))
    p = parts.get(index)
    if p is None:
        return None
    name = p.filename or ("message.eml" if p.message is not None else f"part-{index}")
    return name, decoded(data, p)


def attachments(data: bytes) -> list[tuple[Attachment, bytes]]:
    """Every attachment of the message (as `render` lists them) with its decoded
    octets, from one parse: a forward carries them all, and one `attachment`
    call each parsed the message once per attachment (10,000 parts: 10,000
    parses)."""
    _, _, attached = _sorted_out(parse(data))
    return [(a, decoded(data, p)) for a, p in attached]


def frame_document(clean_html: str) -> str:
    """The sandboxed frame's page around sanitised HTML."""
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        "<style>body{font-family:system-ui,sans-serif;margin:0.5rem;color:#111;"
        "overflow-wrap:anywhere}img{max-width:100%}</style>"
        f"</head><body>{clean_html}</body></html>"
    )
