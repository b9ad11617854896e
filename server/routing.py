"""slurmrestd's paths, served from the generated routing tables.

Every operation of every generated version is registered at its own path, with and without the
trailing slash (slurmrestd accepts both), and under ``/<namespace>/latest/...``. Which versions
are live is decided per request from ``app[UPSTREAM_VERSIONS]`` (what the upstream serves, learnt
by server/upstream/versions.py), so a version the upstream lacks answers 404 naming the ones it has.

The path sent upstream is rebuilt from the matched template and the path parameters, never copied
from the client: each parameter must match a conservative character set, so that the gateway and
slurmrestd cannot disagree about which operation (and which job, node or account) a path names.
The query string is forwarded byte for byte.

The gateway's own endpoints (``/meta/versions``, ``/openapi/v3``, ``/health``, ``/metrics``,
``/hardware/...``) are registered with :func:`add_endpoint`, which names them for authentication
(``public-*``: no credentials; ``optional-*``: credentials checked only when sent) and takes the
scope they need from the ``namespace = "slurmgate"`` rules of ``policies/scopes.toml``. One that a
``namespace = "slurmgate"`` rule of ``policies/cache.toml`` caches also gets a routing-table row
(``request[ROUTE]``, ``request[TARGET]``: its path and query), so that authorize and cache treat it
like any cached read: scope and requirements, cache group, freshness, single-flight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from slurmgate.generated import ROUTES
from slurmgate.policies.routing import CachePolicy, Namespace, Route
from slurmgate.policies.rules import CacheRules, ScopeRules, load_cache_rules, load_scope_rules
from slurmgate.policies.selectors import split_path
from slurmgate.server.errors import BadRequest, NotFound
from slurmgate.server.keys import (
    ENDPOINT,
    ROUTE,
    TARGET,
    UPSTREAM_VERSIONS,
)

__all__ = [
    "LATEST",
    "Endpoint",
    "add_api_routes",
    "add_endpoint",
    "not_served",
    "own_endpoints",
    "route",
]

LATEST = "latest"
#: Path parameter values: job ids (123, 123_4, 123+1), node, partition, account, user, QOS,
#: reservation, cluster and wckey names, host lists (n[1-4]). No "/", "%", "?", "#" or spaces.
_PARAM = re.compile(r"[A-Za-z0-9._+,:@=\[\]-]{1,256}")
_PARAM_NAMES = re.compile(r"{(\w+)}")


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one registered aiohttp route stands for."""

    route: Route
    version: str
    #: the template to send upstream: the spec's path, with the client's choice of trailing slash
    template: str
    #: registered under /latest/: resolved per request to the newest version served
    latest: bool = False


@dataclass(frozen=True, slots=True)
class _Table:
    by_route: dict[web.AbstractRoute, _Entry]
    #: (version, method, template) -> entry, to resolve /latest/ paths
    by_template: dict[tuple[str, str, str], _Entry]


_TABLE: web.AppKey[_Table] = web.AppKey("routing_table")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One of the gateway's own endpoints, as the pipeline sees it."""

    #: its operationId in the gateway's OpenAPI document (version-independent)
    operation_id: str
    #: the scope credentials must carry (None: public, credentials are never looked at)
    scope: str | None
    #: its routing-table row when policies/cache.toml caches it (None: never cached)
    route: Route | None = None


_ENDPOINTS: web.AppKey[dict[web.AbstractRoute, Endpoint]] = web.AppKey("own_endpoints")

#: "public": anyone; "optional": anyone, but credentials that are sent must be valid and carry
#: the scope; "token": credentials with the scope are required
Access = Literal["public", "optional", "token"]
_NAME_PREFIX: dict[Access, str] = {"public": "public-", "optional": "optional-", "token": "own-"}


@cache
def _scope_rules() -> ScopeRules:
    return load_scope_rules()


def _own_scope(path: str, method: str) -> str:
    """The scope ``policies/scopes.toml`` gives the gateway's endpoint ``method path``."""
    segments = split_path(f"/slurmgate{path}").segments
    scopes = {rule.scope for rule in _scope_rules().matching("slurmgate", segments, method)}
    if len(scopes) != 1:
        # Fail closed at start: an endpoint without exactly one scope is a policy mistake.
        raise ValueError(f"scopes.toml gives {method} {path} {len(scopes)} scopes, not one")
    return scopes.pop()


@cache
def _cache_rules() -> CacheRules:
    return load_cache_rules()


def _own_cache(path: str, method: str) -> tuple[CachePolicy, str]:
    """The cache policy and group ``policies/cache.toml`` gives the endpoint (none when no rule)."""
    segments = split_path(f"/slurmgate{path}").segments
    found = {(r.policy, r.group) for r in _cache_rules().matching("slurmgate", segments, method)}
    if len(found) > 1:
        raise ValueError(f"cache.toml gives {method} {path} {len(found)} cache policies, not one")
    return found.pop() if found else (CachePolicy.NONE, "")


