"""Every ``web.AppKey`` and request key, in one place: shared state has a name and a type here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from pathlib import Path

    from slurmgate.policies.requirements import Requirement
    from slurmgate.policies.routing import Route
    from slurmgate.server.cache.store import ResponseCache
    from slurmgate.server.config import Settings
    from slurmgate.server.events.hub import JobEvents
    from slurmgate.server.identity.base import Identity
    from slurmgate.server.identity.munge import MungeVerifier
    from slurmgate.server.identity.tokens import TokenStore
    from slurmgate.server.ops.health import HealthMonitor
    from slurmgate.server.ops.limits import RateLimits
    from slurmgate.server.ops.metrics import Metrics
    from slurmgate.server.ops.reload import Reloader
    from slurmgate.server.pipeline.route import Endpoint
    from slurmgate.server.upstream.gate import UpstreamGate
    from slurmgate.server.upstream.token import SlurmUserToken
    from slurmgate.server.upstream.transport import Transport
    from slurmgate.server.upstream.versions import UpstreamVersions

__all__ = [
    "CACHE",
    "CACHE_STATE",
    "CONFIG_FILE",
    "DECISION",
    "ENDPOINT",
    "HEALTH",
    "IDENTITY",
    "JOB_EVENTS",
    "METRICS",
    "MUNGE",
    "RATE_LIMITS",
    "RELOADER",
    "REQUEST_ID",
    "REQUIREMENTS",
    "ROUTE",
    "SETTINGS",
    "SLURM_USER_TOKEN",
    "TARGET",
    "TOKENS",
    "TRANSPORT",
    "UPSTREAM_GATE",
    "UPSTREAM_SECONDS",
    "UPSTREAM_STATUS",
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
#: the API versions served (``.served``, oldest first: generated versions the upstream also
#: serves); set in build_app, what it holds changed by versions_ctx (server/upstream/versions.py)
UPSTREAM_VERSIONS: web.AppKey[UpstreamVersions] = web.AppKey("upstream_versions")
#: the Prometheus registry and metrics of this app (set in build_app, never the global registry)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
#: the health checks and their last report (set by health_ctx)
HEALTH: web.AppKey[HealthMonitor] = web.AppKey("health")
#: the configuration file the settings came from, re-read on SIGHUP; None: settings made in code
#: (set in build_app)
CONFIG_FILE: web.AppKey[Path | None] = web.AppKey("config_file")
#: reloads the tokens file and the configuration on SIGHUP (set by reload_ctx)
RELOADER: web.AppKey[Reloader] = web.AppKey("reloader")
#: the rate limits and their buckets (set in build_app; SIGHUP reconfigures them)
RATE_LIMITS: web.AppKey[RateLimits] = web.AppKey("rate_limits")
#: the cap on calls to slurmrestd under way, and its queue (set in build_app)
UPSTREAM_GATE: web.AppKey[UpstreamGate] = web.AppKey("upstream_gate")
#: the job event stream and its subscribers (set by events_ctx, server/events/service.py)
JOB_EVENTS: web.AppKey[JobEvents] = web.AppKey("job_events")
#: the group and network rules of [[authorization.require]] in force: a list whose contents
#: SIGHUP replaces in place (set in build_app, read by the authorize step)
REQUIREMENTS: web.AppKey[list[Requirement]] = web.AppKey("requirements")

# --- per request (set by pipeline steps, read by later ones) ---
#: the routing-table row of the matched operation (set by routing)
ROUTE: web.RequestKey[Route] = web.RequestKey("route")
#: path and query to send upstream, rebuilt from the matched template (set by routing)
TARGET: web.RequestKey[str] = web.RequestKey("target")
#: the authenticated caller (set by authenticate)
IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity")
#: the gateway's own endpoint matched, with its operation id and scope (set by routing)
ENDPOINT: web.RequestKey[Endpoint] = web.RequestKey("endpoint")
#: the request id: the client's X-Request-ID when it is a short safe token, else a new one
#: (set by observe, returned in X-Request-ID on every answer)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
#: "allow" or "deny" (set by authorize), "unauthenticated" or "public" (set by authenticate),
#: "limited" (a rate limit refused it: set by limit);
#: absent when no step decided (a request that matched nothing)
DECISION: web.RequestKey[str] = web.RequestKey("decision")
#: what the cache did: "HIT", "MISS", "STALE" or "BYPASS", as in X-Cache (set by read_through);
#: absent on routes that are never cached and with the cache off
CACHE_STATE: web.RequestKey[str] = web.RequestKey("cache_state")
#: the status of the upstream call this request made (set by forward; absent when it made none
#: or the call failed)
UPSTREAM_STATUS: web.RequestKey[int] = web.RequestKey("upstream_status")
#: seconds the upstream call this request made took, failed calls included (set by forward)
UPSTREAM_SECONDS: web.RequestKey[float] = web.RequestKey("upstream_seconds")
