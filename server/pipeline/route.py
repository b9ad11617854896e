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
``/hardware/...``) are the rows of ``generated/endpoints.py`` (declared in
``policies/endpoints/*.yaml``), registered with :func:`add_endpoint`, which names them for
authentication (``public-*``: no credentials; ``optional-*``: credentials checked only when sent)
and gives the pipeline their operation id and scope (``request[ENDPOINT]``). One that takes
credentials (``token`` or ``optional``) also gets a routing-table row (``request[ROUTE]``; a
cached one ``request[TARGET]`` too: its path and query), so that authorize treats it as it
treats slurmrestd's operations (scope, then the group and network requirements that pick it)
and the cache as any cached read when its row is cached. Nothing here reads a policy file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Handler

from slurmgate.generated import ROUTES
from slurmgate.policies.routing import Access, CachePolicy, Namespace, OwnEndpoint, Route
from slurmgate.server.errors import BadRequest, ExpectationFailed, NotFound
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
    #: its routing-table row when its declaration caches it (None: never cached)
    route: Route | None = None


_ENDPOINTS: web.AppKey[dict[web.AbstractRoute, Endpoint]] = web.AppKey("own_endpoints")

_NAME_PREFIX = {Access.PUBLIC: "public-", Access.OPTIONAL: "optional-", Access.TOKEN: "own-"}


def add_endpoint(app: web.Application, row: OwnEndpoint, handler: Handler) -> None:
    """Register one of the gateway's own endpoints, a row of ``generated/endpoints.py``."""
    name = _NAME_PREFIX[row.access] + row.operation_id.replace("_", "-")
    if row.cache is not CachePolicy.NONE and (row.access is not Access.TOKEN or row.scope is None):
        # codegen refuses such a declaration; a hand-edited table must not slip through.
        raise ValueError(f"{row.operation_id} is cached, so its access must be 'token'")
    route = None
    if row.scope is not None:
        route = Route(
            method=row.method,
            path=row.path,
            operation_id=row.operation_id,
            namespace=Namespace.SLURMGATE,
            tag="slurmgate",
            body_model=None,
            mutating=False,
            scope=row.scope,
            cache=row.cache,
            cache_group=row.cache_group,
            invalidates=(),
            accounts=(),
        )
    endpoint = Endpoint(row.operation_id, row.scope, route)
    resource = app.router.add_resource(row.router_path, name=name)
    registered = app.setdefault(_ENDPOINTS, {})
    # HEAD beside GET, as aiohttp's add_get does, and known to the pipeline like the GET: a HEAD
    # the authorize step did not recognise would skip the scope check.
    for method in ("HEAD", "GET") if row.method == "GET" else (row.method,):
        registered[resource.add_route(method, handler, expect_handler=expect)] = endpoint


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
                table.by_route[
                    app.router.add_route(route.method, template, handler, expect_handler=expect)
                ] = entry
                alias = template.replace(f"/{version}/", f"/{LATEST}/", 1)
                if (route.method, alias) in aliased:
                    continue
                aliased.add((route.method, alias))
                latest = _Entry(route, version, template, latest=True)
                table.by_route[
                    app.router.add_route(route.method, alias, handler, expect_handler=expect)
                ] = latest
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
    if not params:  # a path without parameters is its template (most polled ones are)
        return f"{entry.template}?{query}" if query else entry.template

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


async def expect(request: web.Request) -> None:
    """The ``Expect`` handler of every route: ``100-continue`` answered as aiohttp does; any other
    expectation is left to :func:`route`, which refuses it in the envelope (aiohttp's own handler
    answers it in plain text before any middleware, so it would be neither observed nor in
    slurmrestd's shape)."""
    if _expects_continue(request):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's body has not started


def _expects_continue(request: web.Request) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


def route(request: web.Request) -> None:
    """The routing step: ``request[ROUTE]`` and ``request[TARGET]`` for a request that matched an
    operation, ``request[ENDPOINT]`` for one of the gateway's own endpoints; nothing for a
    request that matched nothing (its handler raises aiohttp's 404 or 405). An HTTP/1.1
    ``Expect`` other than ``100-continue`` is a 417 (RFC 9110 10.1.1)."""
    if (
        "Expect" in request.headers
        and request.version == HttpVersion11
        and not _expects_continue(request)
    ):
        raise ExpectationFailed("Expect: only 100-continue is supported", source="Expect")
    table = request.app[_TABLE]
    matched = request.match_info.route
    entry = table.by_route.get(matched)
    if entry is None:
        endpoint = request.app.get(_ENDPOINTS, {}).get(matched)
        if endpoint is not None:
            request[ENDPOINT] = endpoint
            if endpoint.route is not None:
                request[ROUTE] = endpoint.route
                if endpoint.route.cache is not CachePolicy.NONE:
                    # The cache's name for it; only the read-through of a cached one reads it.
                    request[TARGET] = _own_target(request)
        return
    entry = _resolve(table, entry, request.app[UPSTREAM_VERSIONS].served)
    request[ROUTE] = entry.route
    request[TARGET] = _target(entry, request.match_info, request.rel_url.raw_query_string)
