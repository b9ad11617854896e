"""Reading and checking the own endpoints' declarations (codegen/endpoints.py), on small files."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from slurmgate.codegen.__main__ import main
from slurmgate.codegen.endpoints import decide, read_declarations
from slurmgate.codegen.ir import OwnEndpoints
from slurmgate.codegen.pipeline import load_policies
from slurmgate.codegen.render.endpoints import render_endpoints
from slurmgate.codegen.write import prepare
from slurmgate.generated.endpoints import ENDPOINTS
from slurmgate.policies.routing import Access, CachePolicy, OwnEndpoint
from slurmgate.policies.rules import POLICY_DIR, load_cache_rules, load_scope_rules

ROOT = Path(__file__).resolve().parents[2]

SCOPES = """
[scopes]
"slurm:read" = "read"
"slurmgate:things" = "things"
"""

CACHE = """
default = "none"

[[rule]]
namespace = "slurm"
path = "/nodes"
methods = ["GET"]
policy = "short"
group = "nodes"

[[invalidate]]
namespace = "slurm"
path = "/node/{node_name}"
methods = ["POST"]
groups = ["nodes", "things"]
"""

THINGS = """
endpoints:
  - operation_id: slurmgate_get_things
    method: GET
    path: /things/{name}
    access: token
    scope: slurmgate:things
    cache: {policy: short, group: things}
    summary: the things
    description: Things, computed.
    parameters:
      - name: name
        in: path
        required: true
        schema: {type: string, pattern: '^[a-z]+$'}
    responses:
      "200":
        description: a thing
        content:
          application/json:
            schema: {$ref: "#/components/schemas/slurmgate_thing_resp"}
  - operation_id: slurmgate_get_status
    method: GET
    path: /status
    access: public
    summary: the status
    responses:
      "200": {description: ok}
schemas:
  slurmgate_thing_resp: {type: object, properties: {name: {type: string, nullable: true}}}
