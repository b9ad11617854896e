"""``GET /metrics``: the Prometheus metrics of server/ops/metrics.py; needs ``slurmgate:metrics``.

The text format Prometheus asks for, or OpenMetrics when its ``Accept`` header says so.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from slurmgate.server.keys import METRICS

__all__ = ["metrics"]


async def metrics(request: web.Request) -> web.Response:
    """The app's registry, encoded as the scraper asks."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(
        body=encode(request.app[METRICS].registry),
        headers={"Content-Type": content_type, "Server": "slurmgate", "Cache-Control": "no-store"},
    )
