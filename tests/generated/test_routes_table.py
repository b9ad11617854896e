"""The generated routing tables against the specs they came from and the policy files."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from slurmgate.generated import ROUTES, VERSIONS
from slurmgate.generated.endpoints import ENDPOINTS
from slurmgate.policies.routing import MUTATING_METHODS, CachePolicy, LocationKind, Namespace, Route
from slurmgate.policies.rules import load_cache_rules, load_scope_rules

SPECS = Path(__file__).resolve().parents[2] / "specs"
VERSION_IDS = [api.version for api in VERSIONS]
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def _spec_operations(version: str) -> set[tuple[str, str, str]]:
    document = json.loads((SPECS / f"{version}.json").read_text(encoding="utf-8"))
    return {
        (method.upper(), path, operation["operationId"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_versions_follow_the_manifest() -> None:
    manifest = [
        line.split()[:2]
        for line in (SPECS / "MANIFEST").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [[api.version, api.slurm_release] for api in VERSIONS] == manifest
    assert list(ROUTES) == VERSION_IDS


@pytest.mark.parametrize("version", VERSION_IDS)
def test_every_spec_operation_is_routed_once(version: str) -> None:
    routed = [(r.method, r.path, r.operation_id) for r in ROUTES[version]]
    assert len(routed) == len(set(routed))
    assert set(routed) == _spec_operations(version)


@pytest.mark.parametrize("version", VERSION_IDS)
def test_every_operation_has_a_declared_scope(version: str) -> None:
    declared = load_scope_rules().scopes
    for route in ROUTES[version]:
        assert route.scope in declared, f"{route.method} {route.path}"


@pytest.mark.parametrize("version", VERSION_IDS)
def test_mutating_operations_are_never_cached_nor_read_scoped(version: str) -> None:
    for route in ROUTES[version]:
        if route.method in MUTATING_METHODS:
            assert route.mutating, route.path
        if route.mutating:
            assert route.cache is CachePolicy.NONE, route.path
            assert not route.scope.endswith(":read") or route.scope == "util:read", route.path


#: The groups of the gateway's own cached endpoints (generated/endpoints.py: /hardware/...).
OWN_GROUPS = frozenset(row.cache_group for row in ENDPOINTS if row.cache_group)
#: Every group some cached read belongs to: slurmrestd's of some version, and the gateway's own.
READ_GROUPS = (
    frozenset(r.cache_group for routes in ROUTES.values() for r in routes if r.cache_group)
    | OWN_GROUPS
)


@pytest.mark.parametrize("version", VERSION_IDS)
def test_cached_reads_have_a_group_and_mutations_say_what_they_invalidate(version: str) -> None:
    defined = load_cache_rules(own_groups=OWN_GROUPS).groups
    for route in ROUTES[version]:
        where = f"{route.method} {route.path}"
        if route.cache is CachePolicy.NONE:
            assert route.cache_group == "", where
        else:
            assert route.cache_group in defined, where
        if route.mutating:
            # util's POSTs only compute (cache.toml says groups = [] with a why); every other
            # write changes something some read shows
            assert route.invalidates or route.namespace is Namespace.UTIL, where
            assert list(route.invalidates) == sorted(set(route.invalidates)), where
            assert set(route.invalidates) <= READ_GROUPS, where
        else:
            assert route.invalidates == (), where


def test_every_read_group_is_invalidated_by_some_mutation() -> None:
    """Otherwise a client would read its own writes only after a TTL, never right away."""
    invalidated = {g for routes in ROUTES.values() for r in routes for g in r.invalidates}
    assert invalidated == READ_GROUPS == load_cache_rules(own_groups=OWN_GROUPS).groups | OWN_GROUPS


def test_groups_span_versions() -> None:
    """Group names carry no version: a submit through v0.0.45 clears v0.0.40's job list."""
    by_key = {(r.method, r.path): r for routes in ROUTES.values() for r in routes}
    submit = by_key[("POST", "/slurm/v0.0.45/job/submit")]
    assert submit.invalidates == ("db-jobs", "jobs")
    assert by_key[("GET", "/slurm/v0.0.40/jobs/")].cache_group == "jobs"
    assert by_key[("GET", "/slurmdb/v0.0.40/jobs/")].cache_group == "db-jobs"
    # One job is its own group: a submission clears the lists, not every job clients poll;
    # updating or cancelling a job clears both.
    assert by_key[("GET", "/slurm/v0.0.44/resources/{job_id}")].cache_group == "job"
    assert by_key[("GET", "/slurm/v0.0.45/job/{job_id}")].cache_group == "job"
    assert by_key[("DELETE", "/slurm/v0.0.45/job/{job_id}")].invalidates == (
        "db-jobs",
        "job",
        "jobs",
    )
    assert by_key[("DELETE", "/slurm/v0.0.45/jobs/")].invalidates == ("db-jobs", "job", "jobs")
    reconfigure = by_key[("GET", "/slurm/v0.0.42/reconfigure/")]
    assert reconfigure.invalidates == (
        "hardware", "job", "jobs", "licenses", "nodes", "partitions", "reservations", "shares",
        "slurm-conf",
    )  # fmt: skip
    # the gateway's /hardware/... answers are computed from nodes and partitions
    for method, path in [
        ("POST", "/slurm/v0.0.45/node/{node_name}"),
        ("DELETE", "/slurm/v0.0.45/partition/{partition_name}"),
        ("POST", "/slurm/v0.0.45/reservation"),
    ]:
        assert "hardware" in by_key[(method, path)].invalidates, path
    post_config = by_key[("POST", "/slurmdb/v0.0.43/config")]
    assert set(post_config.invalidates) == {
        g for r in ROUTES["v0.0.43"] if r.namespace == "slurmdb" for g in (r.cache_group,) if g
    } | {"shares"}


