"""The hardware endpoints in front of the real slurmrestd of both suites: the numbers agree with
what ``GET /slurm/<newest>/nodes`` says directly, and a second call is a cache HIT that makes no
upstream call (counted in the log of a slurmrestd of the test's own, which nothing else uses)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from tests.lab.env import Lab, LabSuite
from tests.lab.private_restd import PrivateRestd
from tests.server.gateway import create_token, gateway_settings, logged_requests

pytestmark = pytest.mark.lab

SUITES = ["trixie", "forky"]
#: Attempts at reading the gateway's answer between two identical direct reads (other tests
#: change node states in the shared lab at any time).
ATTEMPTS = 10


def direct_nodes(suite: LabSuite) -> dict[str, Any]:
    """``GET /slurm/<newest>/nodes`` straight from the suite's shared slurmrestd."""
    request = urllib.request.Request(  # noqa: S310 (the lab's own loopback URL)
        f"{suite.url}/slurm/{suite.versions[-1]}/nodes",
        headers={"X-SLURM-USER-TOKEN": suite.token("carol")},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        data: dict[str, Any] = json.loads(response.read())
    assert data["errors"] == [], data["errors"]
    return data


def counted(nodes: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    """The fields the summaries read, to tell whether two direct reads saw the same cluster."""
    keys = ("name", "state", "cpus", "alloc_cpus", "alloc_idle_cpus", "real_memory")
    more = ("alloc_memory", "specialized_memory", "gres", "gres_used", "partitions")
    return [tuple(str(node.get(k)) for k in keys + more) for node in nodes]


@asynccontextmanager
async def hardware_gateway(
    suite: LabSuite, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], str, PrivateRestd]]:
    """A gateway in front of a slurmrestd of our own; a token of carol's with the scope."""
    restd = PrivateRestd(suite.root, tmp_path / "slurmrestd.log")
    await asyncio.to_thread(restd.start)
    try:
        tokens_file = tmp_path / "tokens.toml"
        token = create_token(tokens_file, "carol", scopes=("slurmgate:hardware",))
        settings = gateway_settings(suite, "http", tokens_file, upstream={"url": restd.url})
        client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
        await client.start_server()
        try:
            yield client, token, restd
        finally:
            await client.close()
    finally:
        await asyncio.to_thread(restd.stop)


async def get(
    client: TestClient[Any, Any], path: str, token: str, **headers: str
) -> tuple[str | None, dict[str, Any]]:
    """GET ``path``; its X-Cache and its body, which must be a 200's."""
    headers["Authorization"] = f"Bearer {token}"
    async with client.get(path, headers=headers) as response:
        body = await response.read()
        assert response.status == 200, body[:500]
        data: dict[str, Any] = json.loads(body)
        return response.headers.get("X-Cache"), data


async def consistent(
    suite: LabSuite, client: TestClient[Any, Any], token: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Direct nodes and the three answers, read while the nodes did not change."""
    for _ in range(ATTEMPTS):
        before = await asyncio.to_thread(direct_nodes, suite)
        answers = {}
        for name in ("table", "stats", "avail"):
            _, answers[name] = await get(
                client, f"/hardware/{name}", token, **{"Cache-Control": "no-cache"}
            )
        after = await asyncio.to_thread(direct_nodes, suite)
        if counted(before["nodes"]) == counted(after["nodes"]):
            return after["nodes"], answers
        await asyncio.sleep(0.5)
    pytest.fail(f"the nodes of {suite.name} kept changing during {ATTEMPTS} attempts")


def _free(node: dict[str, Any]) -> bool:
    """IDLE or MIXED without flags (the lab's nodes carry none but COMPLETING, at times)."""
    state = set(node["state"])
    return bool(state & {"IDLE", "MIXED"}) and state <= {"IDLE", "MIXED", "COMPLETING"}


@pytest.mark.parametrize("suite_name", SUITES)
async def test_numbers_agree_with_slurmrestds_nodes(
    lab: Lab, tmp_path: Path, suite_name: str
) -> None:
    suite = lab.suites[suite_name]
    async with hardware_gateway(suite, tmp_path) as (client, token, _):
        nodes, answers = await consistent(suite, client, token)
    newest = suite.versions[-1]
    for data in answers.values():
        assert data["meta"]["slurmgate"]["api_version"] == newest
        assert data["errors"] == []
    groups = answers["table"]["groups"]
    assert sorted(name for g in groups for name in g["nodes"]) == sorted(n["name"] for n in nodes)
    by_name = {n["name"]: n for n in nodes}
    for group in groups:
        for name in group["nodes"]:
            node = by_name[name]
            assert (group["cpus"], group["real_memory"]) == (node["cpus"], node["real_memory"])
            assert (group["sockets"], group["cores_per_socket"], group["threads_per_core"]) == (
                node["sockets"],
                node["cores"],
                node["threads"],
            )
            assert set(node["partitions"]) <= set(group["partitions"])
    stats = answers["stats"]["stats"]
    assert stats["nodes"] == len(nodes)
    assert stats["cpus"] == sum(n["cpus"] for n in nodes)
    assert stats["real_memory"] == sum(n["real_memory"] for n in nodes)
    assert stats["allocated"]["cpus"] == sum(n["alloc_cpus"] for n in nodes)
    assert sum(stats["node_states"].values()) == len(nodes)
    total = answers["avail"]["total"]
    free = [n for n in nodes if _free(n)]
    assert total["idle_nodes"] + total["mixed_nodes"] == len(free)
    # slurmctld's own count of idle CPUs
    assert total["cpus"] == sum(n["alloc_idle_cpus"] for n in free)
    assert total["real_memory"] == sum(
        n["real_memory"] - n["specialized_memory"] - n["alloc_memory"] for n in free
    )
    available = sorted(name for g in answers["avail"]["groups"] for name in g["available_nodes"])
    assert available == sorted(n["name"] for n in free)


@pytest.mark.parametrize("suite_name", SUITES)
async def test_a_second_call_is_a_hit_without_an_upstream_call(
    lab: Lab, tmp_path: Path, suite_name: str
) -> None:
    suite = lab.suites[suite_name]
    newest = suite.versions[-1]
    nodes_path, partitions_path = f"/slurm/{newest}/nodes", f"/slurm/{newest}/partitions"
    async with hardware_gateway(suite, tmp_path) as (client, token, restd):

        def upstream() -> tuple[int, int]:
            return (
                logged_requests(restd.log, "GET", nodes_path),
                logged_requests(restd.log, "GET", partitions_path),
            )

        assert upstream() == (0, 0)
        for name in ("table", "stats", "avail"):
            before = upstream()
            cache, first = await get(client, f"/hardware/{name}", token)
            assert cache == "MISS"
            assert upstream() == (before[0] + 1, before[1] + 1)
            cache, second = await get(client, f"/hardware/{name}", token)
            assert cache == "HIT"
            assert second == first
            assert upstream() == (before[0] + 1, before[1] + 1)
