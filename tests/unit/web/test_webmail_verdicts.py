"""The sender checks in plain words: only this server's Authentication-Results
field counts, read with RFC 8601's grammar, each result a sentence."""

from __future__ import annotations

from postier.mailauth.results import header
from postier.web.webmail.render import render
from postier.web.webmail.verdicts import checks, parse

OURS = "mail.example.test"


def _value(field: bytes) -> str:
    return field.decode().split(":", 1)[1].replace("\r\n", "")


def test_the_field_intake_writes_in_plain_words() -> None:
    field = header(
        OURS,
        [
            "iprev=pass policy.iprev=192.0.2.1 (mx.example.org)",
            "spf=fail smtp.mailfrom=example.org",
            "dkim=pass header.d=example.org header.s=sel header.b=abcd",
            "dkim=fail (body hash did not verify) header.d=other.example header.s=x",
            "dmarc=fail (p=REJECT dis=REJECT no aligned spf or dkim pass) header.from=example.org",
            "arc=none",
        ],
    )
    found = checks([_value(field)], OURS)
    assert [c.text for c in found] == [
        "The sending server's address 192.0.2.1 has a name, mx.example.org, that leads back"
        " to it (iprev pass).",
        "The sender's domain example.org did not authorise the server that delivered this"
        " message to send its mail (SPF fail).",
        "The signature of example.org is valid (DKIM pass).",
        "The signature of other.example does not match the message: it was changed on the"
        " way, or forged (DKIM fail, body hash did not verify).",
        "The message fails example.org's DMARC policy (DMARC fail, policy reject).",
    ]  # arc=none (no forwarder sealed it) is the usual case: not worth a line
    assert [c.short for c in found] == [
        "Reverse DNS pass 192.0.2.1",
        "SPF fail example.org",
        "DKIM pass example.org",
        "DKIM fail other.example",
        "DMARC fail example.org",
    ]
    assert [c.good for c in found] == [True, False, True, False, False]
    arc = checks([f"{OURS}; arc=fail (seal did not verify); arc=pass"], OURS)
    assert [c.text for c in arc] == [
        "The forwarding chain (ARC) of the servers that passed it on is broken (ARC fail,"
        " seal did not verify).",
        "The forwarding chain (ARC) of the servers that passed it on is intact (ARC pass).",
    ]


def test_other_results_and_the_sampled_dmarc_disposition() -> None:
    value = (
        f"{OURS}; spf=softfail smtp.mailfrom=bounce@example.org; spf=none smtp.helo=h.example;"
        " spf=temperror smtp.mailfrom=t.example; dmarc=pass (p=NONE dis=NONE) header.from=a.test;"
        " dmarc=fail (p=REJECT dis=QUARANTINE) header.from=b.test; dmarc=none header.from=c.test;"
        " dkim=temperror (key lookup failed) header.d=k.test;"
        " iprev=permerror policy.iprev=192.0.2.9"
    )
    assert [c.text for c in checks([value], OURS)] == [
        "The sender's domain example.org says the server that delivered this message is"
        " probably not one of its own (SPF softfail).",
        "The sending server's name h.example publishes no SPF record, so nothing says which"
        " servers may send its mail (SPF none).",
        "The SPF record of t.example could not be read (a temporary DNS error) (SPF temperror).",
        "The message passes a.test's DMARC policy (DMARC pass).",
        "The message fails b.test's DMARC policy (DMARC fail, policy reject, applied as"
        " quarantine).",
        "c.test publishes no DMARC policy (DMARC none).",
        "The signature of k.test could not be checked: its key could not be fetched (DKIM"
        " temperror, key lookup failed).",
        "The sending server's address 192.0.2.9 has no name (no reverse DNS) (iprev permerror).",
    ]


def test_only_our_authserv_id_counts() -> None:
    forged = "evil.example; dkim=pass header.d=bank.example; dmarc=pass header.from=bank.example"
    ours = f"{OURS.upper()}; spf=fail smtp.mailfrom=bank.example"
    assert [c.short for c in checks([forged, ours], OURS)] == ["SPF fail bank.example"]
    assert checks([forged], OURS) == []
    assert checks([f"{OURS}; none"], OURS) == []
    # the topmost of ours is the one intake wrote
    assert [c.result for c in checks([ours, f"{OURS}; spf=pass smtp.mailfrom=x"], OURS)] == ["fail"]
    # no authserv-id of ours given: nothing is believed
    assert checks([ours], "") == []


def test_grammar_comments_quotes_and_spaces() -> None:
    [r] = parse(
        "(c) mail.example.test 1; (lead) dkim / 1 = pass (good (nested; really)) "
        'reason="a \\"quoted\\" reason" header.d = "ex ample.test"'
    )
    assert (r.method, r.result) == ("dkim", "pass")
    assert r.props == {"reason": 'a "quoted" reason', "header.d": "ex ample.test"}
    assert r.comments == ["lead", "good (nested; really)"]
    # broken input: what cannot be read is left out, nothing raises
    for junk in ("", ";", "x; =", "x; spf", "x; spf=", 'x; spf="pass"', "x; (", 'x; "', "x;=;=;"):
        assert all(r.method and r.result for r in parse(junk))


def test_render_believes_our_field_only() -> None:
    data = (
        b"Authentication-Results: mail.example.test;\r\n\tdkim=pass header.d=example.org\r\n"
        b"Authentication-Results: relay.example; dkim=fail header.d=example.org\r\n"
        b"Subject: x\r\n\r\nx\r\n"
    )
    assert [c.short for c in render(data, authserv_id=OURS).checks] == ["DKIM pass example.org"]
    assert render(data).checks == []
