"""Mail addresses as types: `Domain`, `Address`; parsing per RFC 5321 §4.1.2.

In `mail` because SMTP, the store, logins, the CLI and the operator tools all
name addresses and domains with these types.

Rules:
- `Address.parse` accepts the RFC 5321 ``Mailbox`` form (dot-string or quoted
  local part, domain or address literal) and, with `smtputf8=True`, UTF-8 local
  parts and U-labels (RFC 6531). Anything else raises `AddressError`.
- Domains compare in their ASCII (A-label), lower-case form without a trailing dot.
- Source routes (``@a,@b:user@c``) are stripped by the SMTP core before this
  (RFC 5321 §4.1.1.3: accept and ignore); ``%`` and ``!`` in a local part are plain
  characters here, never routing.
- The last few thousand texts parsed are remembered (both types are immutable):
  a server parses the same senders, recipients and domains all day. Text that
  does not parse is not remembered; it raises each time.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

# RFC 5321: atext per RFC 5322 §3.2.3
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
# (\Z, not $: "$" would accept a trailing newline)
_DOT_STRING = re.compile(rf"^[{_ATEXT}]+(\.[{_ATEXT}]+)*\Z")
_DOT_STRING_UTF8 = re.compile(rf"^([{_ATEXT}]|[^\x00-\x7f])+(\.([{_ATEXT}]|[^\x00-\x7f])+)*\Z")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_QTEXT_SMTP = re.compile(r"^(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*\Z")
# RFC 5321 §4.1.3: General-address-literal = Standardized-tag ":" 1*dcontent
_GENERAL_LITERAL = re.compile(r"^[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+\Z")


def _check_literal(inner: str) -> None:
    """RFC 5321 §4.1.3 address-literal contents (inside the brackets)."""
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        elif ":" in inner:
            if not _GENERAL_LITERAL.match(inner):
                raise AddressError(f"bad address literal [{inner}]")
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        raise AddressError(f"bad address literal [{inner}]") from None


class AddressError(ValueError):
    """Not a valid address; the message says why."""


@dataclass(frozen=True, order=True)
class Domain:
    ascii: str  # A-labels, lower case, no trailing dot; or "[1.2.3.4]" literal

    @classmethod
    def parse(cls, text: str) -> Domain:
        if cls is Domain:
            return _domain(text)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> Domain:
        t = text.strip()
        if t.endswith("."):
            t = t[:-1]
        if not t:
            raise AddressError("empty domain")
        if t.startswith("[") and t.endswith("]"):
            _check_literal(t[1:-1])
            return cls(t.lower())
        try:
            a = t.encode("idna").decode("ascii") if not t.isascii() else t
        except UnicodeError:
            raise AddressError(f"bad internationalised domain {text!r}") from None
        a = a.lower()
        if len(a) > 253:
            raise AddressError("domain too long")
        labels = a.split(".")
        if any(not _LABEL.match(label) for label in labels):
            raise AddressError(f"bad domain {text!r}")
        return cls(a)

    @property
    def unicode(self) -> str:
        if self.ascii.startswith("["):
            return self.ascii
        try:
            return self.ascii.encode("ascii").decode("idna")
        except UnicodeError:
            return self.ascii

    def __str__(self) -> str:
        return self.ascii


@dataclass(frozen=True, order=True)
class Address:
    localpart: str  # as given (unquoted form, case kept)
    domain: Domain

    @classmethod
    def parse(cls, text: str, *, smtputf8: bool = True) -> Address:
        if cls is Address:
            return _address(text, smtputf8)
        return cls._parse(text, smtputf8)

    @classmethod
    def _parse(cls, text: str, smtputf8: bool) -> Address:
        if len(text) > 320:
            raise AddressError("address too long")
        at = text.rfind("@")
        if at <= 0:
            raise AddressError(f"no domain in {text!r}")
        local, dom = text[:at], text[at + 1 :]
        if local.startswith('"') and local.endswith('"') and len(local) >= 2:
            inner = local[1:-1]
            if not _QTEXT_SMTP.match(inner) and not (smtputf8 and not inner.isascii()):
                raise AddressError(f"bad quoted local part in {text!r}")
            local = re.sub(r"\\(.)", r"\1", inner)
        else:
            pattern = _DOT_STRING_UTF8 if smtputf8 else _DOT_STRING
            if not pattern.match(local):
                raise AddressError(f"bad local part in {text!r}")
        if len(local.encode()) > 64:
            raise AddressError("local part too long")
        if dom != dom.strip():  # Domain.parse trims for config/CLI text; a mailbox may not
            raise AddressError(f"space in domain of {text!r}")
        return cls(local, Domain.parse(dom))

    @functools.cached_property
    def key(self) -> str:
        """Lookup key: lower-cased local part @ ASCII domain."""
        return f"{self.localpart.lower()}@{self.domain.ascii}"

    @functools.cached_property
    def _text(self) -> str:
        local = self.localpart
        if not _DOT_STRING_UTF8.match(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain.ascii}"

    def __str__(self) -> str:
        return self._text


@functools.lru_cache(maxsize=4096)
def _domain(text: str) -> Domain:
    return Domain._parse(text)


@functools.lru_cache(maxsize=4096)
def _address(text: str, smtputf8: bool) -> Address:
    return Address._parse(text, smtputf8)
