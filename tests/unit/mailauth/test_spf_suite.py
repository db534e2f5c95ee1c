"""The official RFC 7208 test suite (openspf.org release 2014.04, from pyspf 2.0.14).

Each scenario's zonedata becomes a FakeResolver, the way the suite's reference
driver (pyspf's test/testspf.py) loads it:
- "SPF" records (the obsolete type 99) are also published as TXT records when the
  name has no TXT entry of its own ("TXT: NONE" is such an entry, publishing
  nothing). postier looks at TXT only (RFC 7208 §3.1, §4.4).
- "TIMEOUT" makes every record type that was not listed before it time out.
- "explanation: DEFAULT" means the evaluator's default explanation was used.
Every case must pass; none is expected to differ.
"""

from __future__ import annotations

import pytest

from postier.dns.fake import FakeResolver
from postier.mailauth.spf import check_mailfrom

DEFAULT = "DEFAULT"


async def test_rfc7208_suite(zones, spf_case, error):
    """Parametrized by conftest.pytest_generate_tests: one test per suite case."""
    case = spf_case
    if error:
        pytest.fail(f"the RFC 7208 test suite could not be fetched: {error}")
    expected = case["result"]
    accepted = expected if isinstance(expected, list) else [expected]
    result = await check_mailfrom(
        FakeResolver(zones),
        case["host"],
        case["mailfrom"],
        case["helo"],
        default_explanation=DEFAULT,
        receiver="receiver.example.test",
    )
    assert result.status in accepted, (result, case.get("description"))
    if "explanation" in case:
        assert result.explanation == case["explanation"]
