"""The gateway in front of the real slurmrestd: every version each suite serves, all transports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import OpenAPIV30SpecValidator

from tests.lab.env import Lab, suite_versions
from tests.server.gateway import TRANSPORTS, create_token, start_gateway

CASES = [(s, v, t) for s, v in suite_versions() for t in TRANSPORTS]
IDS = [f"{s}-{v}-{t}" for s, v, t in CASES]


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
    client = await start_gateway(suite, transport, tmp_path)
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
    client = await start_gateway(suite, transport, tmp_path)
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


@pytest.mark.parametrize("suite_name", sorted({s for s, _ in suite_versions()}))
async def test_openapi_document_covers_what_slurmrestd_serves(
    lab: Lab, tmp_path: Path, suite_name: str
) -> None:
    suite = lab.suites[suite_name]
    async with aiohttp.ClientSession() as session:
        headers = {"X-SLURM-USER-TOKEN": suite.token("slurm")}
        async with session.get(f"{suite.url}/openapi/v3", headers=headers) as response:
            assert response.status == 200
            upstream = json.loads(await response.read())
    (tmp_path / "tokens.toml").write_text("")  # no tokens: the document needs none
    client = await start_gateway(suite, "http", tmp_path)
    try:
        response = await client.get("/openapi/v3")  # no credentials
        assert response.status == 200
        ours = json.loads(await response.read())
    finally:
        await client.close()
    assert [e.message for e in OpenAPIV30SpecValidator(ours).iter_errors()] == []
    served = set(suite.versions)
    theirs = {
        (path, method)
        for path, item in upstream["paths"].items()
        if path.split("/")[2:3] and path.split("/")[2] in served
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert theirs  # slurmrestd lists operations of the served versions
    for path, method in sorted(theirs):
        operation = ours["paths"][path][method]
        assert operation["x-scopes"], (method, path)
    # slurmrestd's namespaces only: /slurmgate/v1/... is the gateway's own (job events, usage)
    slurmrestds = [p for p in ours["paths"] if p.split("/")[1] in {"slurm", "slurmdb"}]
    assert {p.split("/")[2] for p in slurmrestds} == served
    assert "/slurmgate/v1/events/jobs" in ours["paths"]
    assert "/slurmgate/v1/usage" in ours["paths"]


@pytest.mark.parametrize(
    ("suite_name", "version"), [(s, v) for s, v in suite_versions() if v >= "v0.0.44"]
)
async def test_util_hostlist_and_hostnames(
    lab: Lab, tmp_path: Path, suite_name: str, version: str
) -> None:
    """slurmrestd's util plugin through the gateway (Slurm 26.05 serves it for v0.0.44+)."""
    suite = lab.suites[suite_name]
    token = create_token(tmp_path / "tokens.toml", "alice", scopes=("util:read",))
    client = await start_gateway(suite, "http", tmp_path)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        names = await client.post(
            f"/util/{version}/hostnames", json={"hostlist": "n[1-3]"}, headers=headers
        )
        assert names.status == 200, await names.text()
        assert json.loads(await names.read())["hostnames"] == ["n1", "n2", "n3"]
        compressed = await client.post(
            f"/util/{version}/hostlist", json={"hostnames": ["n1", "n2", "n3"]}, headers=headers
        )
        assert compressed.status == 200, await compressed.text()
        assert json.loads(await compressed.read())["hostlist"] == "n[1-3]"
    finally:
        await client.close()
