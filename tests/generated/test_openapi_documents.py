"""The gateway's OpenAPI documents (generated/v0_0_XX/openapi.json): valid, and saying what the
routing table says about every operation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import OpenAPIV30SpecValidator

from slurmgate.generated import ROUTES, VERSIONS
from slurmgate.generated.endpoints import ENDPOINTS
from slurmgate.policies.routing import Access, CachePolicy
from slurmgate.server.app import build_app
from slurmgate.server.config import parse_settings
from slurmgate.server.endpoints.openapi import document, merged
from slurmgate.server.pipeline.route import own_endpoints
from tests.lab.env import REPO

ALL = [api.version for api in VERSIONS]


def errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.path))}: {e.message[:200]}"
        for e in OpenAPIV30SpecValidator(doc).iter_errors()
    ]


@pytest.mark.parametrize("version", ALL)
def test_document_validates(version: str) -> None:
    assert errors(document(version)) == []


def test_merged_document_of_all_versions_validates() -> None:
    doc = merged(tuple(ALL))
    assert errors(doc) == []
    for version in ALL:
        assert f"/slurm/{version}/jobs/" in doc["paths"]
    assert "/openapi/v3/{version}" in doc["paths"]  # the same own endpoints in every version


@pytest.mark.parametrize("version", ALL)
def test_every_operation_says_scope_cache_and_gateway_errors(version: str) -> None:
    doc = document(version)
    assert [route.path for route in ROUTES[version]]  # not an empty table
    for route in ROUTES[version]:
        operation = doc["paths"][route.path][route.method.lower()]
        where = f"{route.method} {route.path}"
        assert operation["x-scopes"] == [route.scope], where
        assert f"needs the scope `{route.scope}`" in operation["description"], where
        assert operation["x-slurmgate-mutating"] is route.mutating, where
        assert "security" not in operation, where  # the document's: the gateway's schemes
        cache = operation["x-slurmgate-cache"]
        assert cache["policy"] == str(route.cache), where
        if route.cache is CachePolicy.NONE:
            assert cache.get("invalidates", []) == list(route.invalidates), where
            assert "slurmgate_cache_control" not in json.dumps(operation.get("parameters", []))
        else:
            assert cache["group"] == route.cache_group, where
            assert {"$ref": "#/components/parameters/slurmgate_cache_control"} in operation[
                "parameters"
            ], where
            assert "X-Cache" in operation["responses"]["200"]["headers"], where
        for status in ("401", "403", "502", "504"):
            assert status in operation["responses"], where


@pytest.mark.parametrize("version", ALL)
def test_security_is_the_gateways(version: str) -> None:
    doc = document(version)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["token"]["name"] == "X-SLURM-USER-TOKEN"
    assert schemes["munge"]["scheme"] == "MUNGE"
    assert {} not in doc["security"]  # no anonymous alternative: every operation needs a token
    assert {"bearerAuth": []} in doc["security"]
    for own in ("/meta/versions", "/openapi/v3", "/openapi/v3/{version}"):
        assert doc["paths"][own]["get"]["security"] == []


@pytest.mark.parametrize("version", ALL)
def test_document_keeps_slurmrestds_operations_and_schemas(version: str) -> None:
    spec = json.loads((REPO / "specs" / f"{version}.json").read_text(encoding="utf-8"))
    doc = document(version)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert doc["paths"][path][method]["operationId"] == operation["operationId"]
    # schemas may be fixed (codegen/fixes.py) or added (hoisted bodies), never dropped
    assert set(spec["components"]["schemas"]) <= set(doc["components"]["schemas"])


@pytest.mark.parametrize("version", ALL)
def test_health_and_metrics_say_the_scopes_the_server_enforces(version: str) -> None:
    doc = document(version)
    rows = {row.path: row for row in ENDPOINTS}
    for path, scope in (("/health", "slurmgate:health"), ("/metrics", "slurmgate:metrics")):
        operation = doc["paths"][path]["get"]
        assert rows[path].scope == scope, path
        assert operation["x-scopes"] == [scope], path
        assert f"needs the scope `{scope}`" in operation["description"], path
        assert {"401", "403"} <= set(operation["responses"]), path
    # /health may be asked without credentials, /metrics may not
    assert doc["paths"]["/health"]["get"]["security"][0] == {}
    assert "security" not in doc["paths"]["/metrics"]["get"]
    assert set(doc["paths"]["/health"]["get"]["responses"]) == {"200", "401", "403", "503"}


def _app() -> web.Application:
    settings = parse_settings(
        {
            "upstream": {"url": "http://127.0.0.1:6820"},
            "slurm_user_token": {"jwt_key": "/nonexistent/jwt.key"},
            "auth": {"tokens_file": "/nonexistent/tokens.toml"},
        },
        origin="test",
    )
    return build_app(settings)


@pytest.mark.parametrize("version", ALL)
def test_the_documents_own_paths_are_the_generated_endpoints(version: str) -> None:
    doc = document(version)
    own = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        if not path.startswith(("/slurm/", "/slurmdb/", "/util/"))
        for method in item
    }
    assert own == {(row.method, row.path) for row in ENDPOINTS}
    assert own >= {("GET", "/hardware/table"), ("GET", "/slurmgate/v1/usage")}


@pytest.mark.parametrize("version", ALL)
def test_own_endpoints_say_the_access_scope_and_cache_policy_the_server_enforces(
    version: str,
) -> None:
    endpoints = own_endpoints(_app())
    assert set(endpoints) == {row.path for row in ENDPOINTS}
    doc = document(version)
    for row in ENDPOINTS:
        path, endpoint = row.path, endpoints[row.path]
        operation = doc["paths"][path][row.method.lower()]
        assert operation["operationId"] == endpoint.operation_id == row.operation_id, path
        assert operation["tags"] == ["slurmgate"], path
        assert endpoint.scope == row.scope, path
        if row.access is Access.PUBLIC:
            assert endpoint.scope is None, path
            assert operation["security"] == [], path
            assert "x-scopes" not in operation, path
        else:
            assert operation["x-scopes"] == [endpoint.scope], path
            assert f"needs the scope `{endpoint.scope}`" in operation["description"], path
            assert {"401", "403"} <= set(operation["responses"]), path
            if row.access is Access.OPTIONAL:
                assert operation["security"][0] == {}, path
            else:
                assert "security" not in operation, path
        route = endpoint.route
        cache = operation.get("x-slurmgate-cache", {"policy": "none"})
        if route is None or route.cache is CachePolicy.NONE:
            assert row.cache is CachePolicy.NONE, path
            assert cache == {"policy": "none"}, path
        else:
            assert row.access is Access.TOKEN, path
            assert (route.cache, route.cache_group) == (row.cache, row.cache_group), path
            assert cache == {"policy": str(route.cache), "group": route.cache_group}, path
            assert "X-Cache" in operation["responses"]["200"]["headers"], path
            assert {"$ref": "#/components/parameters/slurmgate_cache_control"} in operation[
                "parameters"
            ], path
