"""Scope, cache and account decisions made by parse, on small hand-made specs and policies."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from slurmgate.codegen.load import LoadedSpec, ManifestEntry
from slurmgate.codegen.parse import Policies, class_name, parse
from slurmgate.policies.routing import CachePolicy, LocationKind, ValueForm, WhenAbsent
from slurmgate.policies.rules import load_account_rules, load_cache_rules, load_scope_rules

REF = "#/components/schemas/"

SCOPES = """
[scopes]
"slurm:read" = "read"
"slurm:jobs:manage" = "jobs"
"slurm:reconfigure" = "reconfigure"

[[rule]]
namespace = "slurm"
path = "/**"
except = ["/reconfigure"]
methods = ["GET"]
scope = "slurm:read"

[[rule]]
namespace = "slurm"
path = "/reconfigure"
methods = ["GET"]
scope = "slurm:reconfigure"
mutating = true
why = "it reconfigures"

[[rule]]
namespace = "slurm"
path = "/job/**"
methods = ["POST", "DELETE"]
scope = "slurm:jobs:manage"
"""

CACHE = """
default = "none"

[[rule]]
namespace = "slurm"
path = "/ping"
methods = ["GET"]
policy = "none"

[[rule]]
namespace = "slurm"
path = "/jobs"
methods = ["GET"]
policy = "normal"
group = "jobs"

[[rule]]
namespace = "slurm"
path = "/nodes"
methods = ["GET"]
policy = "short"
group = "nodes"

[[invalidate]]
namespace = "slurm"
path = "/job/**"
methods = ["POST", "DELETE"]
groups = ["jobs"]

[[invalidate]]
namespace = "slurm"
path = "/reconfigure"
methods = ["GET"]
groups = ["nodes", "jobs"]
"""

ACCOUNTS = """
detect = "acc(oun)?t"

[[body]]
field = "**.account_gather_frequency"
account = false
why = "an interval"

[[body]]
path = "/job/submit"
field = "job.account"
when_absent = "default_account"

[[body]]
field = "**.account"

[[param]]
in = "query"
name = "account"
form = "csv"
when_absent = "all_accounts"

