"""Account restrictions through the gateway in front of the real Slurm, in every version served.

Each refused request is proven to leave Slurm unchanged (squeue, sacctmgr), each allowed one to
take effect. Jobs carry a name unique to the test, so counts are not disturbed by other tests, and
are cancelled at the end; associations added are deleted.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from tests.lab.env import Lab, LabSuite, suite_versions
from tests.server.gateway import create_token, gateway_settings

pytestmark = pytest.mark.lab

CASES = suite_versions()
IDS = [f"{s}-{v}" for s, v in CASES]
JOBS = ("slurm:read", "slurm:jobs:manage")
ASSOCIATIONS = ("slurmdb:read", "slurmdb:associations:manage", "slurmdb:users_association:manage")


@dataclass
class Lab1:
    """A gateway in front of one suite, tokens for it, and a job name unique to the test."""

    suite: LabSuite
    version: str
    client: TestClient[Any, Any]
    tokens: dict[str, str]
    name: str

    async def send(
        self, method: str, path: str, token: str, body: object = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        url = path.replace("/V/", f"/{self.version}/")
        response = await self.client.request(method, url, data=data, headers=headers)
        return response.status, json.loads(await response.read())

    async def submit(self, token: str, *accounts: str | None) -> tuple[int, dict[str, Any]]:
        components = [self.component(account) for account in accounts]
        body = {"job": components[0]} if len(components) == 1 else {"jobs": components}
        return await self.send("POST", "/slurm/V/job/submit", token, body)

    def component(self, account: str | None) -> dict[str, Any]:
        job: dict[str, Any] = {
            "name": self.name,
            "script": "#!/bin/sh\nsleep 300\n",
            "current_working_directory": "/",
            "environment": ["PATH=/usr/bin:/bin"],
            "hold": True,
        }
        if account is not None:
            job["account"] = account
        return job

    def jobs(self, *states: str) -> list[str]:
        """``job id|account|state`` of this test's jobs, as squeue sees them."""
        states = states or ("all",)
        args = ("squeue", "-h", "-n", self.name, "-t", ",".join(states), "-o", "%i|%a|%T")
        return sorted(self.suite.run(*args).stdout.split())

    def pending(self) -> list[str]:
        return self.jobs("PENDING")


def refused(answer: tuple[int, dict[str, Any]], source: str) -> None:
    status, body = answer
    assert status == 403, body
    (error,) = body["errors"]
    assert error["source"] == source, error


def accepted(answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    status, body = answer
    assert status == 200, body
    assert body["errors"] == [], body["errors"]
    return body


@pytest.fixture
async def lab1(lab: Lab, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Lab1]:
    suite_name, version = request.param
    suite = lab.suites[suite_name]
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "bob:chem": create_token(tokens_file, "bob", scopes=JOBS, accounts=("chem",)),
        "carol:chem": create_token(tokens_file, "carol", scopes=JOBS, accounts=("chem",)),
        "carol": create_token(tokens_file, "carol", scopes=JOBS),
        "dora:chem": create_token(tokens_file, "dora", scopes=ASSOCIATIONS, accounts=("chem",)),
    }
    settings = gateway_settings(suite, "http", tokens_file)
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    name = f"sg-authz-{uuid.uuid4().hex[:8]}"
    try:
        yield Lab1(suite, version, client, tokens, name)
    finally:
        await client.close()
        suite.run("scancel", "-n", name)


with_versions = pytest.mark.parametrize("lab1", CASES, ids=IDS, indirect=True)


