"""Builds the gateway: middleware order and cleanup contexts are declared here, and only here.

Request pipeline (outermost first)::

    observe              request id, metrics, access log line (server/pipeline/observe.py)
    error_middleware     every error -> slurmrestd's envelope (server/errors.py)
    route_middleware     matched operation -> request[ROUTE], request[TARGET] (server/routing.py)
    authenticate         credentials -> request[IDENTITY], or 401 (server/pipeline/authenticate.py)
    authorize            scope, group and network requirements, accounts, or 403 (authorize.py)
    cache                reads from the response cache; writes invalidate it (pipeline/cache.py)
    forward              act for the caller upstream, pass the answer through (pipeline/upstream.py)

``observe`` sits outside ``error_middleware`` so that it sees every answer exactly as the client
gets it: the envelope that ``error_middleware`` makes of a 401, 403, 404 or 502 is counted with
its real status, and gets the ``X-Request-ID`` header like any other answer. Inside, it would see
exceptions instead and have to guess their statuses. Only a client going away (499 in the log)
and aiohttp's own parser errors, answered before any middleware runs, escape it.

Long-lived resources, started in this order and stopped in reverse: the tokens file (and its
watcher), the MUNGE verifier, the upstream transport, the SlurmUser token (and its renewal), the
response cache (and its Redis connections), the discovery of the API versions the upstream
serves, and the health checks. The Prometheus registry (``app[METRICS]``) is the app's own,
made here: it holds no resource, and its collectors read the cache and the token when scraped.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from slurmgate.policies.requirements import GroupCache, user_groups
from slurmgate.server.config import Settings
from slurmgate.server.endpoints import hardware, health, meta, metrics, openapi
from slurmgate.server.errors import error_middleware
from slurmgate.server.health import health_ctx
from slurmgate.server.identity.munge import munge_ctx
from slurmgate.server.identity.tokens import tokens_ctx
from slurmgate.server.keys import CACHE, METRICS, SETTINGS, SLURM_USER_TOKEN, UPSTREAM_VERSIONS
from slurmgate.server.metrics import Metrics
from slurmgate.server.pipeline.authenticate import authenticate
from slurmgate.server.pipeline.authorize import authorize
from slurmgate.server.pipeline.cache import cache, cache_ctx
from slurmgate.server.pipeline.observe import observe
from slurmgate.server.pipeline.upstream import forward
from slurmgate.server.routing import add_api_routes, add_endpoint, route_middleware, versions_ctx
from slurmgate.server.upstream import slurm_user_token_ctx, transport_ctx

__all__ = ["build_app"]


def _served(request: web.Request) -> tuple[str, ...]:
    return request.app[UPSTREAM_VERSIONS]


def build_app(settings: Settings) -> web.Application:
    """The gateway's aiohttp application for ``settings``."""
    authorization = settings.authorization
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
            error_middleware(supported=_served),
            route_middleware(),
            authenticate(),
            authorize(requirements=authorization.requirements(), groups=groups.groups),
            cache(),
        ],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics(
        cache=lambda: app.get(CACHE),
        cache_backend=settings.cache.backend,
        token=lambda: app.get(SLURM_USER_TOKEN),
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
        ]
    )
    # The gateway's own endpoints; their scopes come from policies/scopes.toml.
    add_endpoint(
        app,
        "/meta/versions",
        meta.versions,
        operation_id="slurmgate_get_meta_versions",
        access="public",
    )
    add_endpoint(
        app, "/openapi/v3", openapi.openapi, operation_id="slurmgate_get_openapi", access="public"
    )
    add_endpoint(
        app,
        "/openapi/v3/{version:v[0-9]+\\.[0-9]+\\.[0-9]+}",
        openapi.openapi_version,
        operation_id="slurmgate_get_openapi_version",
        access="public",
    )
    add_endpoint(
        app, "/health", health.health, operation_id="slurmgate_get_health", access="optional"
    )
    add_endpoint(
        app, "/metrics", metrics.metrics, operation_id="slurmgate_get_metrics", access="token"
    )
    # Computed from slurmrestd's nodes and partitions; cached as policies/cache.toml says.
    for name, handler in (
        ("table", hardware.table),
        ("stats", hardware.stats),
        ("avail", hardware.avail),
    ):
        add_endpoint(
            app,
            f"/hardware/{name}",
            handler,
            operation_id=f"slurmgate_get_hardware_{name}",
            access="token",
        )
    add_api_routes(app, forward)
    return app
