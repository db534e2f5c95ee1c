"""The addr-specs of address-list fields (postier/mime/address.py `addresses`), which
the filters, submission and DKIM signing read, on hostile field values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.headers import HeaderView
from postier.mime.address import _SIMPLE, _parse_tokens, addresses, parse_address_list


def test_addresses() -> None:
    values = ['"A, B" <a@Example.TEST.>, g: c@d.test;', "x"]
    assert addresses(values) == ["a@example.test", "c@d.test"]


@pytest.mark.parametrize("value", [":" * 2000, "(" * 2000 + "a@b.test"])
def test_addresses_of_a_field_the_stdlib_parser_recurses_on(value: str) -> None:
    # found by fuzzing (tests/fuzz/corpus/address): email.utils.getaddresses raised
    # RecursionError, which crashed the DMARC and headers filter stages (451 forever)
    assert addresses([value]) == []
    view = HeaderView.of(f"From: {value}\r\n\r\n".encode())
    assert addresses(view.fields("From")) == []


# --- the fast path for the common forms ------------------------------------------------

_PIECES = ["a", "Bo", "x1", ".", "@", "<", ">", " ", "  ", "\t", '"', "\\", ",", ";", ":"]
_PIECES += ["(", ")", "[", "]", "-", "é", "\r\n", "'", "+", "=", "_"]


@given(st.lists(st.sampled_from(_PIECES), max_size=14))
@settings(max_examples=3000, deadline=None)
def test_the_common_forms_parse_as_the_tokenizer_parses_them(pieces):
    """`parse_address_list` answers simple values without the tokenizer: the same
    addresses, for anything the shortcut takes (and near misses, which it must not)."""
    value = "".join(pieces)
    assert parse_address_list(value) == _parse_tokens(value)


@pytest.mark.parametrize(
    "value",
    [
        "<a@b.test>",
        "a.b@c.test",
        "  Joe   Q  Public <joe.public@example.test>  ",
        '"Public, Joe" <joe@example.test>',
        '"" <joe@example.test>',
        "Joe<joe@example.test>",
        "Joe <joe@example.test",  # unclosed: the tokenizer decides
        "Joe joe@example.test",
        "Joe (home) <joe@example.test>",
        # lists: the shortcut takes each address between commas, or none of them
        "Bob Builder <bob@example.test>, carol@example.test",
        "a@b,c@d,\tE F <e@f> ",
        "a@b, , c@d",
        "a@b,",
        ",a@b",
        '"A, B" <a@b>, c@d',
        "a@b, G: c@d;",
        "a@b, (c) d@e",
        "a@b, <@r:c@d>",
    ],
)
def test_the_shortcut_on_typical_values(value):
    assert parse_address_list(value) == _parse_tokens(value)
    if "," in value:
        return
    simple = value.count("<") == value.count(">") and "(" not in value and "Joe joe" not in value
    assert bool(_SIMPLE.match(value)) == simple


_ITEMS = ["a@b", "Bo <x1@a.b>", " Bo  Q <a@b> ", '"Q" <a@b>', '"Q, R" <a@b>', "\ta@b", "", " "]
_ITEMS += ["é@b", "(c) a@b", "G: a@b;", "<@r:a@b>", "a@b <c@d>", "Bo<a@b", "a.b@c.d", "[x]"]


@given(st.lists(st.sampled_from(_ITEMS), max_size=6), st.sampled_from([",", ", ", " ,", ",,"]))
@settings(max_examples=2000, deadline=None)
def test_lists_of_the_common_forms_parse_as_the_tokenizer_parses_them(items, sep):
    """The shortcut over a list takes each address between commas (or none)."""
    value = sep.join(items)
    assert parse_address_list(value) == _parse_tokens(value)
