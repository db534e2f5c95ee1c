"""SPF: RFC 7208 `check_host()`, async, on postier's resolver.

Why hand-written: pyspf is synchronous and bundles its own DNS layer (pydns or
dnspython, used blocking, with its own cache); the intake pipeline needs an async
evaluator that uses `postier.dns` (one resolver, one TTL cache, the fake resolver
in tests, ``dns.offline``). The evaluator is proven on the official RFC 7208 test
suite (tests/unit/mailauth/test_spf_suite.py).

Rules:
- The whole record is parsed before any mechanism is evaluated, so a syntax error
  anywhere is a permerror (RFC 7208 §4.6), even after a matching mechanism.
- Records are TXT only (RFC 7208 §3.1, §4.4); a record is selected when it starts
  with "v=spf1" (case-insensitive) followed by a space or its end (§4.5). None →
  "none"; more than one → permerror; non-ASCII in the record → permerror (§3.1).
- DNS limits (§4.6.4), each a field of `SpfLimits`: at most 10 terms that cause
  lookups (include, a, mx, ptr, exists, redirect) per check, counted when
  evaluated and across includes and redirects; at most 2 void lookups (NXDOMAIN
  or no records); an mx mechanism with more than 10 MX records is a permerror; a
  ptr mechanism (and %{p}) looks at the first 10 PTR names only; the whole check
  is bounded in time (temperror after `timeout`, §4.6.4 asks at least 20 s).
- DNS errors other than NXDOMAIN/no-data give temperror (§5), except inside ptr
  and %{p} (§5.5: skip and go on) and exp= (§6.2: use the default explanation).
- An IPv4-mapped IPv6 client address is an IPv4 address (§5, §5.6).
- Macros (§7): letters s l o d i p v h, plus c r t in explanation text only;
  transformers (digits, "r"), delimiters, upper-case letters URL-encode with
  upper-case hex (RFC 3986 unreserved kept). "%{i}" of an IPv6 address gives
  upper-case nibbles, as the official suite expects (DNS ignores case).
  An expanded domain over 253 characters loses labels on the left (§7.3).
- A malformed <domain> (empty or over-long label, single label, address literal)
  gives "none" (§4.3); a sender without local part is "postmaster@domain" (§4.3).
- Only a "fail" result has an explanation: the exp= text of the record that
  produced it (an include's exp= is never used, a redirect's is, §6.2), or the
  default explanation.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from postier.dns.resolver import DnsError, NoAnswer, NXDomain, Resolver, TempFail

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Status(enum.StrEnum):
    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"  # noqa: S105 (an SPF result, not a password)
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


# RFC 7208 §4.6.2
QUALIFIERS = {"+": Status.PASS, "-": Status.FAIL, "~": Status.SOFTFAIL, "?": Status.NEUTRAL}

DEFAULT_EXPLANATION = "%{c} is not allowed to send mail for %{o}"


@dataclass(frozen=True)
class SpfLimits:
    lookups: int = 10  # RFC 7208 §4.6.4: terms causing DNS lookups
    void_lookups: int = 2  # RFC 7208 §4.6.4: NXDOMAIN / empty answers
    mx_names: int = 10  # RFC 7208 §4.6.4: MX records per mx mechanism
    ptr_names: int = 10  # RFC 7208 §4.6.4: PTR names looked at
    timeout: float = 20.0  # RFC 7208 §4.6.4: whole evaluation, seconds


@dataclass(frozen=True)
class SpfResult:
    status: Status
    domain: str  # the <domain> checked
    sender: str  # the <sender> as used ("postmaster@..." when it had no local part)
    ip: str
    helo: str
    identity: str = "mailfrom"  # "mailfrom" or "helo" (RFC 7208 §9.1)
    receiver: str = "unknown"
    mechanism: str = ""  # the directive that matched, as written ("" for none/default)
    explanation: str = ""  # fail only: the text for the 5xx reply (RFC 7208 §6.2)
    problem: str = ""  # permerror/temperror: what went wrong
    lookups: int = 0  # DNS-querying terms evaluated
    void_lookups: int = 0

    @property
    def result(self) -> Status:
        return self.status

    def comment(self) -> str:
        """The human comment of Received-SPF (RFC 7208 §9.1)."""
        who, ip, s = self.receiver, self.ip, self.sender
        text = {
            Status.PASS: f"{who}: domain of {s} designates {ip} as permitted sender",
            Status.FAIL: f"{who}: domain of {s} does not designate {ip} as permitted sender",
            Status.SOFTFAIL: f"{who}: transitioning domain of {s} does not designate {ip} "
            "as permitted sender",
            Status.NEUTRAL: f"{who}: {ip} is neither permitted nor denied by domain of {s}",
            Status.NONE: f"{who}: domain of {s} does not designate permitted sender hosts",
            Status.PERMERROR: f"{who}: permanent error in processing domain of {s}: {self.problem}",
            Status.TEMPERROR: f"{who}: temporary error in processing domain of {s}: {self.problem}",
        }[self.status]
        return _ctext(text)

    def received_spf(self) -> str:
        """The value of a Received-SPF header field (RFC 7208 §9.1), unfolded."""
        pairs = [
            ("client-ip", self.ip),
            ("envelope-from", self.sender),
            ("helo", self.helo),
            ("receiver", self.receiver),
            ("identity", self.identity),
        ]
        if self.mechanism:
            pairs.append(("mechanism", self.mechanism))
        if self.problem:
            pairs.append(("problem", self.problem))
        kv = "; ".join(f"{k}={_kv_value(v)}" for k, v in pairs)
        return f"{self.status} ({self.comment()}) {kv};"

    def auth_results(self) -> str:
        """The method part of Authentication-Results (RFC 8601 §2.7.4, RFC 7208 §9.2)."""
        prop = "smtp.helo" if self.identity == "helo" else "smtp.mailfrom"
        return f"spf={self.status} {prop}={_kv_value(self.domain)}"


# (\Z, not $: "$" would accept a trailing newline)
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def _kv_value(value: str) -> str:
    # RFC 7208 §9.1: value = dot-atom / quoted-string; RFC 5322 §3.2.4: no controls in a
    # quoted-string (a TXT record may hold any octet: it must not break the field)
    if _DOT_ATOM.match(value):
        return value
    value = _CONTROLS.sub("?", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ctext(text: str) -> str:
    # RFC 5322 §3.2.2: parentheses and backslash inside a comment are quoted-pairs
    return re.sub(r"([()\\])", r"\\\1", "".join(c if c.isprintable() else "?" for c in text))


# -- errors ------------------------------------------------------------------------


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


# -- macros (RFC 7208 §7) ------------------------------------------------------------


@dataclass(frozen=True)
class _Macro:
    letter: str  # lower case
    url_escape: bool  # the letter was upper case (§7.3)
    digits: int | None
    reverse: bool
    delimiters: str  # "" = "."


@dataclass(frozen=True)
class _Escape:
    text: str  # "%%" → "%", "%_" → " ", "%-" → "%20" (§7.1)


_Token = str | _Macro | _Escape
_MacroString = tuple[_Token, ...]

_MACRO = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")
_DOMAIN_LETTERS = frozenset("slodipvh")
_EXP_LETTERS = _DOMAIN_LETTERS | frozenset("crt")


def parse_macro_string(text: str, *, explanation: bool = False) -> _MacroString:
    """Tokens of a macro-string; `explanation` allows SP and the letters c, r, t.

    macro-string  = *( macro-expand / macro-literal )
    macro-expand  = ( "%{" macro-letter transformers *delimiter "}" ) / "%%" / "%_" / "%-"
    macro-literal = %x21-24 / %x26-7E   ; explain-string adds SP
    """
    tokens: list[_Token] = []
    literal: list[str] = []
    letters = _EXP_LETTERS if explanation else _DOMAIN_LETTERS
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            nxt = text[i + 1 : i + 2]
            if nxt in ("%", "_", "-"):
                if literal:
                    tokens.append("".join(literal))
                    literal = []
                tokens.append(_Escape({"%": "%", "_": " ", "-": "%20"}[nxt]))
                i += 2
                continue
            m = _MACRO.match(text, i)
            if not m:
                raise _PermError(f"invalid macro at {text[i : i + 8]!r}")  # RFC 7208 §7.1
            letter, digits, rev, delims = m.groups()
            if letter.lower() not in letters:
                raise _PermError(f"macro letter {letter!r} not allowed here")  # RFC 7208 §7.2
            if digits and int(digits) == 0:
                raise _PermError("macro digit transformer must be nonzero")  # RFC 7208 §7.3
            if literal:
                tokens.append("".join(literal))
                literal = []
            tokens.append(
                _Macro(
                    letter.lower(),
                    letter.isupper(),
                    int(digits) if digits else None,
                    bool(rev),
                    delims,
                )
            )
            i = m.end()
            continue
        if not ("\x21" <= c <= "\x7e" or (explanation and c == " ")):
            raise _PermError(f"invalid character {c!r}")
        literal.append(c)
        i += 1
    if literal:
        tokens.append("".join(literal))
    return tuple(tokens)


def _is_toplabel(label: str) -> bool:
    """toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )

    Checked by hand: the regex of that ABNF backtracked quadratically (its
    alternatives overlap) on a long label from a hostile record."""
    if not label.isascii() or not label.replace("-", "").isalnum():
        return False
    if "-" in label:
        return label[0] != "-" and label[-1] != "-"
    return any(c.isalpha() for c in label)


def parse_domain_spec(text: str) -> _MacroString:
    """domain-spec = macro-string domain-end
    domain-end  = ( "." toplabel [ "." ] ) / macro-expand   (RFC 7208 §7.1)"""
    if not text:
        raise _PermError("empty domain-spec")
    tokens = parse_macro_string(text)
    last = tokens[-1]
    if isinstance(last, str):
        tail = last[:-1] if last.endswith(".") else last
        _, dot, toplabel = tail.rpartition(".")
        if not dot or not _is_toplabel(toplabel):
            raise _PermError(f"invalid domain-spec {text!r}")
    return tokens


# -- records (RFC 7208 §4.6.1, §5, §6) -----------------------------------------------


@dataclass(frozen=True)
class _Directive:
    text: str
    qualifier: Status
    name: str  # all include a mx ptr ip4 ip6 exists
    domain: _MacroString | None = None
    cidr4: int = 32
    cidr6: int = 128
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None


@dataclass(frozen=True)
class _Record:
    directives: tuple[_Directive, ...]
    redirect: _MacroString | None = None
    exp: _MacroString | None = None


_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.S)
_DUAL_CIDR = re.compile(r"(:.*?)?(?:/([0-9]+))?(?://([0-9]+))?", re.S)
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4_NETWORK = re.compile(rf"{_QNUM}\.{_QNUM}\.{_QNUM}\.{_QNUM}")
_CIDR = re.compile(r"0|[1-9][0-9]*")


def _cidr(text: str | None, maximum: int, default: int) -> int:
    if text is None:
        return default
    # ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT); ip6: 0*2DIGIT (RFC 7208 §5.6)
    if not _CIDR.fullmatch(text) or int(text) > maximum:
        raise _PermError(f"invalid CIDR length /{text}")
    return int(text)


def parse_record(text: str) -> _Record:
    """Parse a whole SPF record ("v=spf1 ..."); _PermError on any syntax error."""
    assert text[:6].lower() == "v=spf1"
    directives: list[_Directive] = []
    redirect: _MacroString | None = None
    exp: _MacroString | None = None
    for term in text[6:].split(" "):  # terms = *( 1*SP ( directive / modifier ) )
        if not term:
            continue
        mod = _MODIFIER.fullmatch(term)
        if mod:
            name, value = mod.group(1).lower(), mod.group(2)
            if name == "redirect":
                if redirect is not None:
                    raise _PermError("redirect= appears twice")  # RFC 7208 §6
                redirect = parse_domain_spec(value)
            elif name == "exp":
                if exp is not None:
                    raise _PermError("exp= appears twice")  # RFC 7208 §6
                exp = parse_domain_spec(value)
            else:
                parse_macro_string(value)  # unknown-modifier = name "=" macro-string
            continue
        directives.append(_parse_directive(term))
    return _Record(tuple(directives), redirect, exp)


def _parse_directive(term: str) -> _Directive:
    qualifier = Status.PASS
    rest = term
    if rest[:1] in QUALIFIERS:
        qualifier, rest = QUALIFIERS[rest[0]], rest[1:]
    m = re.match(r"[A-Za-z][A-Za-z0-9]*", rest)
    name = m.group(0).lower() if m else ""
    arg = rest[len(name) :]
    if name == "all":
        if arg:
            raise _PermError(f"invalid all mechanism {term!r}")  # RFC 7208 §5.1
        return _Directive(term, qualifier, name)
    if name in ("include", "exists"):
        if not arg.startswith(":"):
            raise _PermError(f"{name} needs a domain: {term!r}")  # RFC 7208 §5.2, §5.7
        return _Directive(term, qualifier, name, parse_domain_spec(arg[1:]))
    if name in ("a", "mx"):
        cm = _DUAL_CIDR.fullmatch(arg)
        if not cm:
            raise _PermError(f"invalid {name} mechanism {term!r}")  # RFC 7208 §5.3, §5.4
        dom, c4, c6 = cm.groups()
        domain = parse_domain_spec(dom[1:]) if dom is not None else None
        return _Directive(term, qualifier, name, domain, _cidr(c4, 32, 32), _cidr(c6, 128, 128))
    if name == "ptr":
        if arg and not arg.startswith(":"):
            raise _PermError(f"invalid ptr mechanism {term!r}")  # RFC 7208 §5.5
        return _Directive(term, qualifier, name, parse_domain_spec(arg[1:]) if arg else None)
    if name in ("ip4", "ip6"):
        if not arg.startswith(":"):
            raise _PermError(f"{name} needs an address: {term!r}")  # RFC 7208 §5.6
        net, _, length = arg[1:].partition("/")
        if name == "ip4":
            if not _IP4_NETWORK.fullmatch(net):
                raise _PermError(f"invalid ip4 address in {term!r}")
            bits = _cidr(length if "/" in arg else None, 32, 32)
        else:
            if not net or "%" in net or "/" in length:
                raise _PermError(f"invalid ip6 address in {term!r}")
            try:
                ipaddress.IPv6Address(net)
            except ValueError:
                raise _PermError(f"invalid ip6 address in {term!r}") from None
            bits = _cidr(length if "/" in arg else None, 128, 128)
        network = ipaddress.ip_network(f"{net}/{bits}", strict=False)
        return _Directive(term, qualifier, name, network=network)
    raise _PermError(f"unknown mechanism {term!r}")  # RFC 7208 §4.6.1


# -- evaluation --------------------------------------------------------------------------


@dataclass
class _Check:
    """State shared by one check_host() and its includes and redirects."""

    resolver: Resolver
    ip: IPAddress
    sender: str
    local: str
    sender_domain: str
    helo: str
    receiver: str
    limits: SpfLimits
    clock: Callable[[], float]
    default_explanation: str
    lookups: int = 0
    voids: int = 0
    validated: dict[str, str] = field(default_factory=dict)  # %{p} per domain

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > self.limits.lookups:  # RFC 7208 §4.6.4
            raise _PermError(f"more than {self.limits.lookups} DNS lookups")

    def count_void(self) -> None:
        self.voids += 1
        if self.voids > self.limits.void_lookups:  # RFC 7208 §4.6.4
            raise _PermError(f"more than {self.limits.void_lookups} void DNS lookups")

    # - DNS helpers -

    async def addresses(self, name: str, *, count_void: bool) -> list[IPAddress]:
        """A or AAAA records of `name`, per the client's address family (RFC 7208 §5.3)."""
        try:
            if self.ip.version == 4:
                ans = await self.resolver.a(name)
            else:
                ans = await self.resolver.aaaa(name)
        except (NXDomain, NoAnswer):
            if count_void:
                self.count_void()
            return []
        except TempFail as e:
            raise _TempError(str(e)) from None
        return [ipaddress.ip_address(a) for a in ans.records]

    async def ptr_names(self) -> list[str] | None:
        """The first `ptr_names` PTR names of the client; None if the lookup was void."""
        try:
            ans = await self.resolver.ptr(str(self.ip))
        except (NXDomain, NoAnswer):
            return None
        except TempFail:
            return []  # RFC 7208 §5.5: a DNS error here means no match
        return [n.rstrip(".") for n in ans.records[: self.limits.ptr_names]]

    async def is_validated(self, name: str) -> bool:
        try:
            return self.ip in await self.addresses(name, count_void=False)
        except _TempError:
            return False  # RFC 7208 §5.5: skip this name, continue the search

    # - macros -

    async def expand(self, tokens: _MacroString, domain: str) -> str:
        out: list[str] = []
        for t in tokens:
            if isinstance(t, str):
                out.append(t)
            elif isinstance(t, _Escape):
                out.append(t.text)
            else:
                value = await self.macro_value(t.letter, domain)
                parts = re.split("[" + re.escape(t.delimiters or ".") + "]", value)
                if t.reverse:
                    parts.reverse()
                if t.digits is not None:
                    parts = parts[-t.digits :]  # RFC 7208 §7.3: right-hand parts
                value = ".".join(parts)
                if t.url_escape:
                    value = quote(value, safe="-._~")  # RFC 7208 §7.3, RFC 3986 §2.3
                out.append(value)
        return "".join(out)

    async def expand_domain(self, tokens: _MacroString, domain: str) -> str:
        name = await self.expand(tokens, domain)
        if name.endswith("."):
            name = name[:-1]
        while len(name) > 253 and "." in name:  # RFC 7208 §7.3: truncate on the left
            name = name.split(".", 1)[1]
        return name

    async def macro_value(self, letter: str, domain: str) -> str:
        ip = self.ip
        match letter:  # RFC 7208 §7.3
            case "s":
                return self.sender
            case "l":
                return self.local
            case "o":
                return self.sender_domain
            case "d":
                return domain
            case "i":
                if ip.version == 4:
                    return str(ip)
                return ".".join(f"{ip.packed.hex():0>32}".upper())
            case "p":
                return await self.validated_name(domain)
            case "v":
                return "in-addr" if ip.version == 4 else "ip6"
            case "h":
                return self.helo
            case "c":
                return str(ip)
            case "r":
                return self.receiver
            case "t":
                return str(int(self.clock()))
        raise AssertionError(letter)  # the parser admits no other letter

    async def validated_name(self, domain: str) -> str:
        """%{p}: a validated host name of the client, preferring `domain` and its
        subdomains (RFC 7208 §7.3), or "unknown"."""
        if domain in self.validated:
            return self.validated[domain]
        names = await self.ptr_names() or []
        d = domain.lower()
        ranked = sorted(
            names,
            key=lambda n: 0 if n.lower() == d else 1 if n.lower().endswith("." + d) else 2,
        )
        value = "unknown"
        for name in ranked:
            if await self.is_validated(name):
                value = name
                break
        self.validated[domain] = value
        return value


