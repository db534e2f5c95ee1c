"""The reader's rendering of stored bytes: decoded headers, the text part, the
HTML part through nh3, attachments by walk index."""

from __future__ import annotations

import pytest

from postier.web.webmail.render import (
    DEPTH_MAX,
    SHOW_MAX,
    attachment,
    attachments,
    render,
    sanitise,
    shallow,
)

MIXED = (
    b"From: =?utf-8?q?Ren=C3=A9?= <rene@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
    b"--c\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve\r\n"
    b"--c\r\nContent-Type: text/html\r\n\r\n<p onclick=x>rich</p>\r\n"
    b"--c--\r\n"
    b"--b\r\nContent-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename=a.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
    b"--b--\r\n"
)


def test_headers_text_html_and_attachments() -> None:
    r = render(MIXED)
    assert (r.subject, r.from_, r.to) == ("café", "René <rene@example.test>", "alice@example.test")
    assert r.text is not None and r.text.strip() == "naïve"
    assert r.html is not None and r.html.strip() == "<p>rich</p>"
    # the encapsulated message is one attachment, not entered for text
    assert [(a.filename, a.content_type) for a in r.attachments] == [
        ("a.pdf", "application/pdf"),
        ("message.eml", "message/rfc822"),
    ]
    assert attachment(MIXED, r.attachments[0].index) == ("a.pdf", b"hello")
    name, body = attachment(MIXED, r.attachments[1].index) or ("", b"")
    assert name == "message.eml" and body.startswith(b"Subject: inner")
    assert attachment(MIXED, 0) is None  # the multipart root is no attachment
    assert attachment(MIXED, 999) is None


def test_a_message_of_one_non_text_part_is_an_attachment() -> None:
    r = render(b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO\r\n")
    assert r.text is None and r.html is None
    assert [a.content_type for a in r.attachments] == ["image/png"]


@pytest.mark.parametrize(
    ("markup", "kept", "gone"),
    [
        ("<script>x()</script><p>a</p>", "<p>a</p>", "script"),
        ("<img src=x onerror=x()>", "<img>", "onerror"),
        ('<a href="javascript:x()">a</a>', "<a", "javascript"),
        ('<a href="data:text/html,x">a</a>', "<a", "data:"),
        ('<a href="/relative">a</a>', "<a", "relative"),
        ('<a href="https://example.org/">a</a>', 'href="https://example.org/"', "onclick"),
        ("<svg onload=x()><circle/></svg>", "", "svg"),
        ('<base href="https://evil.example/">', "", "base"),
        ('<form action="https://evil.example/"><input></form>', "", "form"),
        ('<meta http-equiv=refresh content="0;url=https://evil.example/">', "", "meta"),
        ("<style>body{background:url(https://evil.example/)}</style>", "", "evil"),
        ('<p style="color:red">a</p>', 'style="color:red"', "url"),
        ('<p style="color:red;background:url(https://evil.example/)">a</p>', "<p>a</p>", "evil"),
        ('<p style="width:expression(x())">a</p>', "<p>a</p>", "expression"),
        ('<p style="color:\\72 ed">a</p>', "<p>a</p>", "style"),
    ],
)
def test_sanitise(markup: str, kept: str, gone: str) -> None:
    clean, _ = sanitise(markup)
    assert kept in clean
    assert gone not in clean


def test_remote_images_are_counted_and_removed() -> None:
    clean, blocked = sanitise('<img src="https://t.example/p.gif" alt=x><img src="http://a/b">')
    assert blocked == 2
    assert "src" not in clean and 'alt="x"' in clean


def _depth(clean: str) -> int:
    """Elements open at once in nh3's output (it closes every element it opens)."""
    depth = most = 0
    for piece in clean.split("<")[1:]:
        name = piece.split(">", 1)[0].split()[0] if piece else ""
        if name.startswith("/"):
            depth -= 1
        elif name and name not in ("br", "hr", "img", "wbr") and not name.endswith("/"):
            depth += 1
            most = max(most, depth)
    return most


# html5ever's work per tag grows with its open elements and its list of
# formatting elements: each of these took it 1-10 s unbounded
DEEP = {
    "nested divs": "<div>" * 30000 + "x" + "</div>" * 30000,
    "unclosed blockquotes": "<blockquote>x" * 30000,
    "lists in lists": "<ul><li>x" * 15000,
    "formatting, distinct attributes": "".join(f"<b id=b{i}>x" for i in range(30000)),
    "formatting closed by others": "".join(f"<div><i title=t{i}></div>x" for i in range(30000)),
    "misnested": "<b><div>" * 15000 + "x",
}


@pytest.mark.parametrize("markup", DEEP.values(), ids=DEEP.keys())
def test_deep_html_is_flattened_before_nh3(markup: str) -> None:
    clean, _ = sanitise(markup)
    assert _depth(clean) <= DEPTH_MAX + 4
    assert "x" in clean


# HTML that leaves its <p>, <li>, <td> and <tr> to the next one, or repeats one
# formatting element, is not deep: none of it is lost
SLOPPY = {
    "paragraphs": "<p>para" * 5000,
    "table": "<table>" + "<tr><td>a<td><font face=arial>b</font>" * 5000 + "</table>",
    "list": "<ul>" + "<li><p>a<li>b<div>c</div>" * 5000 + "</ul>",
    "font left open in divs": "<div><font face=arial>x</div>" * 5000,
    "a script of tags": "<script>" + "<div>" * 5000 + "</script>" + "<div>y</div>",
}


@pytest.mark.parametrize("markup", SLOPPY.values(), ids=SLOPPY.keys())
def test_shallow_keeps_html_that_is_not_deep(markup: str) -> None:
    assert shallow(markup) == markup


def test_long_parts_show_their_start_and_say_so() -> None:
    head = (
        b"From: a@example.test\r\nSubject: long\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    short = render(head + "é".encode() * 1000)
    assert short.text is not None and not short.clipped
    # one line, no line end: 3 MB of text, shown as its first SHOW_MAX characters
    long = render(head + "é".encode() * 1_500_000)
    assert long.clipped and long.text == "é" * SHOW_MAX
    html = render(
        head.replace(b"text/plain", b"text/html") + b"<p>" + b"word " * (SHOW_MAX // 4) + b"</p>"
    )
    assert html.clipped and html.html is not None and html.html.startswith("<p>word")


def test_a_long_part_is_decoded_only_as_far_as_it_is_shown(monkeypatch) -> None:
    """Showing the first `SHOW_MAX` characters of a 40 MB quoted-printable part
    does not undo all 40 MB (each view of it held a web thread 10 s)."""
    from postier.web.webmail import render as module

    seen: list[int] = []
    real = module.decode_transfer

    def spy(body: bytes, encoding: str | None) -> bytes:
        seen.append(len(body))
        return real(body, encoding)

    monkeypatch.setattr(module, "decode_transfer", spy)
    body = b"caf=C3=A9 " * (module.DECODE_MAX // 10 + 1000)
    r = render(
        b"Subject: long\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body
    )
    assert seen == [module.DECODE_MAX]
    assert r.clipped and r.text is not None and r.text.startswith("café café")


def test_every_attachment_from_one_parse() -> None:
    r = render(MIXED)
    got = attachments(MIXED)
    assert [a for a, _ in got] == r.attachments
    assert [(a.filename, body) for a, body in got] == [
        attachment(MIXED, a.index) for a in r.attachments
    ]