"""


def _run(
    tmp_path: Path, files: dict[str, str], *, scopes: str = SCOPES, cache: str = CACHE
) -> tuple[OwnEndpoints, list[str]]:
    """Read ``files`` as policies/endpoints/ and decide; every problem as one line."""
    directory = tmp_path / "endpoints"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "scopes.toml").write_text(scopes, encoding="utf-8")
    (tmp_path / "cache.toml").write_text(cache, encoding="utf-8")
    declared, problems = read_declarations(directory)
    own, decided = decide(
        declared,
        load_scope_rules(tmp_path / "scopes.toml"),
        load_cache_rules(tmp_path / "cache.toml", own_groups=declared.groups),
    )
    return own, [str(problem) for problem in [*problems, *decided]]


#: cache.toml without the group "things", for declarations that do not define it
CACHE_WITHOUT_THINGS = CACHE.replace('groups = ["nodes", "things"]', 'groups = ["nodes"]')


def _changed(old: str, new: str) -> dict[str, str]:
    assert old in THINGS
    return {"things.yaml": THINGS.replace(old, new, 1)}


def test_a_valid_declaration_gives_its_row_and_openapi(tmp_path: Path) -> None:
    own, problems = _run(tmp_path, {"things.yaml": THINGS})
    assert problems == []
    assert [operation.row for operation in own.operations] == [
        OwnEndpoint(
            method="GET",
            path="/status",
            router_path="/status",
            operation_id="slurmgate_get_status",
            access=Access.PUBLIC,
            scope=None,
            cache=CachePolicy.NONE,
            cache_group="",
        ),
        OwnEndpoint(
            method="GET",
            path="/things/{name}",
            router_path="/things/{name:[a-z]+}",
            operation_id="slurmgate_get_things",
            access=Access.TOKEN,
            scope="slurmgate:things",
            cache=CachePolicy.SHORT,
            cache_group="things",
        ),
    ]
    things = json.loads(own.operations[1].openapi)
    assert set(things) == {"summary", "description", "parameters", "responses"}
    assert own.operations[1].origin == "endpoints/things.yaml endpoints[0] (slurmgate_get_things)"
    assert json.loads(own.schemas) == {
        "slurmgate_thing_resp": {
            "type": "object",
            "properties": {"name": {"type": "string", "nullable": True}},
        }
    }


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "scope: slurmgate:things",
            "scope: slurmgate:thingz",
            "endpoints/things.yaml: endpoints[0] (slurmgate_get_things): scope 'slurmgate:thingz' "
            "is not declared in scopes.toml [scopes]",
        ),
        (
            "access: token",
            "access: private",
            "endpoints/things.yaml: endpoints[0].access: 'private' is not one of public, "
            "optional, token",
        ),
        (
            "access: token",
            "access: optional",
            "endpoints/things.yaml: endpoints[0].cache: a cached endpoint must have access token, "
            "not optional: answers are filled and keyed per authenticated caller",
        ),
        (
            "cache: {policy: short, group: things}",
            "cache: {policy: sometimes, group: things}",
            "endpoints/things.yaml: endpoints[0].cache.policy: 'sometimes' is not one of none, "
            "short, normal, long",
        ),
        (
            "cache: {policy: short, group: things}",
            "cache: {policy: short}",
            "endpoints/things.yaml: endpoints[0].cache.group: None: a cached endpoint belongs to "
            "a cache group like 'hardware' ([a-z][a-z0-9-]*), which writes invalidate",
        ),
        (
            "cache: {policy: short, group: things}",
            "cache: {policy: none, group: things}",
            "endpoints/things.yaml: endpoints[0].cache.group: policy none caches nothing, so it "
            "takes no group",
        ),
        (
            "    access: public\n",
            "    access: public\n    scope: slurm:read\n",
            "endpoints/things.yaml: endpoints[1].scope: a public endpoint takes no scope: "
            "credentials are not read",
        ),
        (
            "    scope: slurmgate:things\n",
            "",
            "endpoints/things.yaml: endpoints[0]: missing 'scope': access token checks the "
            "caller's scope",
        ),
        (
            "    method: GET\n    path: /status",
            "    method: POST\n    path: /status",
            "endpoints/things.yaml: endpoints[1].method: 'POST': own endpoints are GET only",
        ),
        (
            "operation_id: slurmgate_get_status",
            "operation_id: getStatus",
            "endpoints/things.yaml: endpoints[1].operation_id: 'getStatus' must look like "
            "'slurmgate_get_x'",
        ),
        (
            "    summary: the status\n",
            "",
            "endpoints/things.yaml: endpoints[1]: missing 'summary'",
        ),
        (
            "    summary: the status\n",
            "    summary: the status\n    colour: blue\n",
            "endpoints/things.yaml: endpoints[1].colour: unknown key",
        ),
        (
            '      "200": {description: ok}',
            "      200: {description: ok}",
            "endpoints/things.yaml: endpoints[1].responses: key 200 must be a string (quote it: "
            '"200")',
        ),
        (
            '      "200": {description: ok}',
            '      "404": {description: none}',
            "endpoints/things.yaml: endpoints[1].responses: declares no 2xx answer",
        ),
        (
            "schema: {type: string, pattern: '^[a-z]+$'}",
            "schema: {type: string, pattern: '[a-z]+'}",
            "endpoints/things.yaml: endpoints[0].parameters: the pattern of 'name' must be "
            "anchored (^...$): the server matches the whole path segment with it",
        ),
        (
            "path: /things/{name}",
            "path: /things/{id}",
            "endpoints/things.yaml: endpoints[0].parameters: path parameter 'name' is not in "
            "/things/{id}",
        ),
        (
            "        required: true\n",
            "",
            "endpoints/things.yaml: endpoints[0].parameters: path parameter 'name' must be "
            "required: true",
        ),
        (
            '      "200":\n        description: a thing',
            "      \"200\":\n        $ref: '#/components/responses/x'\n"
            "        description: a thing",
            'endpoints/things.yaml: endpoints[0].responses: a cached endpoint declares its "200" '
            "answer in place (it gets the cache headers)",
        ),
        (
            "  slurmgate_thing_resp:",
            "  thing_resp:",
            "endpoints/things.yaml: schemas.thing_resp: component names look like "
            "'slurmgate_thing_resp'",
        ),
        (
            "    description: Things, computed.\n",
            "    description: 2026-11-21\n",
            "endpoints/things.yaml: endpoints[0].description: date is not JSON: quote the value",
        ),
    ],
)
def test_each_problem_names_the_file_and_key(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    files = _changed(old, new)
    # cache.toml may invalidate "things" only while the declaration defines it
    cache = CACHE if "group: things" in files["things.yaml"] else CACHE_WITHOUT_THINGS
    _, problems = _run(tmp_path, files, cache=cache)
    assert problem in problems, "\n".join(problems)


def test_an_unknown_cache_group_is_a_problem(tmp_path: Path) -> None:
    _, problems = _run(tmp_path, {"things.yaml": THINGS}, cache=CACHE_WITHOUT_THINGS)
    assert problems == [
        "endpoints/things.yaml: endpoints[0] (slurmgate_get_things): cache group 'things' is "
        "unknown: no [[rule]] or [[invalidate]] of cache.toml names it, so no write would ever "
        "make its answers stale"
    ]


def test_a_group_shared_with_slurmrestds_reads_is_known(tmp_path: Path) -> None:
    files = _changed("group: things}", "group: nodes}")
    own, problems = _run(tmp_path, files, cache=CACHE_WITHOUT_THINGS)
    assert problems == []
    assert own.operations[1].row.cache_group == "nodes"


def test_duplicate_paths_operation_ids_schemas_and_keys_across_files(tmp_path: Path) -> None:
    other = """
    endpoints:
      - operation_id: slurmgate_get_things
        method: GET
        path: /status
        access: public
        summary: again
        responses:
          "200": {description: ok}
    schemas:
      slurmgate_thing_resp: {type: object}
    """
    twice = """
    endpoints:
      - operation_id: slurmgate_get_twice
        operation_id: slurmgate_get_twice
    """
    _, problems = _run(tmp_path, {"things.yaml": THINGS, "other.yaml": other, "twice.yaml": twice})
    assert problems[:1] == [
        "endpoints/things.yaml: schemas.slurmgate_thing_resp: is declared by "
        "endpoints/other.yaml too"
    ]
    assert problems[1].startswith("endpoints/twice.yaml: cannot read: key 'operation_id' given "
                                  "twice")  # fmt: skip
    assert problems[2:] == [
        "endpoints/things.yaml: endpoints[0] (slurmgate_get_things): operation_id "
        "slurmgate_get_things is declared by endpoints/other.yaml endpoints[0] "
        "(slurmgate_get_things) too",
        "endpoints/things.yaml: endpoints[1] (slurmgate_get_status): GET /status is declared by "
        "endpoints/other.yaml endpoints[0] (slurmgate_get_things) too",
    ]


def test_every_problem_of_a_file_is_reported_together(tmp_path: Path) -> None:
    broken = THINGS.replace("access: token", "access: nobody").replace(
        "operation_id: slurmgate_get_status", "operation_id: Status"
    )
    _, problems = _run(tmp_path, {"things.yaml": broken, "empty.yaml": "fragments: {}\n"})
    assert problems == [
        "endpoints/empty.yaml: endpoints: must be a non-empty list of endpoint declarations",
        "endpoints/things.yaml: endpoints[0].access: 'nobody' is not one of public, optional, "
        "token",
        "endpoints/things.yaml: endpoints[1].operation_id: 'Status' must look like "
        "'slurmgate_get_x'",
    ]


def test_a_broken_declaration_fails_regen_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    metrics = policies / "endpoints" / "metrics.yaml"
    metrics.write_text(
        metrics.read_text(encoding="utf-8").replace("slurmgate:metrics", "slurmgate:metricz"),
        encoding="utf-8",
    )
    target = tmp_path / "out"
    argv = ["regen", "--specs", str(ROOT / "specs"), "--out", str(target)]
    assert main([*argv, "--policies", str(policies)]) == 1
    err = capsys.readouterr().err
    assert "codegen: 1 problem(s), nothing written:" in err
    assert (
        "endpoints/metrics.yaml: endpoints[0] (slurmgate_get_metrics): scope "
        "'slurmgate:metricz' is not declared in scopes.toml [scopes]" in err
    )
    assert not target.exists()


def test_the_generated_table_is_the_declarations() -> None:
    """generated/endpoints.py, as committed, is what the shipped declarations render to."""
    policies, own, problems = load_policies(POLICY_DIR)
    assert problems == []
    assert policies is not None
    assert tuple(operation.row for operation in own.operations) == ENDPOINTS
    fresh = prepare({"endpoints.py": render_endpoints(own)})["endpoints.py"]
    assert fresh == (ROOT / "generated" / "endpoints.py").read_bytes()
    assert {row.operation_id for row in ENDPOINTS} >= {
        "slurmgate_get_health",
        "slurmgate_get_hardware_table",
        "slurmgate_get_usage",
    }
