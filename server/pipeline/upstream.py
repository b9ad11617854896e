"""The last step: act for the caller upstream and pass slurmrestd's answer through untouched.

Only ``Accept`` and ``Content-Type`` of the client's headers go upstream (and the body, with its
length). The gateway adds ``X-SLURM-USER-TOKEN`` (its SlurmUser token) and ``X-SLURM-USER-NAME``
(the authenticated user); the client's ``Authorization`` and own ``X-SLURM-*`` headers never pass,
since slurmrestd would take them as credentials. The answer's status, body bytes and
``Content-Type`` are returned exactly as slurmrestd sent them, errors inside 200 bodies included.
The call's status and duration are recorded in ``request[UPSTREAM_STATUS]`` and
``request[UPSTREAM_SECONDS]`` for the access log.

Reads go through the cache around the upstream call (server/pipeline/cache.py); a write is sent,
then retires the cache groups its route names, whatever the outcome.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from aiohttp import web

from slurmgate.server.keys import (
    IDENTITY,
    ROUTE,
    TARGET,
    UPSTREAM_SECONDS,
    UPSTREAM_STATUS,
)
from slurmgate.server.pipeline.cache import invalidate, read_through, respond
from slurmgate.server.upstream.acting import send_as
from slurmgate.server.upstream.transport import UpstreamResponse

__all__ = ["FORWARDED_HEADERS", "forward", "passed_on"]

log = logging.getLogger("slurmgate.upstream")

#: The client's headers that reach slurmrestd; everything else is dropped.
FORWARDED_HEADERS = ("Accept", "Content-Type")
#: Headers of the answer that describe the connection, not the content; aiohttp sets its own.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "date",
        "server",
    }
)


async def forward(request: web.Request) -> web.StreamResponse:
    """The handler of every slurmrestd operation: its answer, through the cache for reads."""
    route = request[ROUTE]
    fetch = partial(_call, request)
    if not route.mutating:
        return await read_through(request, fetch)
    try:
        return respond(await fetch())
    finally:
        await invalidate(request, route.invalidates)


async def _call(request: web.Request) -> UpstreamResponse:
    """Send the matched operation upstream as the authenticated user; its answer, passed on."""
    identity = request[IDENTITY]
    route = request[ROUTE]
    body = await request.read()
    headers = [
        (name, request.headers[name]) for name in FORWARDED_HEADERS if name in request.headers
    ]
    started = time.perf_counter()
    try:
        answer = await send_as(
            request.app,
            route.method,
            request[TARGET],
            user=identity.user,
            headers=headers,
            body=body,
        )
    finally:
        request[UPSTREAM_SECONDS] = time.perf_counter() - started
    request[UPSTREAM_STATUS] = answer.status
    log.debug("%s %s as %s -> %d", route.method, request[TARGET], identity.user, answer.status)
    return passed_on(answer)


def passed_on(answer: UpstreamResponse) -> UpstreamResponse:
    """slurmrestd's answer as the gateway passes it on (and stores it): same status and bytes,
    its headers less those about the connection."""
    headers = tuple(
        (name, value) for name, value in answer.headers if name.lower() not in _HOP_BY_HOP
    )
    return UpstreamResponse(answer.status, answer.reason, headers, answer.body)
