"""The rspamd stage: ask an rspamd daemon (HTTP ``POST /checkv2``) and add its score.

Protocol (rspamd's "protocol" documentation): the message is the request body;
the envelope travels in headers (``IP``, ``Helo``, ``From``, ``Rcpt`` once per
recipient, ``Queue-Id``, ``User``, ``Hostname``); the JSON answer carries
``score``, ``action`` and ``symbols``.

Rules:
- rspamd's score is added as the rule RSPAMD (its weight is rspamd's score),
  the top symbols in the detail. Action ``reject`` refuses with ``550 5.7.1``
  when `honor_reject`; ``soft reject``/``greylist`` tempfail with ``451 4.7.1``.
- Plain HTTP/1.1 over asyncio streams (one request per connection), bounded by
  `timeout` and `max_response`; trouble accepts when `fail_open`, else ``451``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from postier.filters.pipeline import Context, Phase, Verdict
from postier.mail.replies import Reply

R550_RSPAMD_REJECT = Reply(550, "5.7.1", "Message rejected as spam")
R451_RSPAMD_SOFT = Reply(451, "4.7.1", "Try again later")
R451_RSPAMD_DOWN = Reply(451, "4.7.0", "Spam scanner unavailable, try again later")


class RspamdError(Exception):
    pass


def _clean(value: str) -> str:
    return "".join(c for c in value if c >= " " and c != "\x7f")


async def check_v2(
    url: str,
    message: bytes,
    headers: Sequence[tuple[str, str]],
    *,
    timeout: float = 15.0,  # noqa: ASYNC109 (bounds the whole exchange)
    max_response: int = 1024 * 1024,
) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RspamdError(f"unsupported rspamd url {url!r} (http://host:port)")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path.rstrip("/") or "") + "/checkv2"

    async def go() -> dict[str, object]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = [
                f"POST {path} HTTP/1.1",
                f"Host: {host}:{port}",
                f"Content-Length: {len(message)}",
                "Connection: close",
            ]
            head += [f"{k}: {_clean(v)}" for k, v in headers]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + message)
            await writer.drain()
            raw = await reader.read(max_response + 1)
            while True:
                more = await reader.read(max_response + 1 - len(raw))
                if not more or len(raw) > max_response:
                    break
                raw += more
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        if len(raw) > max_response:
            raise RspamdError("response too large")
        status_line, _, rest = raw.partition(b"\r\n")
        fields = status_line.split(b" ", 2)
        if len(fields) < 2 or fields[1] != b"200":
            raise RspamdError(f"rspamd answered {status_line[:80]!r}")
        _, _, body = rest.partition(b"\r\n\r\n")
        try:
            data = json.loads(body)
        except ValueError:
            raise RspamdError("rspamd answer is not JSON") from None
        if not isinstance(data, dict):
            raise RspamdError("rspamd answer is not a JSON object")
        return data

    try:
        async with asyncio.timeout(timeout):
            return await go()
    except TimeoutError:
        raise RspamdError("timeout") from None
    except (OSError, ConnectionError) as e:
        raise RspamdError(f"cannot reach rspamd: {e}") from None


class RspamdStage:
    name = "rspamd"
    phases = frozenset({Phase.DATA})

    def __init__(
        self,
        url: str,
        *,
        hostname: str,
        timeout: float = 15.0,
        fail_open: bool = True,
        honor_reject: bool = True,
    ) -> None:
        self.url = url
        self.hostname = hostname
        self.timeout = timeout
        self.fail_open = fail_open
        self.honor_reject = honor_reject

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.message is None:
            return []
        headers = [
            ("IP", ctx.peer_ip),
            ("Helo", ctx.helo),
            ("From", ctx.sender or ""),
            ("Queue-Id", ctx.qid),
            ("Hostname", self.hostname),
        ]
        headers += [("Rcpt", r) for r in ctx.recipients]
        try:
            data = await check_v2(self.url, ctx.message, headers, timeout=self.timeout)
        except RspamdError as e:
            if self.fail_open:
                return [Verdict.accept(self.name, f"not checked: {e} (fail open)")]
            return [Verdict.tempfail(self.name, R451_RSPAMD_DOWN, str(e))]
        raw_score = data.get("score", 0.0)
        score = float(raw_score) if isinstance(raw_score, int | float) else 0.0
        action = str(data.get("action", "no action"))
        symbols = data.get("symbols")
        names = sorted(symbols)[:10] if isinstance(symbols, dict) else []
        detail = f"action={action} symbols={','.join(names)}"
        if action == "reject" and self.honor_reject:
            return [Verdict.reject(self.name, R550_RSPAMD_REJECT, detail)]
        if action in ("soft reject", "greylist"):
            return [Verdict.tempfail(self.name, R451_RSPAMD_SOFT, detail)]
        return [Verdict.scored(self.name, "RSPAMD", round(score, 2), detail)]
