"""Builds the gateway: middleware order and cleanup contexts are declared here, and only here.

Request pipeline (outermost first)::

    error_middleware     every error -> slurmrestd's envelope (server/errors.py)
    route_middleware     matched operation -> request[ROUTE], request[TARGET] (server/routing.py)
    authenticate         credentials -> request[IDENTITY], or 401 (server/pipeline/authenticate.py)
    authorize            scope, group and network requirements, accounts, or 403 (authorize.py)
    cache                reads from the response cache; writes invalidate it (pipeline/cache.py)
    forward              act for the caller upstream, pass the answer through (pipeline/upstream.py)

Long-lived resources, started in this order and stopped in reverse: the tokens file (and its
watcher), the MUNGE verifier, the upstream transport, the SlurmUser token (and its renewal), the
response cache (and its Redis connections), and the discovery of the API versions the upstream
serves.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from slurmgate.policies.requirements import GroupCache, user_groups
from slurmgate.server.config import Settings
from slurmgate.server.endpoints import meta, openapi
from slurmgate.server.errors import error_middleware
from slurmgate.server.identity.munge import munge_ctx
from slurmgate.server.identity.tokens import tokens_ctx
from slurmgate.server.keys import SETTINGS, UPSTREAM_VERSIONS
from slurmgate.server.pipeline.authenticate import authenticate
from slurmgate.server.pipeline.authorize import authorize
from slurmgate.server.pipeline.cache import cache, cache_ctx
from slurmgate.server.pipeline.upstream import forward
from slurmgate.server.routing import add_api_routes, route_middleware, versions_ctx
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
            error_middleware(supported=_served),
            route_middleware(),
            authenticate(),
            authorize(requirements=authorization.requirements(), groups=groups.groups),
            cache(),
        ],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend(
        [tokens_ctx, munge_ctx, transport_ctx, slurm_user_token_ctx, cache_ctx, versions_ctx]
    )
    # Routes named "public-..." need no credentials.
    app.router.add_get("/meta/versions", meta.versions, name="public-meta-versions")
    app.router.add_get("/openapi/v3", openapi.openapi, name="public-openapi")
    app.router.add_get(
        "/openapi/v3/{version:v[0-9]+\\.[0-9]+\\.[0-9]+}",
        openapi.openapi_version,
        name="public-openapi-version",
    )
    add_api_routes(app, forward)
    return app
