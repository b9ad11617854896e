"""Every ``web.AppKey`` and request key, in one place: shared state has a name and a type here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from slurmgate.policies.routing import Route
    from slurmgate.server.cache.store import ResponseCache
    from slurmgate.server.config import Settings
    from slurmgate.server.identity.base import Identity
    from slurmgate.server.identity.munge import MungeVerifier
    from slurmgate.server.identity.tokens import TokenStore
    from slurmgate.server.upstream.token import SlurmUserToken
    from slurmgate.server.upstream.transport import Transport

__all__ = [
    "CACHE",
    "IDENTITY",
    "MUNGE",
    "ROUTE",
    "SETTINGS",
    "SLURM_USER_TOKEN",
    "TARGET",
    "TOKENS",
    "TRANSPORT",
    "UPSTREAM_VERSIONS",
]

# --- application state (set once at start, in app.py's cleanup contexts) ---
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
TOKENS: web.AppKey[TokenStore] = web.AppKey("tokens")
MUNGE: web.AppKey[MungeVerifier | None] = web.AppKey("munge")
TRANSPORT: web.AppKey[Transport] = web.AppKey("transport")
SLURM_USER_TOKEN: web.AppKey[SlurmUserToken] = web.AppKey("slurm_user_token")
#: the response cache; None when ``cache.backend = "off"``
CACHE: web.AppKey[ResponseCache | None] = web.AppKey("cache")
#: API versions served, oldest first: generated versions the upstream also serves
UPSTREAM_VERSIONS: web.AppKey[tuple[str, ...]] = web.AppKey("upstream_versions")

# --- per request (set by pipeline steps, read by later ones) ---
#: the routing-table row of the matched operation (set by routing)
ROUTE: web.RequestKey[Route] = web.RequestKey("route")
#: path and query to send upstream, rebuilt from the matched template (set by routing)
TARGET: web.RequestKey[str] = web.RequestKey("target")
#: the authenticated caller (set by authenticate)
IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity")
