"""Reading a state-changing form the way every page of the web listener must.

Rules (the webmail's, in one place for the admin pages and any later ones):
- A state-changing request is a POST with an urlencoded body of at most `limit`
  octets and `MAX_FIELDS` fields; anything else is refused (None).
- It must carry the session's CSRF token (`csrf`, compared in constant time) and,
  when the browser sends `Origin`, come from our own origin. A request that fails
  either is refused before anything happens.
- Where to go after login (`next`) is a path on this site or nothing
  (`local_path`): never a URL another site could be reached by, so the login
  page cannot be made an open redirect.
"""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request

from postier.web.webmail.sessions import Session

#: octets a form may have
MAX_FORM = 64 * 1024
MAX_FIELDS = 32
#: characters of a `next` path kept
MAX_NEXT = 2000


def local_path(value: str | None) -> str:
    """`value` when it is a path on this site ("/admin/queue?state=held"), else "".

    A browser resolves "//host", "/\\host" and "/<tab>/host" (it drops tabs and
    newlines, and reads a backslash as a slash) to another site, and anything with
    a scheme ("https:", "javascript:") is not a path: one slash, then no slash or
    backslash, no whitespace or control character anywhere, no backslash at all.
    """
    if not value or len(value) > MAX_NEXT or not value.startswith("/"):
        return ""
    if value[1:2] in ("/", "\\") or "\\" in value:
        return ""
    if any(c <= " " or c == "\x7f" for c in value):
        return ""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc:
        return ""
    return value


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # SameSite=Strict and the token still apply
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def read_form(request: Request, limit: int = MAX_FORM) -> dict[str, str] | None:
    """The urlencoded form of a POST, None if it is another type or too big."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except ValueError:
        return None
    return dict(pairs)


async def checked_form(
    request: Request, session: Session | None, limit: int = MAX_FORM
) -> dict[str, str] | None:
    """The form when it carries `session`'s CSRF token from our origin, else None."""
    form = await read_form(request, limit)
    if form is None or session is None or not same_origin(request):
        return None
    return form if session.csrf_ok(form.get("csrf")) else None
