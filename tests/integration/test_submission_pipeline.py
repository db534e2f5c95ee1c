"""One submission pipeline: the submission listeners and `postier send` both
hand the message to `smtp.submission.Submission`; the MX listener does not."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest

from postier.cli.send import SendmailOptions, _inject
from postier.mail.replies import Reply
from postier.smtp.intake import Envelope, SessionInfo, Spool
from postier.smtp.submission import Submission
from tests.integration.smtp_helpers import inbox
from tests.support.server import PASSWORD, ServerThread


def test_smtp_submission_and_postier_send_share_the_pipeline(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Submission, str, str]] = []  # (pipeline, session id, user)
    finish = Submission.finish

    async def spy(self: Submission, s: SessionInfo, env: Envelope, spool: Spool) -> Reply:
        seen.append((self, s.sid, s.user.address if s.user else ""))
        return await finish(self, s, env, spool)

    monkeypatch.setattr(Submission, "finish", spy)
    message = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: %s\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as c:
        c.login("alice@example.test", PASSWORD)  # loopback: no STARTTLS needed
        c.sendmail("alice@example.test", ["bob@example.test"], message % b"smtp")
    with smtplib.SMTP("127.0.0.1", server.port("mx")) as c:  # not a submission
        c.sendmail("x@remote.test", ["bob@example.test"], message % b"mx")
    done = _inject(
        server.settings,
        message % b"cli",
        SendmailOptions(sender="alice@example.test", recipients=["bob@example.test"]),
    )
    assert server.app is not None
    [(smtp_pipeline, _, smtp_user), (cli_pipeline, cli_sid, cli_user)] = seen
    assert smtp_pipeline is server.app.submission  # the server's one pipeline
    assert isinstance(cli_pipeline, Submission)  # postier send built its own, same code
    assert smtp_user == cli_user == "alice@example.test"
    assert cli_sid.startswith("local-")
    delivered = [  # the MX copy may be filed as Junk: unauthenticated, no SPF/DKIM here
        m for box in ("INBOX", "Junk") for m in inbox(server, "bob@example.test", box)
    ]
    subjects = [m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in delivered]
    assert sorted(subjects) == [b"cli", b"mx", b"smtp"]
    assert done.recipients == ["bob@example.test"]


def test_webmail_style_call_on_the_servers_pipeline(server: ServerThread) -> None:
    """A caller inside the server (the webmail's Send) uses `accept` on the same
    object; a refused recipient stores nothing unless `partial`."""
    from postier.mail.address import Address
    from postier.smtp.submission import Refused, Step

    assert server.app is not None
    pipeline = server.app.submission
    alice = server.call(server.store.get_user("alice@example.test"))
    me, bob, nobody = (
        Address.parse(a) for a in ("alice@example.test", "bob@example.test", "no@example.test")
    )
    data = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: web\r\n\r\nhi\r\n"

    async def accept(**kw: Any) -> Any:
        return await pipeline.accept(alice, me, [bob, nobody], data, peer_ip="192.0.2.7", **kw)

    with pytest.raises(Refused) as refused:
        server.call(accept())
    assert refused.value.step is Step.RECIPIENT
    assert not refused.value.temporary
    assert [str(a) for a, _ in refused.value.refusals] == ["no@example.test"]
    assert inbox(server, "bob@example.test") == []
    done = server.call(accept(partial=True))
    assert [str(a) for a in done.accepted] == ["bob@example.test"]
    assert [(str(a), r.code) for a, r in done.refused] == [("no@example.test", 550)]
    [stored] = inbox(server, "bob@example.test")
    assert b"[192.0.2.7]" in stored  # Received: names the client
    assert b"\r\nMessage-ID: <" in stored  # completed as on the submission port
    with pytest.raises(Refused) as refused:  # not alice's address
        server.call(pipeline.accept(alice, bob, [bob], data))
    assert refused.value.step is Step.SENDER
    assert refused.value.refusals[0][1].code == 553
