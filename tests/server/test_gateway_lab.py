"""The gateway in front of the real slurmrestd: every version each suite serves, all transports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from tests.lab.env import Lab, LabSuite, suite_versions
from tests.server.gateway import TRANSPORTS, create_token, gateway_settings

CASES = [(s, v, t) for s, v in suite_versions() for t in TRANSPORTS]
IDS = [f"{s}-{v}-{t}" for s, v, t in CASES]


async def start(suite: LabSuite, transport: str, tmp_path: Path) -> TestClient[Any, Any]:
    settings = gateway_settings(suite, transport, tmp_path / "tokens.toml")
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
    try:
        await client.start_server()
    except BaseException:
        await client.close()
        raise
    return client


async def get_json(client: TestClient[Any, Any], path: str, token: str) -> dict[str, Any]:
    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    body = await response.read()
    assert response.status == 200, body[:500]
    assert response.headers["Content-Type"] == "application/json"
    data: dict[str, Any] = json.loads(body)
    assert data["errors"] == [], data["errors"]
    return data


@pytest.mark.parametrize(("suite_name", "version", "transport"), CASES, ids=IDS)
async def test_reads(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, transport: str
) -> None:
    suite = lab.suites[suite_name]
    token = create_token(tmp_path / "tokens.toml", "alice")
    client = await start(suite, transport, tmp_path)
    try:
        ping = await get_json(client, f"/slurm/{version}/ping/", token)
        assert ping["meta"]["slurm"]["cluster"] == suite.cluster
        assert ping["meta"]["plugin"]["data_parser"] == f"data_parser/{version}"
        nodes = await get_json(client, f"/slurm/{version}/nodes/", token)
        assert sorted(n["name"] for n in nodes["nodes"]) == ["n1", "n2"]
        partitions = await get_json(client, f"/slurm/{version}/partitions", token)
        assert {p["name"] for p in partitions["partitions"]} == {"debug", "batch"}
        jobs = await get_json(client, f"/slurm/{version}/jobs/", token)
        assert isinstance(jobs["jobs"], list)
        accounts = await get_json(client, f"/slurmdb/{version}/accounts/", token)
        assert {"physics", "chem"} <= {a["name"] for a in accounts["accounts"]}
        associations = await get_json(client, f"/slurmdb/{version}/associations/", token)
        pairs = {(a["account"], a["user"]) for a in associations["associations"]}
        assert {("physics", "alice"), ("chem", "bob"), ("chem", "carol")} <= pairs
    finally:
        await client.close()


def job_body(account: str) -> dict[str, Any]:
    return {
        "job": {
            "name": "sg-gateway",
            "script": "#!/bin/sh\nsleep 300\n",
            "account": account,
            "current_working_directory": "/",
            "environment": ["PATH=/usr/bin:/bin"],
            "hold": True,
        }
    }


@pytest.mark.parametrize(("suite_name", "version", "transport"), CASES, ids=IDS)
async def test_submit_get_cancel_as_two_users(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, transport: str
) -> None:
    suite = lab.suites[suite_name]
    tokens = {user: create_token(tmp_path / "tokens.toml", user) for user in ("alice", "bob")}
    client = await start(suite, transport, tmp_path)
    try:
        for user, account in (("alice", "physics"), ("bob", "chem")):
            token = tokens[user]
            auth = {"Authorization": f"Bearer {token}"}
            response = await client.post(
                f"/slurm/{version}/job/submit", json=job_body(account), headers=auth
            )
            answer = json.loads(await response.read())
            assert response.status == 200, answer
            assert answer["errors"] == []
            job_id = answer["job_id"]
            # Slurm's own view: the job belongs to the token's user.
            seen = suite.run("squeue", "-h", "-j", str(job_id), "-o", "%u|%a").stdout.split()
            assert seen == [f"{user}|{account}"]
            job = await get_json(client, f"/slurm/{version}/job/{job_id}", token)
            assert job["jobs"][0]["user_name"] == user
            assert job["jobs"][0]["account"] == account
            response = await client.delete(f"/slurm/{version}/job/{job_id}", headers=auth)
            assert response.status == 200, await response.text()
            state = suite.run("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T").stdout
            assert state.split() in ([], ["CANCELLED"])
    finally:
        await client.close()
