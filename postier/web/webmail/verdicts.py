"""The sender checks (SPF, DKIM, DMARC, iprev, ARC) of a message, in plain words.

Rules:
- Only the Authentication-Results field this server wrote counts: the first one
  whose authserv-id is ours (case-insensitive, RFC 8601 §2.5). Every intake path
  removes incoming fields that claim our authserv-id before storing a message
  (`results.forged_fields`), so a sender cannot put words in our mouth; a field
  of any other authserv-id is the sender's (or a relay's) claim and is ignored.
- The field is read with RFC 8601's grammar (§2.2): `;`-separated results
  `method[/version]=result [reason=...] ptype.property=value ...`, comments and
  quoted strings anywhere; one linear pass, nothing in it ever raises. What is
  not understood is left out, never guessed.
- Each result becomes a `Check`: a short label ("DKIM pass example.org") for the
  compact line every message shows, and a sentence for the reader ("The
  signature of example.org is valid (DKIM pass)"). Values come from the message
  (domains, addresses): they are text, escaped by the templates like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from postier.mailauth.results import authserv_id_of

#: results kept per message (a field may list any number; ours lists a few)
MAX_CHECKS = 12
#: characters of a value or comment kept for display
MAX_TEXT = 120

_DMARC_POLICY = re.compile(r"\bp=([A-Za-z]+)(?:\s+dis=([A-Za-z]+))?")


@dataclass(frozen=True)
class Check:
    method: str  # spf, dkim, dmarc, iprev, arc, ... (lower case)
    result: str  # pass, fail, softfail, none, ... (lower case)
    short: str  # "SPF fail example.org"
    text: str  # the sentence
    good: bool | None  # pass: True; fail, softfail, permerror: False; else None


@dataclass
class _Result:
    method: str
    result: str
    props: dict[str, str]
    comments: list[str]


def _tokens(value: str) -> Iterable[tuple[str, str]]:
    """(kind, text) with kind one of "word", "quoted", "=", ";", "comment"."""
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch.isspace():
            i += 1
        elif ch in "=;":
            yield ch, ch
            i += 1
        elif ch == '"':
            out = []
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(value[i])
                i += 1
            i += 1
            yield "quoted", "".join(out)
        elif ch == "(":
            depth, out = 1, []
            i += 1
            while i < n and depth:
                c = value[i]
                if c == "\\" and i + 1 < n:
                    i += 1
                    out.append(value[i])
                elif c == "(":
                    depth += 1
                    out.append(c)
                elif c == ")":
                    depth -= 1
                    if depth:
                        out.append(c)
                else:
                    out.append(c)
                i += 1
            yield "comment", "".join(out)
        else:
            start = i
            while i < n and not value[i].isspace() and value[i] not in '=;"(':
                i += 1
            yield "word", value[start:i]


def parse(value: str) -> list[_Result]:
    """The results of one Authentication-Results value (the authserv-id and
    `none` are not results)."""
    groups: list[list[tuple[str, str]]] = [[]]
    for kind, text in _tokens(value):
        if kind == ";":
            groups.append([])
        else:
            groups[-1].append((kind, text))
    out: list[_Result] = []
    for group in groups[1:]:  # the first is the authserv-id (and a version)
        comments = [t for k, t in group if k == "comment"]
        items = [(k, t) for k, t in group if k != "comment"]
        # method [CFWS "/" CFWS version] "=" result
        eq = next((k for k, (kind, _) in enumerate(items) if kind == "="), -1)
        if eq < 1 or eq + 1 >= len(items) or items[eq + 1][0] != "word":
            continue
        if any(kind != "word" for kind, _ in items[:eq]):
            continue
        method = "".join(t for _, t in items[:eq]).split("/", 1)[0].lower()
        if not method:
            continue
        result = _Result(method, items[eq + 1][1].lower(), {}, comments)
        rest = items[eq + 2 :]
        j = 0
        while j + 2 < len(rest):
            name, sign, val = rest[j], rest[j + 1], rest[j + 2]
            if name[0] == "word" and sign[0] == "=" and val[0] in ("word", "quoted"):
                result.props.setdefault(name[1].lower(), val[1])
                j += 3
            else:
                j += 1
        out.append(result)
    return out


def ours(fields: Iterable[str], authserv_id: str) -> str | None:
    """The first Authentication-Results value of `fields` that this server wrote."""
    want = authserv_id.lower()
    for value in fields:
        if want and authserv_id_of(value).lower() == want:
            return value
    return None


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _domain(value: str) -> str:
    """A domain from a property value (an address gives its domain)."""
    return _cut(value.rsplit("@", 1)[-1])


def _good(result: str) -> bool | None:
    if result == "pass":
        return True
    if result in ("fail", "softfail", "permerror"):
        return False
    return None


def _spf(r: _Result) -> tuple[str, str, str]:
    helo = "smtp.helo" in r.props and "smtp.mailfrom" not in r.props
    d = _domain(r.props.get("smtp.mailfrom") or r.props.get("smtp.helo") or "")
    who = f"The sending server's name {d}" if helo else f"The sender's domain {d}"
    if not d:
        who = "The sender's domain"
    words = {
        "pass": f"{who} authorised the server that delivered this message to send its mail",
        "fail": f"{who} did not authorise the server that delivered this message to send its mail",
        "softfail": f"{who} says the server that delivered this message is probably not "
        "one of its own",
        "neutral": f"{who} makes no statement about the server that delivered this message",
        "none": f"{who} publishes no SPF record, so nothing says which servers may send its mail",
        "temperror": f"The SPF record of {d or 'the sender'} could not be read (a temporary "
        "DNS error)",
        "permerror": f"The SPF record of {d or 'the sender'} is broken",
    }
    return d, words.get(r.result, f"The SPF check of {d or 'the sender'} gave {r.result}"), ""


def _dkim(r: _Result) -> tuple[str, str, str]:
    d = _domain(r.props.get("header.d") or r.props.get("header.i") or "")
    sig = f"The signature of {d}" if d else "A signature"
    words = {
        "pass": f"{sig} is valid",
        "fail": f"{sig} does not match the message: it was changed on the way, or forged",
        "none": "The message is not signed",
        "neutral": f"{sig} could not be judged",
        "policy": f"{sig} was not used",
        "temperror": f"{sig} could not be checked: its key could not be fetched",
        "permerror": f"{sig} cannot be checked",
    }
    why = _cut(r.comments[0]) if r.comments and r.result != "pass" else ""
    return d, words.get(r.result, f"{sig}: {r.result}"), why


def _dmarc(r: _Result) -> tuple[str, str, str]:
    d = _domain(r.props.get("header.from") or "")
    policy = dis = ""
    for c in r.comments:
        m = _DMARC_POLICY.search(c)
        if m:
            policy, dis = m.group(1).lower(), (m.group(2) or "").lower()
            break
    of = f"{d}'s" if d else "the sender's"
    words = {
        "pass": f"The message passes {of} DMARC policy",
        "fail": f"The message fails {of} DMARC policy",
        "none": f"{d or 'The sender'} publishes no DMARC policy",
        "temperror": f"{of[:1].upper() + of[1:]} DMARC policy could not be read (a temporary "
        "DNS error)",
        "permerror": f"{of[:1].upper() + of[1:]} DMARC policy cannot be applied",
    }
    detail = ""
    if r.result == "fail" and policy:
        detail = policy if not dis or dis == policy else f"{policy}, applied as {dis}"
    return d, words.get(r.result, f"The DMARC check of {d or 'the sender'} gave {r.result}"), detail


def _iprev(r: _Result) -> tuple[str, str, str]:
    ip = _cut(r.props.get("policy.iprev") or "")
    name = _cut(r.comments[0]) if r.comments else ""
    at = f"The sending server's address {ip}" if ip else "The sending server's address"
    words = {
        "pass": f"{at} has a name{f', {name},' if name else ''} that leads back to it",
        "fail": f"{at} has a name that does not lead back to it",
        "permerror": f"{at} has no name (no reverse DNS)",
        "temperror": f"{at}: its name could not be looked up (a temporary DNS error)",
    }
    return ip, words.get(r.result, f"{at}: reverse DNS check gave {r.result}"), ""


def _arc(r: _Result) -> tuple[str, str, str]:
    words = {
        "pass": "The forwarding chain (ARC) of the servers that passed it on is intact",
        "fail": "The forwarding chain (ARC) of the servers that passed it on is broken",
        "none": "No forwarding server along the way sealed it",
    }
    why = _cut(r.comments[0]) if r.comments and r.result == "fail" else ""
    return "", words.get(r.result, f"The forwarding chain (ARC) check gave {r.result}"), why


def check(r: _Result) -> Check:
    """One result in words."""
    label = r.method.upper()
    if r.method == "spf":
        subject, sentence, detail = _spf(r)
    elif r.method == "dkim":
        subject, sentence, detail = _dkim(r)
    elif r.method == "dmarc":
        subject, sentence, detail = _dmarc(r)
        detail = f"policy {detail}" if detail else ""
    elif r.method == "iprev":
        subject, sentence, detail = _iprev(r)
        label = "Reverse DNS"
    elif r.method == "arc":
        subject, sentence, detail = _arc(r)
    else:
        subject, sentence, detail = "", f"{_cut(r.method)}: {_cut(r.result)}", ""
        label = _cut(r.method)
    tag = f"{r.method.upper() if r.method != 'iprev' else 'iprev'} {r.result}"
    if detail:
        tag += f", {detail}"
    short = f"{label} {r.result}" + (f" {subject}" if subject else "")
    return Check(r.method, r.result, short, f"{sentence} ({_cut(tag)}).", _good(r.result))


def checks(fields: Iterable[str], authserv_id: str) -> list[Check]:
    """The checks this server recorded in a message's Authentication-Results
    fields (`fields`: their values, top first); [] when it recorded none."""
    value = ours(fields, authserv_id)
    if value is None:
        return []
    # "arc=none" is every message that came straight from its sender: it says nothing
    found = [r for r in parse(value) if (r.method, r.result) != ("arc", "none")]
    return [check(r) for r in found[:MAX_CHECKS]]
