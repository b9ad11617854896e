"""``GET /meta/versions``: which API versions this gateway serves; needs no credentials."""

from __future__ import annotations

import json

from aiohttp import web

from slurmgate.generated import VERSIONS
from slurmgate.server.keys import UPSTREAM_VERSIONS

__all__ = ["versions"]


async def versions(request: web.Request) -> web.Response:
    """Served versions (oldest first), the newest one, and the Slurm release of each spec."""
    served = request.app[UPSTREAM_VERSIONS].served
    body = {
        "versions": [
            {"version": api.version, "slurm_release": api.slurm_release}
            for api in VERSIONS
            if api.version in served
        ],
        "latest": served[-1] if served else None,
    }
    return web.Response(
        body=json.dumps(body, indent=2).encode() + b"\n",
        content_type="application/json",
        headers={"Server": "slurmgate"},
    )