@dataclass(frozen=True)
class _Outcome:
    status: Status
    mechanism: str = ""
    explanation: str = ""
    problem: str = ""


def _valid_domain(domain: str) -> bool:
    """RFC 7208 §4.3: a multi-label domain name with labels of 1 to 63 octets."""
    if domain.startswith("[") or not domain.isascii():
        return False
    if domain.endswith("."):
        domain = domain[:-1]
    labels = domain.split(".")
    return len(labels) > 1 and len(domain) <= 253 and all(0 < len(x) <= 63 for x in labels)


async def _check_host(ck: _Check, domain: str) -> _Outcome:
    if not _valid_domain(domain):
        return _Outcome(Status.NONE, problem=f"invalid domain {domain!r}")  # RFC 7208 §4.3
    try:
        answer = await ck.resolver.txt(domain)  # RFC 7208 §4.4
    except (NXDomain, NoAnswer):
        return _Outcome(Status.NONE)
    except TempFail as e:
        return _Outcome(Status.TEMPERROR, problem=str(e))
    # RFC 7208 §4.5: "v=spf1" followed by SP or the end, case-insensitive
    records = [
        r.data
        for r in answer.records
        if r.data[:6].lower() == b"v=spf1" and r.data[6:7] in (b"", b" ")
    ]
    if not records:
        return _Outcome(Status.NONE)
    if len(records) > 1:
        return _Outcome(Status.PERMERROR, problem=f"{domain} has more than one SPF record")
    if not records[0].isascii():
        return _Outcome(Status.PERMERROR, problem=f"SPF record of {domain} is not ASCII")
    try:
        record = parse_record(records[0].decode("ascii"))
        return await _evaluate(ck, record, domain)
    except _PermError as e:
        return _Outcome(Status.PERMERROR, problem=str(e))
    except _TempError as e:
        return _Outcome(Status.TEMPERROR, problem=str(e))


