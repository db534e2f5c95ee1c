"""Compose: the webmail's form turned into a message for the submission pipeline.

Rules:
- Pure; the route runs it in the web pool. What the user typed in To and Cc is
  an RFC 5322 address list ("Bob <bob@example.org>, carol@example.net"),
  parsed by `mime.address` in one linear pass; each address must also pass
  `mail.address.Address`, else the form comes back naming it. At most
  `MAX_RECIPIENTS` in all; an address given twice is one envelope recipient.
- The message is plain text, From: the user's own address (the submission
  pipeline refuses any other anyway), with Date:, Message-ID: and
  MIME-Version: of our own; `email`'s SMTP policy writes CRLF line ends,
  encodes non-ASCII headers as RFC 2047 encoded-words and a non-ASCII body
  as quoted-printable or base64.
- A reply (`reply_draft`) goes to Reply-To, else From (and, replying to all,
  to the other To and Cc addresses but the user's own), with "Re: " once, the
  text quoted, and In-Reply-To/References (RFC 5322 §3.6.4). Those two come
  back from the form, so `build` keeps only what reads as message ids: no other
  text reaches a header.
- Bcc, attachments, drafts and forwarding are not here yet.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from postier.mail.address import Address, AddressError
from postier.mime.address import MISSING_DOMAIN, MISSING_MAILBOX, parse_address_list
from postier.web.webmail.render import Rendered

MAX_RECIPIENTS = 100
#: characters of a subject; a header line is at most 998 octets (RFC 5322 §2.1.1)
MAX_SUBJECT = 500
#: characters of the text
MAX_BODY = 1_000_000
#: characters of a replied-to text that are quoted
MAX_QUOTED = 100_000
#: message ids kept in References (the oldest and the newest, RFC 5322 §3.6.4)
MAX_REFERENCES = 20


class ComposeError(ValueError):
    """The form cannot become a message; the text says what to fix."""


@dataclass(frozen=True)
class Draft:
    to: str = ""
    cc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""


def message_ids(text: str) -> list[str]:
    """The `<...>` message ids in `text`, anything else dropped."""
    return [
        t
        for t in text.split()
        if 3 <= len(t) <= 250
        and t[0] == "<"
        and t[-1] == ">"
        and "<" not in t[1:-1]
        and ">" not in t[1:-1]
        and t.isprintable()
    ]


def reply_draft(msg: Rendered, me: str, *, to_all: bool) -> Draft:
    """The compose form's contents replying to `msg`, as user `me`."""
    mine = me.lower()
    to = [(n, a) for n, a in msg.reply_to if a.lower() != mine] or msg.reply_to
    cc: list[tuple[str, str]] = []
    if to_all:
        seen = {a.lower() for _, a in to} | {mine}
        for n, a in msg.to_cc:
            if a.lower() not in seen:
                seen.add(a.lower())
                cc.append((n, a))
    subject = msg.subject
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    text = (msg.text or "")[:MAX_QUOTED]
    quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
    who = msg.from_ or "you"
    body = (
        f"\n\nOn {msg.date}, {who} wrote:\n{quoted}\n"
        if msg.date
        else f"\n\n{who} wrote:\n{quoted}\n"
    )
    ids = message_ids(msg.message_id)
    refs = message_ids(msg.references) + ids
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
    return Draft(
        to=", ".join(_typed(n, a) for n, a in to),
        cc=", ".join(_typed(n, a) for n, a in cc),
        subject=subject,
        body=body,
        in_reply_to=ids[0] if ids else "",
        references=" ".join(refs),
    )


def _typed(name: str, addr: str) -> str:
    """An address as a user would type it (quoted name when it needs quoting)."""
    if not name:
        return addr
    if any(c in name for c in '",;<>@()\\[]:.'):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


def recipients(text: str, field: str) -> list[tuple[str | None, Address]]:
    """(display name, address) of each address in `text`; `ComposeError` on junk."""
    out: list[tuple[str | None, Address]] = []
    for a in parse_address_list(text):
        if a.host is None:  # a group's start or end marker
            continue
        if a.mailbox in (None, MISSING_MAILBOX) or a.host == MISSING_DOMAIN:
            raise ComposeError(f"{field}: {text.strip()[:100]!r} is not a list of addresses.")
        try:
            out.append((a.name, Address.parse(a.addr_spec)))
        except AddressError as e:
            raise ComposeError(f"{field}: {a.addr_spec[:100]!r}: {e}.") from None
    return out


def _header_address(name: str | None, addr: Address) -> str:
    text = str(addr)
    if not name:
        return text
    try:
        return str(HeaderAddress(display_name=" ".join(name.split()), addr_spec=text))
    except (ValueError, IndexError):
        return text


def build(sender: str, draft: Draft, hostname: str) -> tuple[list[Address], bytes]:
    """(envelope recipients, message bytes) for `draft` sent by `sender`."""
    to = recipients(draft.to, "To")
    cc = recipients(draft.cc, "Cc")
    if not to and not cc:
        raise ComposeError("Add at least one recipient in To or Cc.")
    if len(to) + len(cc) > MAX_RECIPIENTS:
        raise ComposeError(f"At most {MAX_RECIPIENTS} recipients.")
    if len(draft.subject) > MAX_SUBJECT:
        raise ComposeError(f"The subject is longer than {MAX_SUBJECT} characters.")
    if len(draft.body) > MAX_BODY:
        raise ComposeError("The message is too long.")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    if to:
        msg["To"] = ", ".join(_header_address(n, a) for n, a in to)
    if cc:
        msg["Cc"] = ", ".join(_header_address(n, a) for n, a in cc)
    msg["Subject"] = " ".join(draft.subject.split())
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain=hostname)
    in_reply_to = message_ids(draft.in_reply_to)[:1]
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to[0]
    references = message_ids(draft.references)[-MAX_REFERENCES:]
    if references:
        msg["References"] = " ".join(references)
    body = draft.body.replace("\r\n", "\n").replace("\r", "\n")
    msg.set_content(body if body.endswith("\n") else body + "\n")
    unique: dict[str, Address] = {}
    for _, a in to + cc:
        unique.setdefault(a.key, a)
    return list(unique.values()), msg.as_bytes()
