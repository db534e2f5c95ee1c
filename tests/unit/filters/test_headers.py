"""The header rules answer the same from intake's parse (`Header`, whose values
are decoded once for every reader) as from any `HeaderView`, and the To:/Cc:
count is parsed only when its cheap upper bound could pass `max_to`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.filters.headers import HeadersStage, most_addresses
from postier.filters.spam import Weights
from postier.mail.headers import HeaderView
from postier.mime.address import addresses
from postier.mime.message import Header, ParsedMessage


async def _never_local(domain: str) -> bool:
    return False


def stage(max_to: int = 50) -> HeadersStage:
    return HeadersStage(Weights(), is_local_domain=_never_local, max_to=max_to)


def many(n: int) -> str:
    return ", ".join(f"u{i}@example.test" for i in range(n))


HEADERS = [
    "From: <a@example.test>\r\nTo: <b@example.test>\r\nDate: x\r\nMessage-Id: <1@x>\r\n",
    "Subject: nothing else\r\n",
    "FROM: A <a@Example.TEST>\r\nfrom: b@other.test\r\nMESSAGE-ID: <1@x>\r\n",
    "From: a@example.test,\r\n c@third.test\r\nCc: <d@example.test>\r\nDate: x\r\n",
    "From : spaced@example.test\r\nTo:\r\n\t<b@example.test>\r\n",
    f"From: a@example.test\r\nTo: {many(30)}\r\nCc: {many(20)}\r\n",
    f"From: a@example.test\r\nTo: {many(30)}\r\nCc: {many(21)}\r\n",
    f"From: a@example.test\r\nTo: {many(51)}\r\n",
    "From: a@example.test\r\nTo: undisclosed-recipients:;\r\n",
    'From: "x, y" <a@example.test>\r\nTo: ' + ", ".join(['"q, r" <b@x.test>'] * 30) + "\r\n",
    "From: a@example.test\r\nTo: group: " + many(60) + ";\r\n",
    "not a field\r\nFrom: <a@example.test>\r\n continued\r\nTo: (comment, here) b@x.test\r\n",
]


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("max_to", [0, 1, 50])
def test_the_rules_read_intake_parse_as_any_header_view(header, max_to):
    data = (header + "\r\nbody\r\n").encode()
    parsed = ParsedMessage.of(data)
    assert isinstance(parsed.header, Header)
    plain = HeaderView.of(data)
    assert not isinstance(plain, Header)
    s = stage(max_to)
    assert s._header(parsed.header) == s._header(plain)


def test_too_many_recipients_is_still_counted():
    data = f"From: a@x.test\r\nTo: {many(30)}\r\nCc: {many(21)}\r\n\r\n".encode()
    out, froms = stage()._header(ParsedMessage.of(data).header)
    assert [(v.rule, v.detail) for v in out] == [
        ("MISSING_DATE", "no Date: header"),
        ("MISSING_MESSAGE_ID", "no Message-ID: header"),
        ("TO_TOO_MANY", "51 addresses in To:/Cc:"),
    ]
    assert froms == ["x.test"]


# the characters that make address lists interesting: separators, quotes,
# comments, angle brackets, groups, escapes, folding white space
_ALPHABET = st.sampled_from([*'ab@.,;:<>()"\\ \t', "x@y.test", "Name <n@d.test>", "é"])


@given(st.lists(st.lists(_ALPHABET, max_size=30).map("".join), max_size=4))
def test_the_bound_is_never_below_the_count(values):
    assert most_addresses(values) >= len(addresses(values))


@given(
    st.lists(
        st.tuples(st.sampled_from(["To", "Cc", "cc", "From"]), st.lists(_ALPHABET, max_size=20)),
        max_size=4,
    ),
    st.integers(0, 4),
)
def test_the_rules_agree_on_any_recipient_fields(fields, max_to):
    # intake's path counts separators in the raw bytes; the other decodes first
    header = "".join(f"{name}: {''.join(value)}\r\n" for name, value in fields)
    data = (header + "\r\nbody\r\n").encode()
    s = stage(max_to)
    assert s._header(ParsedMessage.of(data).header) == s._header(HeaderView.of(data))