@with_versions
async def test_submit(lab1: Lab1) -> None:
    accepted(await lab1.submit("bob:chem", "chem"))
    [job] = lab1.pending()
    assert job.split("|")[1] == "chem"
    # carol is in physics too: only the gateway stands in the way.
    refused(await lab1.submit("carol:chem", "physics"), "account:physics")
    refused(await lab1.submit("bob:chem", "physics"), "account:physics")
    assert lab1.pending() == [job]
    # No account: the caller's default account (bob: chem; carol: physics).
    accepted(await lab1.submit("bob:chem", None))
    assert [j.split("|")[1] for j in lab1.pending()] == ["chem", "chem"]
    refused(await lab1.submit("carol:chem", None), "account:physics")
    refused(await lab1.submit("carol:chem", "chem", "physics"), "account:physics")
    refused(await lab1.submit("carol:chem", "chem", None), "account:physics")
    assert len(lab1.pending()) == 2
    accepted(await lab1.submit("carol:chem", "chem", "chem"))
    accounts = [j.split("|")[1] for j in lab1.pending()]
    assert accounts == ["chem"] * 4  # two jobs and a HetJob's two components


@with_versions
async def test_cancel_and_update_look_the_job_up(lab1: Lab1) -> None:
    physics = accepted(await lab1.submit("carol", "physics"))["job_id"]
    chem = accepted(await lab1.submit("carol", "chem"))["job_id"]
    hetjob = accepted(await lab1.submit("carol", "chem", "physics"))["job_id"]
    before = lab1.pending()
    assert len(before) == 4
    refused(await lab1.send("DELETE", f"/slurm/V/job/{physics}", "carol:chem"), "account:physics")
    refused(await lab1.send("DELETE", f"/slurm/V/job/{hetjob}", "carol:chem"), "account:physics")
    update = ("POST", f"/slurm/V/job/{chem}", "carol:chem", {"account": "physics"})
    refused(await lab1.send(*update), "account:physics")
    comment = ("POST", f"/slurm/V/job/{physics}", "carol:chem", {"comment": "sg"})
    refused(await lab1.send(*comment), "account:physics")
    refused(await lab1.send("DELETE", "/slurm/V/job/999999", "carol:chem"), "job:999999")
    assert lab1.pending() == before
    # Bulk signal: no account filter means every account.
    refused(await lab1.send("DELETE", "/slurm/V/jobs/", "carol:chem", {}), "accounts")
    refused(
        await lab1.send("DELETE", "/slurm/V/jobs/", "carol:chem", {"jobs": [str(physics)]}),
        "accounts",
    )
    assert lab1.pending() == before
    # What the token may touch goes through.
    accepted(await lab1.send("DELETE", f"/slurm/V/job/{chem}", "carol:chem"))
    assert len(lab1.pending()) == 3
    assert f"{chem}|chem|CANCELLED" in lab1.jobs()


@with_versions
async def test_associations(lab1: Lab1) -> None:
    suite = lab1.suite

    def associations(user: str) -> list[str]:
        out = suite.run(
            "sacctmgr", "-nP", "show", "association", f"user={user}", "format=account"
        ).stdout
        return sorted(out.split())

    condition = {"users": ["bob"], "clusters": [suite.cluster], "accounts": ["physics"]}
    body = {"association_condition": condition, "user": {}}
    answer = await lab1.send("POST", "/slurmdb/V/users_association/", "dora:chem", body)
    refused(answer, "account:physics")
    association = {"user": "bob", "account": "physics", "cluster": suite.cluster}
    answer = await lab1.send(
        "POST", "/slurmdb/V/associations/", "dora:chem", {"associations": [association]}
    )
    refused(answer, "account:physics")
    assert associations("bob") == ["chem"]
    refused(await lab1.send("DELETE", "/slurmdb/V/associations/?user=bob", "dora:chem"), "accounts")
    assert associations("bob") == ["chem"]
    # Allowed: alice (physics only) into chem, then out again.
    condition = {"users": ["alice"], "clusters": [suite.cluster], "accounts": ["chem"]}
    body = {"association_condition": condition, "user": {}}
    try:
        accepted(await lab1.send("POST", "/slurmdb/V/users_association/", "dora:chem", body))
        assert associations("alice") == ["chem", "physics"]
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # nothing to delete
            suite.run("sacctmgr", "-i", "delete", "user", "alice", "account=chem")
    assert associations("alice") == ["physics"]