async def _evaluate(ck: _Check, record: _Record, domain: str) -> _Outcome:
    for d in record.directives:  # RFC 7208 §4.6.2: in order, first match wins
        if await _matches(ck, d, domain):
            explanation = ""
            if d.qualifier is Status.FAIL:
                explanation = await _explain(ck, record, domain)
            return _Outcome(d.qualifier, d.text, explanation)
    if record.redirect is not None:  # RFC 7208 §6.1: only when nothing matched
        ck.count_lookup()
        target = await ck.expand_domain(record.redirect, domain)
        outcome = await _check_host(ck, target)
        if outcome.status is Status.NONE:
            raise _PermError(f"redirect to {target}: no SPF record")
        return outcome
    return _Outcome(Status.NEUTRAL)  # RFC 7208 §4.7


async def _matches(ck: _Check, d: _Directive, domain: str) -> bool:
    ip = ck.ip
    if d.name == "all":
        return True
    if d.name in ("ip4", "ip6"):
        assert d.network is not None
        return ip.version == d.network.version and ip in d.network  # RFC 7208 §5.6
    ck.count_lookup()
    target = await ck.expand_domain(d.domain, domain) if d.domain else domain
    bits = d.cidr4 if ip.version == 4 else d.cidr6
    if d.name == "include":  # RFC 7208 §5.2
        inner = await _check_host(ck, target)
        if inner.status is Status.PASS:
            return True
        if inner.status in (Status.FAIL, Status.SOFTFAIL, Status.NEUTRAL):
            return False
        if inner.status is Status.TEMPERROR:
            raise _TempError(f"include:{target}: {inner.problem}")
        raise _PermError(f"include:{target}: {inner.problem or 'no SPF record'}")
    if d.name == "a":  # RFC 7208 §5.3
        addrs = await ck.addresses(target, count_void=True)
        return any(_in_network(ip, a, bits) for a in addrs)
    if d.name == "mx":  # RFC 7208 §5.4
        try:
            ans = await ck.resolver.mx(target)
        except (NXDomain, NoAnswer):
            ck.count_void()
            return False
        except TempFail as e:
            raise _TempError(str(e)) from None
        if len(ans.records) > ck.limits.mx_names:  # RFC 7208 §4.6.4
            raise _PermError(f"{target} has more than {ck.limits.mx_names} MX records")
        for mx in ans.records:
            if mx.is_null:
                continue
            addrs = await ck.addresses(mx.host, count_void=False)
            if any(_in_network(ip, a, bits) for a in addrs):
                return True
        return False
    if d.name == "ptr":  # RFC 7208 §5.5
        names = await ck.ptr_names()
        if names is None:
            ck.count_void()
            return False
        t = target.lower().rstrip(".")
        for name in names:
            n = name.lower()
            if (n == t or n.endswith("." + t)) and await ck.is_validated(name):
                return True
        return False
    if d.name == "exists":  # RFC 7208 §5.7: always an A lookup
        try:
            await ck.resolver.a(target)
        except (NXDomain, NoAnswer):
            ck.count_void()
            return False
        except TempFail as e:
            raise _TempError(str(e)) from None
        return True
    raise AssertionError(d.name)