@pytest.mark.parametrize("version", VERSION_IDS)
def test_mutating_bodies_naming_accounts_have_locations(version: str) -> None:
    """Spot checks of the locations the authorization step relies on."""
    by_op = {(r.method, r.path.split(version, 1)[1]): r for r in ROUTES[version]}
    submit = by_op[("POST", "/job/submit")]
    assert {str(a) for a in submit.accounts} >= {"body:job.account?default_account"}
    cancel = by_op[("DELETE", "/job/{job_id}")]
    assert [str(a) for a in cancel.accounts] == ["lookup:job<path:job_id"]
    delete_account = by_op[("DELETE", "/account/{account_name}")]
    assert [str(a) for a in delete_account.accounts] == ["path:account_name"]
    users = by_op[("POST", "/users/")]
    assert {str(a) for a in users.accounts} == {
        "body:users[].associations[].account",
        "body:users[].default.account",
    }


def _field_type(model: type[BaseModel], step: str) -> object:
    for name, field in model.model_fields.items():
        if (field.alias or name) == step:
            return field.annotation
    raise AssertionError(f"{model.__name__} has no field {step!r}")


def _resolves(annotation: object, path: tuple[str, ...]) -> bool:
    """Whether ``path`` leads through the annotation to a ``str`` (``"[]"``: list items)."""
    options = (
        get_args(annotation) if get_args(annotation) and not _is_list(annotation) else (annotation,)
    )
    for option in options:
        if not path:
            if option is str:
                return True
            continue
        if path[0] == "[]" and _is_list(option):
            if _resolves(get_args(option)[0], path[1:]):
                return True
        elif isinstance(option, type) and issubclass(option, BaseModel) and path[0] != "[]":
            try:
                inner = _field_type(option, path[0])
            except AssertionError:
                continue
            if _resolves(inner, path[1:]):
                return True
    return False


def _is_list(annotation: object) -> bool:
    return getattr(annotation, "__origin__", None) is list


@pytest.mark.parametrize("version", VERSION_IDS)
def test_body_locations_lead_to_string_fields_of_the_body_model(version: str) -> None:
    """Every body (and body lookup) location resolves, by JSON name, to a str in the model."""
    models = importlib.import_module(f"slurmgate.generated.{version.replace('.', '_')}.models")
    checked = 0
    for route in ROUTES[version]:
        for location in route.accounts:
            if location.kind is LocationKind.BODY:
                path = location.path
            elif location.kind is LocationKind.LOOKUP and location.path[0] == "body":
                path = location.path[1:]
            else:
                continue
            assert route.body_model is not None
            model = getattr(models, route.body_model)
            model.model_rebuild()
            assert _resolves(model, path), f"{route.method} {route.path}: {location}"
            checked += 1
    assert checked > 10


def test_route_json_form() -> None:
    route: Route = next(r for r in ROUTES[VERSION_IDS[-1]] if r.path.endswith("/job/submit"))
    data = route.as_json()
    assert data["scope"] == "slurm:jobs:manage"
    assert data["mutating"] is True
    assert data["cache_policy"] == "none"
    assert data["cache_group"] == ""
    assert data["invalidates"] == ["db-jobs", "jobs"]
    jobs = next(
        r for r in ROUTES[VERSION_IDS[-1]] if r.method == "GET" and r.path.endswith("/jobs/")
    )
    assert jobs.as_json()["cache_group"] == "jobs"
    assert jobs.as_json()["invalidates"] == []
    assert {
        "kind": "body",
        "path": ["job", "account"],
        "form": "name",
        "when_absent": "default_account",
    } in data["accounts"]  # type: ignore[operator]
