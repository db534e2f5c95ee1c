"""The submission pipeline: accept this message from this authenticated user.

One object, built once by the composition root, serves every way a user sends
mail: the SMTP submission listeners (587, 465) drive it step by step as the
client sends MAIL, RCPT and DATA; `postier send`, `postier-sendmail`
(`postier.ops.submit`) and the webmail's Send hand it a whole message
(`accept`). Either way the same rules run, those of `Intake` for the
submission role:

- the envelope sender and every From: address must be the user's own address
  or an alias of theirs (``553 5.7.1``);
- recipients are resolved as on the submission port: local users, aliases,
  catch-alls, remote addresses queued; the ``filters.submission`` stages vote;
- Date: and Message-ID: are added when missing (RFC 6409 §8); Return-Path:
  and Received: (naming the authenticated user) go on top;
- the reply is positive only once `Store.deliver` returned: every local copy
  and the queue entry are durable; then the queue runner is woken.

Rules for `accept`:
- `data` is the message as it would follow DATA once unstuffed: CRLF line
  ends, no dot-stuffing, no terminating ".". Turning script input into that
  (line ends, a lone "." line, -t and Bcc:) is the caller's business.
- All or nothing unless `partial`: any refused recipient means nothing is
  stored (`Refused`). With `partial`, a message is stored for the accepted
  recipients when every refusal is permanent and at least one recipient was
  accepted; the refusals come back in `Accepted.refused` for the caller to
  report. A temporary refusal keeps all or nothing: the caller retries the
  whole message and no one gets it twice.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from postier.mail.address import Address
from postier.mail.queueid import QueueId
from postier.mail.replies import Reply
from postier.mail.role import IntakeRole
from postier.smtp.events import MailParams, RcptParams
from postier.smtp.intake import Envelope, Intake, SessionInfo, Spool
from postier.store.models import User

_CHUNK = 64 * 1024


class Step(enum.Enum):
    """Which part of a submission was refused."""

    SENDER = "sender"
    RECIPIENT = "recipient"
    DATA = "data"


class Refused(Exception):
    """Nothing was stored. `refusals`: the one refusal of the sender or the
    data (address None there), or each refused recipient's."""

    def __init__(self, step: Step, refusals: Sequence[tuple[Address | None, Reply]]) -> None:
        self.step = step
        self.refusals = list(refusals)
        super().__init__(
            "; ".join(f"<{a}>: {r}" if a is not None else str(r) for a, r in self.refusals)
        )

    @property
    def temporary(self) -> bool:
        """Trying the same message later may succeed."""
        return all(reply.code < 500 for _, reply in self.refusals)


@dataclass(frozen=True)
class Accepted:
    """Durable when returned (see the module rules)."""

    qid: QueueId
    reply: Reply
    accepted: list[Address] = field(default_factory=list)
    #: with `partial`: the recipients refused for good, who did not get it
    refused: list[tuple[Address, Reply]] = field(default_factory=list)


class Submission:
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    # --- one SMTP session, step by step (the submission listeners) -------------
    async def on_connect(self, s: SessionInfo) -> None:
        await self._intake.on_connect(s)

    async def on_helo(self, s: SessionInfo) -> None:
        await self._intake.on_helo(s)

    async def check_sender(self, s: SessionInfo, sender: Address | None) -> Reply:
        return await self._intake.check_sender(s, sender)

    async def check_recipient(
        self, s: SessionInfo, env: Envelope, rcpt: Address, params: RcptParams
    ) -> Reply:
        return await self._intake.check_recipient(s, env, rcpt, params)

    def open_spool(self, s: SessionInfo, env: Envelope, *, crlf_only: bool = False) -> Spool:
        return self._intake.open_spool(s, env, crlf_only=crlf_only)

    async def finish(self, s: SessionInfo, env: Envelope, spool: Spool) -> Reply:
        return await self._intake.finish(s, env, spool)

    # --- a whole message (postier send, postier-sendmail, webmail) -------------
    async def accept(
        self,
        user: User,
        sender: Address,
        recipients: Sequence[Address],
        data: bytes,
        *,
        partial: bool = False,
        peer_ip: str = "127.0.0.1",
        peer_name: str = "localhost",
        sid: str | None = None,
    ) -> Accepted:
        """One transaction for `user`, as on the submission port from `peer_ip`
        (the Received: field names it); raises `Refused` (module rules)."""
        session = SessionInfo(
            sid=sid or f"local-{secrets.token_hex(4)}",
            role=IntakeRole.SUBMISSION,
            peer_ip=peer_ip,
            peer_name=peer_name,
            helo=peer_name,
            esmtp=True,
            user=user,
        )
        utf8 = not all(a.localpart.isascii() for a in [sender, *recipients])
        params = MailParams(
            size=len(data), body="8BITMIME" if not data.isascii() else None, smtputf8=utf8
        )
        reply = await self.check_sender(session, sender)
        if not reply.is_positive:
            raise Refused(Step.SENDER, [(None, reply)])
        env = Envelope(sender, params)
        refused: list[tuple[Address, Reply]] = []
        for a in recipients:
            reply = await self.check_recipient(session, env, a, RcptParams())
            if not reply.is_positive:
                refused.append((a, reply))
        if refused:
            permanent = all(reply.code >= 500 for _, reply in refused)
            if not (partial and permanent and len(refused) < len(recipients)):
                raise Refused(Step.RECIPIENT, refused)
        spool = self.open_spool(session, env)
        try:
            for i in range(0, len(data), _CHUNK):
                spool.write(data[i : i + _CHUNK])
        except BaseException:
            spool.discard()
            raise
        reply = await self.finish(session, env, spool)
        if not reply.is_positive:
            raise Refused(Step.DATA, [(None, reply)])
        refused_keys = {a.key for a, _ in refused}
        return Accepted(
            env.qid, reply, [a for a in recipients if a.key not in refused_keys], refused
        )