def _in_network(ip: IPAddress, addr: IPAddress, bits: int) -> bool:
    if ip.version != addr.version:
        return False
    return ip in ipaddress.ip_network(f"{addr}/{bits}", strict=False)


async def _explain(ck: _Check, record: _Record, domain: str) -> str:
    """RFC 7208 §6.2: the exp= text, or the default on any problem with it."""
    default = await _expand_text(ck, ck.default_explanation, domain)
    if record.exp is None:
        return default if default is not None else ck.default_explanation
    try:
        target = await ck.expand_domain(record.exp, domain)
        answer = await ck.resolver.txt(target)  # not counted (RFC 7208 §4.6.4)
    except (DnsError, _PermError, _TempError):
        answer = None
    if answer is None or len(answer.records) != 1 or not answer.records[0].data.isascii():
        return default if default is not None else ck.default_explanation
    text = await _expand_text(ck, answer.records[0].data.decode("ascii"), domain)
    if text is None:
        return default if default is not None else ck.default_explanation
    return text


async def _expand_text(ck: _Check, text: str, domain: str) -> str | None:
    try:
        return await ck.expand(parse_macro_string(text, explanation=True), domain)
    except (_PermError, _TempError):
        return None


def _client_ip(ip: str | IPAddress) -> IPAddress:
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # RFC 7208 §5: an IPv4-mapped address is IPv4
    return addr


