"""The greylist stage's own logic (the triplets themselves: the store contract)."""

from __future__ import annotations


def test_greylist_allow_answers_are_remembered(monkeypatch) -> None:
    from postier.filters import greylist

    stage = greylist.GreylistStage(None, allow=["127.0.0.0/8", "::1/128"])  # type: ignore[arg-type]
    parsed: list[str] = []
    real = greylist.ipaddress.ip_address

    def counting(text):  # type: ignore[no-untyped-def]
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(greylist.ipaddress, "ip_address", counting)
    answers = [stage._allowed(ip) for ip in ("127.0.0.1", "192.0.2.1", "::1") * 3]
    assert answers == [True, False, True] * 3
    assert parsed == ["127.0.0.1", "192.0.2.1", "::1"]
