"""Address and Domain parsing (RFC 5321 §4.1.2, §4.1.3; RFC 6531)."""

from __future__ import annotations

import pytest

from postier.mail.address import Address, AddressError, Domain

VALID = [
    ("user@example.test", "user", "example.test"),
    ("User.Name+tag@Example.TEST", "User.Name+tag", "example.test"),
    ('"a b"@example.test', "a b", "example.test"),
    ('"a\\"b"@example.test', 'a"b', "example.test"),
    ('"a@b"@example.test', "a@b", "example.test"),
    ("user@[192.0.2.1]", "user", "[192.0.2.1]"),
    ("user@[IPv6:2001:db8::1]", "user", "[ipv6:2001:db8::1]"),
    ("user@example.test.", "user", "example.test"),
    ("j\u00f6rg@b\u00fccher.test", "j\u00f6rg", "xn--bcher-kva.test"),
]


@pytest.mark.parametrize(("text", "local", "domain"), VALID)
def test_valid(text: str, local: str, domain: str) -> None:
    address = Address.parse(text)
    assert (address.localpart, address.domain.ascii) == (local, domain)


INVALID = [
    "user",
    "@example.test",
    "user@",
    "a..b@example.test",
    ".a@example.test",
    "a.@example.test",
    "a b@example.test",
    "user\n@example.test",
    "user@example.test\n",
    "user@-example.test",
    "user@exa_mple.test",
    "user@[192.0.2.256]",
    "user@[1.2.3]",
    "user@[IPv6:zz::1]",
    "user@[foo bar]",
    "x" * 65 + "@example.test",
    "user@" + "a" * 64 + ".test",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid(text: str) -> None:
    with pytest.raises(AddressError):
        Address.parse(text)


def test_non_ascii_needs_smtputf8() -> None:
    with pytest.raises(AddressError):
        Address.parse("j\u00f6rg@example.test", smtputf8=False)
    assert Address.parse("jorg@b\u00fccher.test", smtputf8=False).domain == Domain(
        "xn--bcher-kva.test"
    )


def test_key_and_str() -> None:
    address = Address.parse('"A B"@Example.Test')
    assert address.key == "a b@example.test"
    assert str(address) == '"A B"@example.test'
    assert str(Address.parse("Bob@x.test")) == "Bob@x.test"
    assert Domain.parse("xn--bcher-kva.test").unicode == "b\u00fccher.test"


def test_parses_are_remembered_failures_are_not() -> None:
    """Intake parses the same senders and recipients all day: the same text gives
    the same (immutable) object; text that does not parse raises every time, and
    the smtputf8 flag is part of what is remembered."""
    assert Address.parse("Bob@X.test") is Address.parse("Bob@X.test")
    assert Domain.parse("Example.Test.") is Domain.parse("Example.Test.")
    for _ in range(2):
        with pytest.raises(AddressError):
            Address.parse("a b@x.test")
    Address.parse("j\u00f6rg@example.test")  # remembered with smtputf8=True only
    with pytest.raises(AddressError):
        Address.parse("j\u00f6rg@example.test", smtputf8=False)
