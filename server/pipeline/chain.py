"""The one path every request takes: the steps called in order, as plain calls.

::

    observe.begin    request id (server/pipeline/observe.py)
    route            matched operation -> request[ROUTE], request[TARGET] (server/pipeline/route.py)
    authenticate     credentials -> request[IDENTITY], or 401 (server/pipeline/authenticate.py);
                     a 401 counts against its source's rate limit: 429 once over (limit.py)
    limit            each request counts against its caller's rate limit, or 429 (limit.py)
    authorize        scope, group and network requirements, accounts, or 403 (authorize.py)
    handler          forward (server/pipeline/upstream.py: through the cache for reads) or one
                     of the gateway's own endpoints (server/endpoints/)
    errors           every error -> slurmrestd's envelope (server/errors.py)
    observe.end      metrics and the access-log line, of the answer as the client gets it

One aiohttp middleware runs them: no step can be skipped by a faster second path, and a new
step is one more call here. Steps pass what they decide through request keys
(server/keys.py) and never import each other. Rate limits come before authorization and the
cache on purpose: a refused request and a cache hit are requests too (docs/operations.md,
Limits). Only a client going away (499 in the log) and aiohttp's own parser errors, answered
before any middleware runs, escape the envelope.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from slurmgate.server.errors import Unauthenticated, answer_error
from slurmgate.server.pipeline.observe import CLIENT_CLOSED, REQUEST_ID_HEADER, Observer

__all__ = ["Steps", "pipeline"]


@dataclass(frozen=True, slots=True)
class Steps:
    """The steps of the chain, in the order they run (see the module docstring)."""

    observe: Observer
    route: Callable[[web.Request], None]
    authenticate: Callable[[web.Request], Awaitable[None]]
    #: called with authentication's refusal before it is answered; may raise 429 instead
    refused: Callable[[web.Request, Unauthenticated], None]
    limit: Callable[[web.Request], None]
    authorize: Callable[[web.Request], Awaitable[None]]
    #: the API versions served, which a 404 names
    supported: Callable[[web.Request], Sequence[str]]


def pipeline(steps: Steps) -> Middleware:
    """The application's only middleware: ``steps``, then the matched route's handler."""
    observe = steps.observe
    route = steps.route
    authenticate = steps.authenticate
    refused = steps.refused
    limit = steps.limit
    authorize = steps.authorize
    supported = steps.supported

    @web.middleware
    async def impl(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = observe.begin(request)
        response: web.StreamResponse | None = None
        status = 500
        try:
            try:
                route(request)
                try:
                    await authenticate(request)
                except Unauthenticated as refusal:
                    refused(request, refusal)
                    raise
                limit(request)
                await authorize(request)
                response = await handler(request)
            except Exception as error:  # every error is answered in the envelope
                response = answer_error(request, error, supported(request))
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except web.HTTPException as error:
            # Only those below 400 get past answer_error (none today; a redirect one day).
            status = error.status
            error.headers[REQUEST_ID_HEADER] = request_id
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            seconds = time.perf_counter() - started
            observe.end(request, request_id, status, seconds, response=response)

    return impl
