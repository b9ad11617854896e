"""``GET /health``: 200 when every check is ok, 503 otherwise (server/ops/health.py has the checks).

Anyone may ask, without credentials (load balancers, probes), and gets only the overall status:
``{"status": "ok"}``, ``"degraded"`` or ``"failing"``. A caller whose token carries
``slurmgate:health`` also gets every check's details; credentials without that scope are refused
(403) by the authorize step, invalid ones (401) by authenticate, as on any other route.
"""

from __future__ import annotations

import json

from aiohttp import web

from slurmgate.server.keys import ENDPOINT, HEALTH, IDENTITY, SETTINGS

__all__ = ["health"]


async def health(request: web.Request) -> web.Response:
    """The health report: the status for everyone, the checks for the scope's holders."""
    report = await request.app[HEALTH].report()
    identity = request.get(IDENTITY)
    scope = request[ENDPOINT].scope
    detailed = identity is not None and scope is not None and scope in identity.scopes
    body = report.details() if detailed else {"status": report.status}
    if report.status == "ok":
        status = 200
    elif report.status == "degraded":
        status = request.app[SETTINGS].health.degraded_status
    else:
        status = 503
    return web.Response(
        status=status,
        body=json.dumps(body, indent=2).encode() + b"\n",
        content_type="application/json",
        headers={"Server": "slurmgate", "Cache-Control": "no-store"},
    )
