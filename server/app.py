"""Builds the gateway: the request chain's steps and the cleanup contexts are declared here, and
only here.

Every request takes one path, drawn in server/pipeline/chain.py: observe, route, authenticate
(and the rate limit of refusals), limit, authorize, then the handler (``forward``, which reads
through the cache, or one of the gateway's own endpoints), with every error answered in
slurmrestd's envelope and observed as the client gets it.

Long-lived resources, started in this order and stopped in reverse: the tokens file (and its
watcher), the MUNGE verifier, the upstream transport, the SlurmUser token (and its renewal), the
response cache (and its Redis connections), the discovery of the API versions the upstream
serves, the health checks, the job events' poller (server/events/service.py), and the SIGHUP
reloader (server/ops/reload.py). On shutdown, the job event streams are ended first (a final
``end`` event), so that aiohttp does not wait for them. Made here, holding no
resource: the Prometheus registry (``app[METRICS]``, whose collectors read the cache, the token,
the gate and the limits when scraped), the rate limits (``app[RATE_LIMITS]``), the cap on
upstream calls (``app[UPSTREAM_GATE]``, taken in ``send_as``), the group and network rules
(``app[REQUIREMENTS]``, a list the reloader refills in place) and the API versions served
(``app[UPSTREAM_VERSIONS]``, a holder whose contents the discovery replaces: nothing writes to
the app once it has started).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from aiohttp import web

from slurmgate.generated.endpoints import ENDPOINTS
from slurmgate.policies.requirements import GroupCache, user_groups
from slurmgate.server.cache.flight import SingleFlight
from slurmgate.server.config import Settings
from slurmgate.server.endpoints import bind
from slurmgate.server.events.service import events_ctx, events_shutdown
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
from slurmgate.server.ops.health import health_ctx
from slurmgate.server.ops.metrics import Metrics
from slurmgate.server.ops.reload import make_gate, make_limits, reload_ctx
from slurmgate.server.pipeline.authenticate import authenticate
from slurmgate.server.pipeline.authorize import authorize
from slurmgate.server.pipeline.cache import cache_ctx
from slurmgate.server.pipeline.chain import Steps, pipeline
from slurmgate.server.pipeline.limit import check_caller, check_refusal
from slurmgate.server.pipeline.observe import Observer
from slurmgate.server.pipeline.route import add_api_routes, add_endpoint, route
from slurmgate.server.pipeline.upstream import forward
from slurmgate.server.upstream import (
    UpstreamVersions,
    slurm_user_token_ctx,
    transport_ctx,
    versions_ctx,
)

__all__ = ["build_app"]

log = logging.getLogger("slurmgate.server")


def _served(request: web.Request) -> tuple[str, ...]:
    return request.app[UPSTREAM_VERSIONS].served


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
        flight=SingleFlight(name="slurmgate group resolution"),
    )
    steps = Steps(
        observe=Observer(),
        route=route,
        authenticate=authenticate(),
        refused=check_refusal,
        limit=check_caller,
        authorize=authorize(requirements=requirements, groups=groups.groups),
        supported=_served,
    )
    app = web.Application(
        middlewares=[pipeline(steps)], client_max_size=settings.limits.max_body_bytes
    )
    app[SETTINGS] = settings
    app[CONFIG_FILE] = config_file
    app[REQUIREMENTS] = requirements
    app[RATE_LIMITS] = make_limits(settings)
    app[UPSTREAM_GATE] = make_gate(settings)
    # A holder: discovery changes what it holds, never the app once it has started.
    app[UPSTREAM_VERSIONS] = UpstreamVersions(settings.versions)
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