async def check_host(
    resolver: Resolver,
    ip: str | IPAddress,
    domain: str,
    sender: str,
    helo: str,
    *,
    receiver: str = "unknown",
    identity: str = "mailfrom",
    limits: SpfLimits = SpfLimits(),
    default_explanation: str = DEFAULT_EXPLANATION,
    clock: Callable[[], float] = time.time,
) -> SpfResult:
    """RFC 7208 §4 check_host(<ip>, <domain>, <sender>), plus the HELO name for %{h}.

    Never raises for anything DNS or the record does: every outcome is a status.
    ValueError only if `ip` is not an IP address (a caller bug).
    """
    addr = _client_ip(ip)
    local, at, sender_domain = sender.rpartition("@")
    if not at:
        local, sender_domain = "", sender
    if not local:
        local = "postmaster"  # RFC 7208 §4.3
    full_sender = f"{local}@{sender_domain}"
    ck = _Check(
        resolver,
        addr,
        full_sender,
        local,
        sender_domain,
        helo,
        receiver,
        limits,
        clock,
        default_explanation,
    )
    try:
        async with asyncio.timeout(limits.timeout):
            outcome = await _check_host(ck, domain)
    except TimeoutError:
        outcome = _Outcome(Status.TEMPERROR, problem="SPF evaluation took too long")
    return SpfResult(
        status=outcome.status,
        domain=domain,
        sender=full_sender,
        ip=str(addr),
        helo=helo,
        identity=identity,
        receiver=receiver,
        mechanism=outcome.mechanism,
        explanation=outcome.explanation,
        problem=outcome.problem,
        lookups=ck.lookups,
        void_lookups=ck.voids,
    )


