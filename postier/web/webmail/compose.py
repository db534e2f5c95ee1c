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
- A forward (`forward_draft`) has "Fwd: " once, the original's header lines
  and its text quoted (the HTML part's text when there is no text part); its
  attachments go along (`build`'s `attachments`).
- Bcc addresses are envelope recipients only: the message the recipients get
  has no Bcc field; the sender's copy in Sent has it (`with_bcc`).
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from postier.mail.address import Address, AddressError
from postier.mime import parse
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
    bcc: str = ""
    #: "folder/uid" of the message forwarded (its attachments go along)
    forward: str = ""
    #: uid of the draft in Drafts this form edits (replaced on save, removed on send)
    draft_uid: str = ""


@dataclass(frozen=True)
class Upload:
    """A file to attach: its name as the user's browser gave it, its type, its octets."""

    filename: str
    content_type: str
    data: bytes


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
    quoted = _quote(msg.text or msg.html_text or "")
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


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text[:MAX_QUOTED].splitlines())


def forward_draft(msg: Rendered, ref: str) -> Draft:
    """The compose form's contents forwarding `msg` (at `ref`, "folder/uid")."""
    subject = msg.subject
    if not subject.lower().startswith(("fwd:", "fw:")):
        subject = f"Fwd: {subject}"
    lines = ["", "", "---------- Forwarded message ----------"]
    for name, value in (
        ("From", msg.from_),
        ("Date", msg.date),
        ("Subject", msg.subject),
        ("To", msg.to),
        ("Cc", msg.cc),
    ):
        if value:
            lines.append(f"> {name}: {' '.join(value.split())}")
    lines.append(">")
    body = "\n".join(lines) + "\n" + _quote(msg.text or msg.html_text or "") + "\n"
    return Draft(subject=subject, body=body, forward=ref)


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


def build(
    sender: str,
    draft: Draft,
    hostname: str,
    attachments: Sequence[Upload] = (),
    *,
    need_recipients: bool = True,
) -> tuple[list[Address], bytes]:
    """(envelope recipients, message bytes) for `draft` sent by `sender`; a draft
    being saved (`need_recipients=False`) may have none yet."""
    to = recipients(draft.to, "To")
    cc = recipients(draft.cc, "Cc")
    bcc = recipients(draft.bcc, "Bcc")
    if need_recipients and not to and not cc and not bcc:
        raise ComposeError("Add at least one recipient in To, Cc or Bcc.")
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
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
    for up in attachments:
        maintype, _, subtype = up.content_type.partition("/")
        if not _is_token(maintype) or not _is_token(subtype):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            up.data, maintype=maintype, subtype=subtype, filename=safe_filename(up.filename)
        )
    unique: dict[str, Address] = {}
    for _, a in to + cc + bcc:
        unique.setdefault(a.key, a)
    return list(unique.values()), msg.as_bytes()


def _is_token(s: str) -> bool:
    return 0 < len(s) <= 64 and all(c.isascii() and (c.isalnum() or c in "!#$&-^_.+") for c in s)


def safe_filename(name: str) -> str:
    """A file name as a header may carry it: the last path segment, no control
    characters, at most 200 characters ("attachment" when nothing is left)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if c.isprintable())[:200].strip()
    return clean or "attachment"


def with_bcc(data: bytes, draft: Draft) -> bytes:
    """`data` with the Bcc field of `draft` added (the sender's copy in Sent and
    Drafts; the recipients' copy never has it)."""
    bcc = recipients(draft.bcc, "Bcc")
    if not bcc:
        return data
    head = EmailMessage(policy=email.policy.SMTP)
    head["Bcc"] = ", ".join(_header_address(n, a) for n, a in bcc)
    field = head.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return field + data


#: files one compose form may attach
MAX_FILES = 20
#: fields (other than files) one compose form may have
MAX_FORM_FIELDS = 32


def form_data(body: bytes, content_type: str) -> tuple[dict[str, str], list[Upload]]:
    """The fields and files of a multipart/form-data body (RFC 7578), read by the
    server's one MIME parser (`mime.parse`: linear, bounded parts). Text fields
    are UTF-8; a part with a filename is a file (an empty one, the browser's "no
    file chosen", is skipped). `ComposeError` past `MAX_FILES` or
    `MAX_FORM_FIELDS`."""
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    root = parse(head + body, max_parts=MAX_FILES + MAX_FORM_FIELDS + 2)
    data = head + body
    fields: dict[str, str] = {}
    files: list[Upload] = []
    for part in root.children:
        if (part.disposition or "").lower() != "form-data":
            continue
        name = part.disposition_param("name") or ""
        value = data[part.body_start : part.body_end]
        filename = part.disposition_param("filename")
        if filename is not None:
            if not filename and not value:
                continue
            if len(files) >= MAX_FILES:
                raise ComposeError(f"At most {MAX_FILES} attachments.")
            ctype = part.content_type if part.content_type_given else "application/octet-stream"
            files.append(Upload(filename, ctype, value))
        else:
            if len(fields) >= MAX_FORM_FIELDS:
                raise ComposeError("The form has too many fields.")
            fields.setdefault(name, value.decode("utf-8", "replace"))
    return fields, files


#: addresses the To field suggests
MAX_SUGGESTIONS = 200


def correspondents(texts: Sequence[str], me: str) -> list[str]:
    """Distinct addresses in `texts` (address lists as the summaries keep them),
    most recent last in, first out, as a user would type them; not `me`."""
    seen: set[str] = {me.lower()}
    out: list[str] = []
    for text in reversed(texts):
        for a in parse_address_list(text):
            if a.host is None or a.mailbox in (None, MISSING_MAILBOX) or a.host == MISSING_DOMAIN:
                continue
            key = a.addr_spec.lower()
            if key in seen:
                continue
            seen.add(key)
            out.append(_typed(" ".join((a.name or "").split()), a.addr_spec))
            if len(out) >= MAX_SUGGESTIONS:
                return out
    return out
