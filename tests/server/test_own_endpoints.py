"""The gateway's own endpoints as the server registers them: the generated rows, each with the
handler server/endpoints/__init__.py binds to it (server/pipeline/route.py add_endpoint)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from slurmgate.generated.endpoints import ENDPOINTS
from slurmgate.policies.routing import Access, CachePolicy, Namespace
from slurmgate.server.app import build_app
from slurmgate.server.config import parse_settings
from slurmgate.server.endpoints import HANDLERS, bind
from slurmgate.server.pipeline.route import add_endpoint, own_endpoints

PREFIX = {Access.PUBLIC: "public-", Access.OPTIONAL: "optional-", Access.TOKEN: "own-"}


def _app(tmp_path: Path) -> web.Application:
    settings = parse_settings(
        {
            "upstream": {"url": "http://127.0.0.1:6820"},
            "slurm_user_token": {"jwt_key": str(tmp_path / "jwt.key")},
            "auth": {"tokens_file": str(tmp_path / "tokens.toml")},
        },
        origin="test",
    )
    return build_app(settings)


def test_every_row_has_a_handler_and_every_handler_a_row() -> None:
    assert {row.operation_id for row in ENDPOINTS} == set(HANDLERS)
    pairs = bind(ENDPOINTS)
    assert [row for row, _ in pairs] == list(ENDPOINTS)
    assert all(handler is HANDLERS[row.operation_id] for row, handler in pairs)


def test_a_row_without_a_handler_or_a_handler_without_a_row_fails_the_build() -> None:
    extra = replace(ENDPOINTS[0], operation_id="slurmgate_get_nothing", path="/nothing")
    handlers = {k: v for k, v in HANDLERS.items() if k != "slurmgate_get_metrics"}
    handlers["slurmgate_get_gone"] = HANDLERS["slurmgate_get_metrics"]
    with pytest.raises(ValueError, match="do not match") as caught:
        bind((*ENDPOINTS, extra), handlers)
    assert str(caught.value).splitlines()[1:] == [
        "  slurmgate_get_metrics: declared, but no handler in HANDLERS",
        "  slurmgate_get_nothing: declared, but no handler in HANDLERS",
        "  slurmgate_get_gone: in HANDLERS, but declared nowhere",
    ]


def test_every_generated_endpoint_is_registered_with_its_access_scope_and_cache(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)
    endpoints = own_endpoints(app)
    assert set(endpoints) == {row.path for row in ENDPOINTS}
    for row in ENDPOINTS:
        endpoint = endpoints[row.path]
        assert endpoint.operation_id == row.operation_id
        assert endpoint.scope == row.scope
        assert (endpoint.scope is None) == (row.access is Access.PUBLIC)
        resource = app.router[PREFIX[row.access] + row.operation_id.replace("_", "-")]
        assert resource.canonical == row.path
        assert {route.method for route in resource} == {"GET", "HEAD"}
        assert {route.handler for route in resource} == {HANDLERS[row.operation_id]}
        # Every endpoint that takes credentials has its row (authorize checks scope and
        # requirements from it; the cache reads its policy); public ones have none.
        if row.access is Access.PUBLIC:
            assert endpoint.route is None, row.path
            continue
        route = endpoint.route
        assert route is not None, row.path
        assert (route.method, route.path, route.operation_id) == (
            row.method,
            row.path,
            row.operation_id,
        )
        assert (route.scope, route.cache, route.cache_group) == (
            row.scope,
            row.cache,
            row.cache_group,
        )
        assert route.namespace is Namespace.SLURMGATE
        assert not route.mutating
    cached = {row.path for row in ENDPOINTS if row.cache is not CachePolicy.NONE}
    assert cached == {
        "/hardware/table",
        "/hardware/stats",
        "/hardware/avail",
        "/slurmgate/v1/usage",
    }


def test_a_path_parameter_is_matched_with_its_declared_pattern(tmp_path: Path) -> None:
    app = _app(tmp_path)
    resource = app.router["public-slurmgate-get-openapi-version"]
    assert resource.canonical == "/openapi/v3/{version}"
    info = resource.get_info()
    assert info["pattern"].fullmatch("/openapi/v3/v0.0.45")
    assert not info["pattern"].fullmatch("/openapi/v3/latest")


def test_a_cached_row_that_is_not_token_access_is_refused() -> None:
    (table,) = [row for row in ENDPOINTS if row.path == "/hardware/table"]
    app = web.Application()
    with pytest.raises(ValueError, match="is cached, so its access must be 'token'"):
        add_endpoint(app, replace(table, access=Access.OPTIONAL), HANDLERS[table.operation_id])
