"""The last step: act for the caller upstream and pass slurmrestd's answer through untouched.

Only ``Accept`` and ``Content-Type`` of the client's headers go upstream (and the body, with its
length). The gateway adds ``X-SLURM-USER-TOKEN`` (its SlurmUser token) and ``X-SLURM-USER-NAME``
(the authenticated user); the client's ``Authorization`` and own ``X-SLURM-*`` headers never pass,
since slurmrestd would take them as credentials. The answer's status, body bytes and
``Content-Type`` are returned exactly as slurmrestd sent them, errors inside 200 bodies included.
The call's status and duration are recorded in ``request[UPSTREAM_STATUS]`` and
``request[UPSTREAM_SECONDS]`` for the access log.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from slurmgate.server.keys import (
    IDENTITY,
    ROUTE,
    TARGET,
    UPSTREAM_SECONDS,
    UPSTREAM_STATUS,
)
from slurmgate.server.upstream.acting import send_as
from slurmgate.server.upstream.transport import UpstreamResponse

__all__ = ["FORWARDED_HEADERS", "forward", "to_web_response"]

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
    """Send the matched operation upstream as the authenticated user; return its answer."""
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
    return to_web_response(answer)


def to_web_response(answer: UpstreamResponse) -> web.Response:
    """slurmrestd's answer as an aiohttp response: same status, headers and bytes."""
    response = web.Response(status=answer.status, reason=answer.reason or None, body=answer.body)
    for name, value in answer.headers:
        if name.lower() not in _HOP_BY_HOP:
            response.headers.add(name, value)
    # Without this aiohttp announces its own and Python's versions.
    response.headers["Server"] = "slurmgate"
    return response
