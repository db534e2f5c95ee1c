"""`GET /metrics`: the Prometheus text exposition of `postier.metrics.registry()`
(this process's metrics, or with several workers the sum of every worker's).

Rules:
- The queue gauges are refreshed from the store on every scrape (one
  `Store.queue_list`), so they are exact whichever process changed the queue.
- Only clients in `allow` (``web.metrics_allow``) may scrape (default: loopback
  and the private ranges, where a Prometheus server normally sits); others get 403. The page exposes
  traffic volumes and queue sizes, nothing about message content or addresses.
- The format is Prometheus text 0.0.4, or OpenMetrics when the scraper asks for
  it in Accept (prometheus_client's content negotiation).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from postier import metrics
from postier.config.schema import WebSettings

if TYPE_CHECKING:
    from postier.store.api import Store

log = logging.getLogger("postier.web")

#: networks allowed to scrape by default (the config's default)
DEFAULT_ALLOW: tuple[str, ...] = WebSettings().metrics_allow


def _allowed(
    host: str | None, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    if not host:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


def metrics_endpoint(
    store: Store, *, allow: Sequence[str] = DEFAULT_ALLOW
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint serving `/metrics` for a server using `store`."""
    networks = [ipaddress.ip_network(n, strict=False) for n in allow]

    async def endpoint(request: Request) -> Response:
        client = request.client.host if request.client else None
        if not _allowed(client, networks):
            return PlainTextResponse("metrics are not served to this address\n", 403)
        try:
            await metrics.QUEUE.refresh(store)
        except Exception:  # boundary: a store hiccup must not hide every other metric
            log.exception("metrics: reading the queue failed")
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.registry()), headers={"Content-Type": content_type})

    return endpoint