async def check_mailfrom(
    resolver: Resolver,
    ip: str | IPAddress,
    mail_from: str,
    helo: str,
    *,
    receiver: str = "unknown",
    limits: SpfLimits = SpfLimits(),
    default_explanation: str = DEFAULT_EXPLANATION,
    clock: Callable[[], float] = time.time,
) -> SpfResult:
    """The MAIL FROM identity (RFC 7208 §2.4): the reverse-path's domain, or for the
    null reverse-path ``<>`` the HELO name as "postmaster@helo"."""
    if mail_from:
        domain = mail_from.rpartition("@")[2]
        sender = mail_from
    else:
        domain, sender = helo, f"postmaster@{helo}"
    return await check_host(
        resolver,
        ip,
        domain,
        sender,
        helo,
        receiver=receiver,
        identity="mailfrom",
        limits=limits,
        default_explanation=default_explanation,
        clock=clock,
    )


async def check_helo(
    resolver: Resolver,
    ip: str | IPAddress,
    helo: str,
    *,
    receiver: str = "unknown",
    limits: SpfLimits = SpfLimits(),
    default_explanation: str = DEFAULT_EXPLANATION,
    clock: Callable[[], float] = time.time,
) -> SpfResult:
    """The HELO identity (RFC 7208 §2.3): <domain> is the HELO name, <sender>
    "postmaster@" + it."""
    return await check_host(
        resolver,
        ip,
        helo,
        f"postmaster@{helo}",
        helo,
        receiver=receiver,
        identity="helo",
        limits=limits,
        default_explanation=default_explanation,
        clock=clock,
    )
