"""The addr-specs of address-list fields (postier/mime/address.py `addresses`), which
the filters, submission and DKIM signing read, on hostile field values."""

from __future__ import annotations

import pytest

from postier.mail.headers import HeaderView
from postier.mime.address import addresses


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
