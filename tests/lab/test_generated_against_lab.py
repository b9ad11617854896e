"""The generated routing tables and models against the real slurmrestd of each suite.

Every GET route without path parameters answers 200, and jobs built with each version's generated
request model are accepted by slurmrestd and seen by Slurm's own squeue.
"""

from __future__ import annotations

import importlib
import json
import urllib.error
import urllib.request
from types import ModuleType
from typing import Any

import pytest

from slurmgate.policies.routing import Route
from tests.lab.env import Lab, LabSuite, suite_versions

SUITE_VERSIONS = suite_versions()
IDS = [f"{suite}-{version}" for suite, version in SUITE_VERSIONS]

# Routes that answer for exactly one object and so need a query naming it: without one slurmrestd
# answers 500 "Ambiguous request: More than 1 association would have been dumped".
SINGLE_OBJECT_QUERIES = {"/association/": "?account=physics&user=alice&cluster={cluster}"}


def generated(version: str, module: str) -> ModuleType:
    return importlib.import_module(f"slurmgate.generated.{version.replace('.', '_')}.{module}")


def routes(version: str) -> tuple[Route, ...]:
    table: tuple[Route, ...] = generated(version, "routes").ROUTES
    return table


def request(
    suite: LabSuite,
    method: str,
    path: str,
    *,
    user: str | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Call slurmrestd as SlurmUser, acting for ``user`` when given (as slurmgate will)."""
    headers = {"X-SLURM-USER-TOKEN": suite.token("slurm")}
    if user:
        headers["X-SLURM-USER-NAME"] = user
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(suite.url + path, data, headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=120) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize(("suite_name", "version"), SUITE_VERSIONS, ids=IDS)
def test_every_parameterless_get_answers_200(lab: Lab, suite_name: str, version: str) -> None:
    suite = lab.suites[suite_name]
    gets = [r for r in routes(version) if r.method == "GET" and "{" not in r.path]
    assert len(gets) >= 20, "the routing table lost most of its GET routes"
    failures = []
    for route in gets:
        query = next(
            (q for suffix, q in SINGLE_OBJECT_QUERIES.items() if route.path.endswith(suffix)), ""
        )
        status, body = request(suite, "GET", route.path + query.format(cluster=suite.cluster))
        if status != 200 or body.get("errors"):
            failures.append(f"{route.path}: {status} {body.get('errors')}")
    assert not failures, "\n".join(failures)


def submit_route(version: str) -> Route:
    (route,) = (r for r in routes(version) if r.method == "POST" and r.path.endswith("/job/submit"))
    return route


def job_description(name: str, **fields: object) -> dict[str, Any]:
    return {
        "name": name,
        "current_working_directory": "/",
        "environment": ["PATH=/usr/bin:/bin"],
        # Held jobs stay in squeue whatever the scheduler does; the test cancels them.
        "hold": True,
        **fields,
    }


SCRIPT = "#!/bin/sh\nsleep 60\n"
VARIANTS: dict[str, tuple[str, dict[str, Any], str, int]] = {
    # variant: (user, body, expected account, expected number of job components)
    "account": (
        "bob",
        {"job": job_description("sg-acct", script=SCRIPT, account="chem")},
        "chem",
        1,
    ),
    "default-account": (
        "carol",
        {"job": job_description("sg-default", script=SCRIPT)},
        "physics",
        1,
    ),
    # A tri-state number given as a plain number, as slurmrestd accepts (24.11's v0.0.40 parser
    # applies it with a warning "Expected OpenAPI type=object").
    "plain-number": (
        "alice",
        {"job": job_description("sg-plain", script=SCRIPT, account="physics", time_limit=5)},
        "physics",
        1,
    ),
    "hetjob": (
        "carol",
        {
            "jobs": [
                job_description("sg-het", script=SCRIPT, account="chem"),
                job_description("sg-het", account="chem"),
            ]
        },
        "chem",
        2,
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(("suite_name", "version"), SUITE_VERSIONS, ids=IDS)
def test_job_built_from_generated_model_runs_in_slurm(
    lab: Lab, suite_name: str, version: str, variant: str
) -> None:
    suite = lab.suites[suite_name]
    user, raw, account, components = VARIANTS[variant]
    route = submit_route(version)
    assert route.body_model is not None
    model = getattr(generated(version, "models"), route.body_model)
    body = model.model_validate(raw).model_dump(mode="json", by_alias=True, exclude_none=True)

    status, answer = request(suite, "POST", route.path, user=user, body=body)
    assert status == 200, answer.get("errors")
    assert not answer.get("errors"), answer["errors"]
    job_id = int(answer["job_id"])
    try:
        out = suite.run("squeue", "-h", "-j", str(job_id), "-o", "%i|%u|%a|%j|%l").stdout
        rows = [line.split("|") for line in out.splitlines()]
        assert len(rows) == components, out
        limit = "5:00" if variant == "plain-number" else "UNLIMITED"
        for _, *seen in rows:
            assert seen == [user, account, raw_name(raw), limit]
    finally:
        suite.run("scancel", str(job_id))


def raw_name(raw: dict[str, Any]) -> str:
    job = raw["job"] if "job" in raw else raw["jobs"][0]
    name: str = job["name"]
    return name
