"""Builds the gateway: middleware order and cleanup contexts are declared here, and only here.

Request pipeline (outermost first)::

    observe              request id, metrics, access log line (server/pipeline/observe.py)
    shortcut             a repeat of a request just answered from the cache: that answer again,
                         when nothing the steps below decided on changed (pipeline/shortcut.py)
    error_middleware     every error -> slurmrestd's envelope (server/errors.py)
    route_middleware     matched operation -> request[ROUTE], request[TARGET] (server/routing.py)
    limit_refusals       a 401 counts against its source's rate limit: 429 once over (limit.py)
    authenticate         credentials -> request[IDENTITY], or 401 (server/pipeline/authenticate.py)
    limit_callers        each request counts against its caller's rate limit, or 429 (limit.py)
    authorize            scope, group and network requirements, accounts, or 403 (authorize.py)
    cache                reads from the response cache; writes invalidate it (pipeline/cache.py)
    forward              act for the caller upstream, pass the answer through (pipeline/upstream.py)

``observe`` sits outside ``error_middleware`` so that it sees every answer exactly as the client
gets it: the envelope that ``error_middleware`` makes of a 401, 403, 404 or 502 is counted with
its real status, and gets the ``X-Request-ID`` header like any other answer. Inside, it would see
exceptions instead and have to guess their statuses. Only a client going away (499 in the log)
and aiohttp's own parser errors, answered before any middleware runs, escape it.

Rate limits come before authorization and the cache on purpose: a refused request and a cache
hit are requests too (docs/operations.md, Limits).

Long-lived resources, started in this order and stopped in reverse: the tokens file (and its
watcher), the MUNGE verifier, the upstream transport, the SlurmUser token (and its renewal), the
response cache (and its Redis connections), the discovery of the API versions the upstream
serves, the health checks, the job events' poller (server/events/service.py), and the SIGHUP
reloader (server/reload.py). On shutdown, the job event streams are ended first (a final
``end`` event), so that aiohttp does not wait for them. Made here, holding no
resource: the Prometheus registry (``app[METRICS]``, whose collectors read the cache, the token,
the gate and the limits when scraped), the rate limits (``app[RATE_LIMITS]``), the cap on
upstream calls (``app[UPSTREAM_GATE]``, taken in ``send_as``) and the group and network rules
(``app[REQUIREMENTS]``, a list the reloader refills in place).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from aiohttp import web

from slurmgate.generated.endpoints import ENDPOINTS
from slurmgate.policies.requirements import GroupCache, user_groups
from slurmgate.server.config import Settings
from slurmgate.server.endpoints import bind
from slurmgate.server.errors import error_middleware
from slurmgate.server.events.service import events_ctx, events_shutdown
from slurmgate.server.health import health_ctx
from slurmgate.server.identity.munge import munge_ctx
from slurmgate.server.identity.tokens import tokens_ctx
from slurmgate.server.keys import (
    CACHE,
    CONFIG_FILE,
    JOB_EVENTS,
    METRICS,
    RATE_LIMITS,
    REQUIREMENTS,
    SETTINGS,
    SLURM_USER_TOKEN,
    UPSTREAM_GATE,
    UPSTREAM_VERSIONS,
)
from slurmgate.server.metrics import Metrics
from slurmgate.server.pipeline.authenticate import authenticate
from slurmgate.server.pipeline.authorize import authorize
from slurmgate.server.pipeline.cache import cache, cache_ctx
from slurmgate.server.pipeline.limit import limit_callers, limit_refusals
from slurmgate.server.pipeline.observe import observe
from slurmgate.server.pipeline.shortcut import shortcut
from slurmgate.server.pipeline.upstream import forward
from slurmgate.server.reload import make_gate, make_limits, reload_ctx
from slurmgate.server.routing import add_api_routes, add_endpoint, route_middleware, versions_ctx
from slurmgate.server.upstream import slurm_user_token_ctx, transport_ctx

__all__ = ["build_app"]

log = logging.getLogger("slurmgate.server")


def _served(request: web.Request) -> tuple[str, ...]:
    return request.app[UPSTREAM_VERSIONS]


def build_app(settings: Settings, *, config_file: Path | None = None) -> web.Application:
    """The gateway's aiohttp application for ``settings``; SIGHUP re-reads ``config_file``."""
    authorization = settings.authorization
    requirements = list(authorization.requirements())
    groups = GroupCache(
        partial(
            user_groups,
            passwd_file=authorization.passwd_file,
            group_file=authorization.group_file,
        ),
        ttl=authorization.group_cache_seconds,
    )
    app = web.Application(
        middlewares=[
            observe(),
            shortcut(),
            error_middleware(supported=_served),
            route_middleware(),
            limit_refusals(),
            authenticate(),
            limit_callers(),
            authorize(requirements=requirements, groups=groups.groups),
            cache(),
        ],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CONFIG_FILE] = config_file
    app[REQUIREMENTS] = requirements
    app[RATE_LIMITS] = make_limits(settings)
    app[UPSTREAM_GATE] = make_gate(settings)
    app[METRICS] = Metrics(
        cache=lambda: app.get(CACHE),
        cache_backend=settings.cache.backend,
        token=lambda: app.get(SLURM_USER_TOKEN),
        gate=lambda: app.get(UPSTREAM_GATE),
        limits=lambda: app.get(RATE_LIMITS),
        events=lambda: app.get(JOB_EVENTS),
    )
    app.cleanup_ctx.extend(
        [
            tokens_ctx,
            munge_ctx,
            transport_ctx,
            slurm_user_token_ctx,
            cache_ctx,
            versions_ctx,
            health_ctx,
            events_ctx,
            reload_ctx,
        ]
    )
    # The gateway's own endpoints, as policies/endpoints/ declares them (generated/endpoints.py).
    for row, handler in bind(ENDPOINTS):
        add_endpoint(app, row, handler)
    add_api_routes(app, forward)
    app.on_shutdown.append(_stopping)
    app.on_shutdown.append(events_shutdown)
    return app


async def _stopping(app: web.Application) -> None:
    # aiohttp has closed the listening sockets; it now waits for the requests under way.
    log.info(
        "stopping: no new connections; requests under way have %g s to finish "
        "(listen.shutdown_timeout), then upstream connections and the cache are closed",
        app[SETTINGS].listen.shutdown_timeout,
    )