def add_endpoint(
    app: web.Application, path: str, handler: Handler, *, operation_id: str, access: Access
) -> None:
    """Register one of the gateway's own GET endpoints (see the module docstring)."""
    scope = None if access == "public" else _own_scope(path, "GET")
    name = _NAME_PREFIX[access] + operation_id.replace("_", "-")
    row = None
    policy, group = _own_cache(path, "GET")
    if policy is not CachePolicy.NONE:
        if access != "token" or scope is None:
            # Cached answers are keyed and filled per authenticated caller.
            raise ValueError(f"GET {path} is cached by cache.toml, so its access must be 'token'")
        row = Route(
            method="GET",
            path=path,
            operation_id=operation_id,
            namespace=Namespace.SLURMGATE,
            tag="slurmgate",
            body_model=None,
            mutating=False,
            scope=scope,
            cache=policy,
            cache_group=group,
            invalidates=(),
            accounts=(),
        )
    route = app.router.add_get(path, handler, name=name)
    app.setdefault(_ENDPOINTS, {})[route] = Endpoint(operation_id, scope, row)


def own_endpoints(app: web.Application) -> dict[str, Endpoint]:
    """The gateway's own endpoints registered in ``app``, by path (as registered)."""
    found = {}
    for route, endpoint in app.get(_ENDPOINTS, {}).items():
        resource = route.resource
        if resource is not None:
            found[resource.canonical] = endpoint
    return found


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("."))


def add_api_routes(app: web.Application, handler: Handler) -> None:
    """Register every generated operation at its paths; ``handler`` answers them all."""
    table = _Table({}, {})
    aliased: set[tuple[str, str]] = set()
    # Newest version first: a /latest/ path is registered once, by the newest version having it.
    for version in sorted(ROUTES, key=_version_key, reverse=True):
        for route in ROUTES[version]:
            bare = route.path.rstrip("/")
            # The spec's own form first: aiohttp indexes both under the path without the slash
            # and tries them in registration order, so the form clients send most (slurmrestd's
            # paths end with "/") is matched without trying the other first (5% of a cache hit).
            other = bare if route.path.endswith("/") else bare + "/"
            for template in (route.path, other):
                entry = _Entry(route, version, template)
                table.by_template[(version, route.method, template)] = entry
                table.by_route[app.router.add_route(route.method, template, handler)] = entry
                alias = template.replace(f"/{version}/", f"/{LATEST}/", 1)
                if (route.method, alias) in aliased:
                    continue
                aliased.add((route.method, alias))
                latest = _Entry(route, version, template, latest=True)
                table.by_route[app.router.add_route(route.method, alias, handler)] = latest
    app[_TABLE] = table


def not_served(requested: str, served: tuple[str, ...]) -> NotFound:
    """The 404 for an API version the upstream does not serve."""
    return NotFound(
        f"API version {requested} is not served here; supported: {', '.join(served) or 'none'}",
        source="slurmgate routing",
    )


def _resolve(table: _Table, entry: _Entry, served: tuple[str, ...]) -> _Entry:
    """The entry to use: the operation itself, or for /latest/ its newest served equivalent."""
    if not entry.latest:
        if entry.version not in served:
            raise not_served(entry.version, served)
        return entry
    if not served:
        raise not_served(LATEST, served)
    newest = max(served, key=_version_key)
    template = entry.template.replace(f"/{entry.version}/", f"/{newest}/", 1)
    found = table.by_template.get((newest, entry.route.method, template))
    if found is None:
        raise NotFound(
            f"{entry.route.method} {template} does not exist in {newest}, the newest API version "
            "served here",
            source="slurmgate routing",
        )
    return found


def _target(entry: _Entry, params: Mapping[str, str], query: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = params[name]
        if not _PARAM.fullmatch(value) or value in {".", ".."}:
            raise BadRequest(
                f"path parameter {name}={value!r} has characters slurmgate does not forward",
                source=f"path:{name}",
            )
        return value

    path = _PARAM_NAMES.sub(fill, entry.template)
    return f"{path}?{query}" if query else path


def _own_target(request: web.Request) -> str:
    """The cache's name for a request of a cached own endpoint: its path and query decoded, the
    query sorted, both encoded again (``?partition=%64ebug`` is ``?partition=debug``); the handler
    reads the same decoded query."""
    path = quote(request.rel_url.path, safe="/")
    query = urlencode(sorted(request.rel_url.query.items()))
    return f"{path}?{query}" if query else path


def route(request: web.Request) -> None:
    """The routing step: ``request[ROUTE]`` and ``request[TARGET]`` for a request that matched an
    operation, ``request[ENDPOINT]`` for one of the gateway's own endpoints; nothing for a
    request that matched nothing (its handler raises aiohttp's 404 or 405)."""
    table = request.app[_TABLE]
    matched = request.match_info.route
    entry = table.by_route.get(matched)
    if entry is None:
        endpoint = request.app.get(_ENDPOINTS, {}).get(matched)
        if endpoint is not None:
            request[ENDPOINT] = endpoint
            if endpoint.route is not None:
                request[ROUTE] = endpoint.route
                request[TARGET] = _own_target(request)
        return
    entry = _resolve(table, entry, request.app[UPSTREAM_VERSIONS].served)
    request[ROUTE] = entry.route
    request[TARGET] = _target(entry, request.match_info, request.rel_url.raw_query_string)