[[lookup]]
namespace = "slurm"
path = "/job/{job_id}"
methods = ["DELETE"]
entity = "job"
key = "path:job_id"
"""


def _policies(
    tmp_path: Path, scopes: str = SCOPES, accounts: str = ACCOUNTS, cache: str = CACHE
) -> Policies:
    for name, text in (("scopes", scopes), ("cache", cache), ("accounts", accounts)):
        (tmp_path / f"{name}.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return Policies(
        load_scope_rules(tmp_path / "scopes.toml"),
        load_cache_rules(tmp_path / "cache.toml"),
        load_account_rules(tmp_path / "accounts.toml"),
    )


def _spec(paths: dict[str, Any], schemas: dict[str, Any] | None = None) -> LoadedSpec:
    document = {"openapi": "3.0.3", "paths": paths, "components": {"schemas": schemas or {}}}
    return LoadedSpec(ManifestEntry("v0.0.44", "26.05.5", "0" * 64), Path("v0.0.44.json"), document)


def _op(op_id: str, **extra: object) -> dict[str, Any]:
    return {"operationId": op_id, "tags": ["slurm"], **extra}


JOB_ID = {"in": "path", "name": "job_id", "required": True}
SUBMIT_BODY = {
    "requestBody": {
        "content": {"application/json": {"schema": {"$ref": REF + "v0.0.44_job_submit_req"}}}
    }
}
SCHEMAS = {
    "v0.0.44_job_submit_req": {
        "type": "object",
        "properties": {
            "job": {"$ref": REF + "v0.0.44_job_desc_msg"},
            "jobs": {"type": "array", "items": {"$ref": REF + "v0.0.44_job_desc_msg"}},
        },
    },
    "v0.0.44_job_desc_msg": {
        "type": "object",
        "properties": {
            "account": {"type": "string"},
            "account_gather_frequency": {"type": "string"},
            "name": {"type": "string"},
        },
    },
}


def test_class_name_follows_datamodel_code_generator() -> None:
    assert class_name("v0.0.44_job_desc_msg") == "V0044JobDescMsg"
    assert class_name("v0.0.41_openapi_users_add_cond_resp") == "V0041OpenapiUsersAddCondResp"


def test_scope_mutating_and_cache_per_operation(tmp_path: Path) -> None:
    spec = _spec(
        {
            "/slurm/v0.0.44/ping/": {"get": _op("ping")},
            "/slurm/v0.0.44/jobs/": {"get": _op("jobs")},
            "/slurm/v0.0.44/reconfigure/": {"get": _op("reconfigure")},
            "/slurm/v0.0.44/job/{job_id}": {"delete": _op("cancel", parameters=[JOB_ID])},
        }
    )
    build, problems = parse([spec], _policies(tmp_path))
    assert problems == []
    table = {
        r.operation.operation_id: (r.scope, r.mutating, r.cache, r.cache_group, r.invalidates)
        for r in build.apis[0].routes
    }
    assert table == {
        "ping": ("slurm:read", False, CachePolicy.NONE, "", ()),
        "jobs": ("slurm:read", False, CachePolicy.NORMAL, "jobs", ()),
        # mutating GET: never cached, clears the groups of its [[invalidate]] rule, sorted
        "reconfigure": ("slurm:reconfigure", True, CachePolicy.NONE, "", ("jobs", "nodes")),
        "cancel": ("slurm:jobs:manage", True, CachePolicy.NONE, "", ("jobs",)),
    }


def test_the_default_policy_applies_when_no_rule_picks_a_read(tmp_path: Path) -> None:
    spec = _spec({"/slurm/v0.0.44/licenses/": {"get": _op("licenses")}})
    build, problems = parse([spec], _policies(tmp_path))
    assert problems == []
    (route,) = build.apis[0].routes
    assert (route.cache, route.cache_group, route.invalidates) == (CachePolicy.NONE, "", ())


def test_a_default_that_caches_is_a_problem_as_it_gives_no_group(tmp_path: Path) -> None:
    cache = CACHE.replace('default = "none"', 'default = "short"')
    spec = _spec(
        {
            "/slurm/v0.0.44/licenses/": {"get": _op("licenses")},
            "/slurm/v0.0.44/nodes/": {"get": _op("nodes")},
        }
    )
    build, problems = parse([spec], _policies(tmp_path, cache=cache))
    assert [str(p) for p in problems] == [
        "v0.0.44 GET /slurm/v0.0.44/licenses/: cache.toml's default caches this operation (short) "
        "but only a [[rule]] can give it the cache group that invalidates it; add a [[rule]] "
        "with a 'group'"
    ]
    routes = {r.operation.operation_id: r for r in build.apis[0].routes}
    assert (routes["licenses"].cache, routes["licenses"].cache_group) == (CachePolicy.SHORT, "")
    assert (routes["nodes"].cache, routes["nodes"].cache_group) == (CachePolicy.SHORT, "nodes")


def test_cache_rules_that_disagree_on_the_group_are_a_conflict(tmp_path: Path) -> None:
    cache = CACHE + textwrap.dedent(
        """
        [[rule]]
        namespace = "slurm"
        path = "/**"
        except = ["/ping"]
        methods = ["GET"]
        policy = "normal"
        group = "everything"
        """
    )
    spec = _spec({"/slurm/v0.0.44/jobs/": {"get": _op("jobs")}})
    build, problems = parse([spec], _policies(tmp_path, cache=cache))
    assert [p.message for p in problems] == [
        "cache rules disagree: cache.toml [[rule]] #2 says normal in group jobs; "
        "cache.toml [[rule]] #4 says normal in group everything"
    ]
    (route,) = build.apis[0].routes
    assert (route.cache, route.cache_group) == (CachePolicy.NONE, "")


def test_a_mutating_operation_no_invalidate_rule_picks_is_a_problem(tmp_path: Path) -> None:
    scopes = SCOPES + textwrap.dedent(
        """
        [[rule]]
        namespace = "slurm"
        path = "/**"
        methods = ["POST"]
        except = ["/job/**"]
        scope = "slurm:jobs:manage"
        """
    )
    cache = CACHE + textwrap.dedent(
        """
        [[invalidate]]
        namespace = "slurm"
        path = "/shutdown"
        methods = ["POST"]
        groups = []
        why = "nothing cached survives it anyway"
        """
    )
    spec = _spec(
        {
            "/slurm/v0.0.44/job/{job_id}": {"delete": _op("cancel", parameters=[JOB_ID])},
            "/slurm/v0.0.44/nodes/": {"post": _op("update_nodes")},
            "/slurm/v0.0.44/shutdown/": {"post": _op("shutdown")},
        }
    )
    build, problems = parse([spec], _policies(tmp_path, scopes=scopes, cache=cache))
    assert [str(p) for p in problems] == [
        "v0.0.44 POST /slurm/v0.0.44/nodes/: no [[invalidate]] rule in cache.toml picks this "
        "mutating operation"
    ]
    invalidates = {r.operation.operation_id: r.invalidates for r in build.apis[0].routes}
    # an empty `groups` is a decision too: the operation is covered and clears nothing
    assert invalidates == {"cancel": ("jobs",), "update_nodes": (), "shutdown": ()}


def test_invalidated_groups_are_the_sorted_union_of_every_picking_rule(tmp_path: Path) -> None:
    cache = CACHE + textwrap.dedent(
        """
        [[invalidate]]
        namespace = "slurm"
        path = "/job/{job_id}"
        methods = ["DELETE"]
        groups = ["nodes", "jobs"]
        why = "a cancelled job frees its nodes"
        """
    )
    spec = _spec(
        {
            "/slurm/v0.0.44/job/submit": {"post": _op("submit")},
            "/slurm/v0.0.44/job/{job_id}": {"delete": _op("cancel", parameters=[JOB_ID])},
        }
    )
    build, problems = parse([spec], _policies(tmp_path, cache=cache))
    assert problems == []
    invalidates = {r.operation.operation_id: r.invalidates for r in build.apis[0].routes}
    assert invalidates == {"submit": ("jobs",), "cancel": ("jobs", "nodes")}


def test_an_invalidate_rule_picking_a_read_is_a_problem(tmp_path: Path) -> None:
    cache = CACHE + textwrap.dedent(
        """
        [[invalidate]]
        namespace = "slurm"
        path = "/jobs"
        methods = ["GET", "DELETE"]
        groups = ["jobs"]
        """
    )
    spec = _spec({"/slurm/v0.0.44/jobs/": {"get": _op("jobs")}})
    build, problems = parse([spec], _policies(tmp_path, cache=cache))
    assert [str(p) for p in problems] == [
        "v0.0.44 GET /slurm/v0.0.44/jobs/: cache.toml [[invalidate]] #3 picks this operation, "
        "but it does not mutate, so it cannot invalidate"
    ]
    (route,) = build.apis[0].routes
    assert (route.cache_group, route.invalidates) == ("jobs", ())


def test_every_operation_without_a_scope_is_reported_together(tmp_path: Path) -> None:
    spec = _spec(
        {
            "/slurm/v0.0.44/nodes/": {"post": _op("update_nodes")},
            "/slurm/v0.0.44/node/{node_name}": {
                "delete": _op("delete_node", parameters=[{"in": "path", "name": "node_name"}])
            },
            "/slurm/v0.0.44/ping/": {"get": _op("ping")},
        }
    )
    build, problems = parse([spec], _policies(tmp_path))
    assert sorted(p.where for p in problems) == [
        "v0.0.44 DELETE /slurm/v0.0.44/node/{node_name}",
        "v0.0.44 POST /slurm/v0.0.44/nodes/",
    ]
    assert all("has no scope" in p.message for p in problems)
    assert [r.operation.operation_id for r in build.apis[0].routes] == ["ping"]


def test_rules_that_disagree_are_a_conflict(tmp_path: Path) -> None:
    overlapping = SCOPES.replace('except = ["/reconfigure"]\n', "")
    spec = _spec({"/slurm/v0.0.44/reconfigure/": {"get": _op("reconfigure")}})
    _build, problems = parse([spec], _policies(tmp_path, scopes=overlapping))
    assert len(problems) == 1
    assert "scope rules disagree" in problems[0].message
    assert "slurm:read" in problems[0].message
    assert "slurm:reconfigure" in problems[0].message


def test_unknown_namespace_is_a_problem(tmp_path: Path) -> None:
    spec = _spec({"/openapi/v0.0.44/spec": {"get": _op("spec")}})
    _build, problems = parse([spec], _policies(tmp_path))
    assert ["unknown namespace" in p.message for p in problems] == [True]


def test_account_locations_from_body_query_and_lookup(tmp_path: Path) -> None:
    spec = _spec(
        {
            "/slurm/v0.0.44/job/submit": {"post": _op("submit", **SUBMIT_BODY)},
            "/slurm/v0.0.44/job/{job_id}": {"delete": _op("cancel", parameters=[JOB_ID])},
            "/slurm/v0.0.44/jobs/": {
                "get": _op("jobs", parameters=[{"in": "query", "name": "account"}])
            },
        },
        SCHEMAS,
    )
    build, problems = parse([spec], _policies(tmp_path))
    assert problems == []
    accounts = {
        r.operation.operation_id: [str(a) for a in r.accounts] for r in build.apis[0].routes
    }
    assert accounts == {
        # job.account gets the default account when absent; jobs[].account only the general rule
        "submit": ["body:job.account?default_account", "body:jobs[].account"],
        "cancel": ["lookup:job<path:job_id"],
        "jobs": ["query:account(csv)?all_accounts"],
    }
    submit = next(r for r in build.apis[0].routes if r.operation.operation_id == "submit")
    assert submit.operation.body_model == "V0044JobSubmitReq"
    location = submit.accounts[0]
    assert (location.kind, location.path, location.form, location.when_absent) == (
        LocationKind.BODY,
        ("job", "account"),
        ValueForm.NAME,
        WhenAbsent.DEFAULT_ACCOUNT,
    )


@pytest.mark.parametrize(
    ("field", "param"),
    [("billing_account", None), (None, "acct_filter")],
)
def test_unclassified_account_like_field_or_param_fails(
    tmp_path: Path, field: str | None, param: str | None
) -> None:
    schemas = {
        "v0.0.44_job_submit_req": {
            "type": "object",
            "properties": {
                "job": {"type": "object", "properties": {field or "name": {"type": "string"}}}
            },
        }
    }
    parameters = [{"in": "query", "name": param}] if param else []
    spec = _spec(
        {
            "/slurm/v0.0.44/job/submit": {
                "post": _op("submit", parameters=parameters, **SUBMIT_BODY)
            }
        },
        schemas,
    )
    _build, problems = parse([spec], _policies(tmp_path))
    assert len(problems) == 1
    assert "looks like an account but no" in problems[0].message
    assert (field or param or "") in problems[0].message


def test_lookup_key_missing_from_the_request_is_a_problem(tmp_path: Path) -> None:
    spec = _spec({"/slurm/v0.0.44/job/{job_id}": {"delete": _op("cancel")}})
    _build, problems = parse([spec], _policies(tmp_path))
    messages = sorted(p.message for p in problems)
    assert any("lookup key path:job_id is not in the request" in m for m in messages)
    assert any("path parameter {job_id} is not declared" in m for m in messages)
