"""Request pipeline: rate limits (server/ops/limits.py), answered with 429 and ``Retry-After``.

Two checks, each a plain function that the chain (server/pipeline/chain.py) calls:

- :func:`check_caller`, right after authentication: every request of a token counts against the
  token's bucket, every request of a MUNGE user against that user's, whatever happens next:
  refused by authorization (403), answered from the cache (a hit is a request like any other:
  the limit is on what a client asks, not on what slurmctld sees, which upstream.max_concurrency
  bounds). Requests served without credentials (``/health``, ``/openapi/v3``...) count against
  their source address's anonymous bucket.
- :func:`check_refusal`, when authentication refuses: a request refused for its credentials (401)
  counts against its source address's anonymous bucket too; once that is empty the answer is
  429 instead of 401, so that a client looping on a bad token is told to back off. Requests with
  valid credentials never touch the address's bucket: users behind one NAT do not share a limit
  because one of them sends garbage.

A request that matched nothing (404, 405) is not counted. A refusal records
``request[DECISION] = "limited"`` for the access log and the metrics.
"""

from __future__ import annotations

import time

from aiohttp import web

from slurmgate.server.errors import TooManyRequests, Unauthenticated
from slurmgate.server.keys import DECISION, IDENTITY, RATE_LIMITS
from slurmgate.server.ops.limits import Rate

__all__ = ["check_caller", "check_refusal"]


def _refuse(request: web.Request, who: str, wait: float, limit: Rate) -> TooManyRequests:
    request[DECISION] = "limited"
    return TooManyRequests(
        f"{who} is over its rate limit of {limit.rate:g} requests per second "
        f"(bursts of {limit.burst}); try again in {wait:.3g} s",
        retry_after=wait,
        source="slurmgate rate limit",
    )


def check_caller(request: web.Request) -> None:
    """Count ``request`` against its caller's bucket; :class:`TooManyRequests` when empty."""
    limits = request.app[RATE_LIMITS]
    identity = request.get(IDENTITY)
    if identity is None and request.match_info.http_exception is not None:
        return  # matched nothing: its 404 or 405 costs less than counting it would
    if identity is not None:
        over = limits.caller(identity, time.monotonic())
        if over is not None:
            raise _refuse(request, identity.name, *over)
        return
    over = limits.anonymous(request.remote, time.monotonic())
    if over is not None:
        raise _refuse(request, f"{request.remote or 'this source'} (without credentials)", *over)


def check_refusal(request: web.Request, refusal: Unauthenticated) -> None:
    """Count a 401 against the source's anonymous bucket; when empty, 429 replaces ``refusal``."""
    over = request.app[RATE_LIMITS].anonymous(request.remote, time.monotonic())
    if over is not None:
        wait, limit = over
        request[DECISION] = "limited"
        raise TooManyRequests(
            f"{refusal.description}; and {request.remote or 'this source'} is over its rate "
            f"limit for requests without valid credentials ({limit.rate:g} per second)",
            retry_after=wait,
            source="slurmgate rate limit",
        ) from None
