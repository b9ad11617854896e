"""The hardware endpoints in the gateway, in front of a scripted slurmrestd serving the lab's
recorded nodes and partitions: scope, envelope, bad input, upstream failures, and caching through
the cache step (hit, single-flight, invalidation by a node update, stale-if-error)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from tests.server.fake_gateway import Gateway, V, start
from tests.server.gateway import create_token

RECORDINGS = Path(__file__).parent / "recordings"
NODES = f"/slurm/{V}/nodes"
PARTITIONS = f"/slurm/{V}/partitions"


def recording(what: str) -> bytes:
    return (RECORDINGS / f"forky-v0.0.45-idle-{what}.json").read_bytes()


@asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, dict[str, str]]]:
    """The gateway, its fake slurmrestd answering the recordings, and tokens: carol
    (slurmgate:hardware), dora (that and slurm:nodes:manage)."""
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "carol": create_token(tokens_file, "carol", scopes=("slurmgate:hardware",)),
        "dora": create_token(
            tokens_file, "dora", scopes=("slurmgate:hardware", "slurm:nodes:manage")
        ),
    }
    async with start(tmp_path) as gw:
        gw.upstream.answers[NODES] = (200, recording("nodes"))
        gw.upstream.answers[PARTITIONS] = (200, recording("partitions"))
        yield gw, tokens


async def get(gw: Gateway, path: str, token: str | None, **headers: str) -> ClientResponse:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await gw.client.get(path, headers=headers)
    await response.read()
    return response


async def body(response: ClientResponse) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await response.read())
    return data


@pytest.mark.parametrize("name", ["table", "stats", "avail"])
async def test_each_answers_in_slurmrestds_envelope_and_is_cached(
    tmp_path: Path, name: str
) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        first = await get(gw, f"/hardware/{name}", tokens["carol"])
        assert first.status == 200, await first.read()
        assert first.headers["X-Cache"] == "MISS"
        assert first.headers["Content-Type"] == "application/json"
        data = await body(first)
        assert data["errors"] == []
        assert data["warnings"] == []
        assert data["meta"]["plugin"]["type"] == "slurmgate"
        assert data["meta"]["slurmgate"] == {"api_version": V, "sources": [NODES, PARTITIONS]}
        assert data["meta"]["slurm"]["cluster"] == "forky"
        assert data["partition"] is None
        second = await get(gw, f"/hardware/{name}", tokens["carol"])
        assert second.headers["X-Cache"] == "HIT"
        assert await second.read() == await first.read()
        assert gw.upstream.calls[NODES] == gw.upstream.calls[PARTITIONS] == 1
        # acting as the caller, like any forwarded read
        assert {h.get("X-SLURM-USER-NAME") for h in gw.upstream.headers} == {"carol"}


async def test_scope_and_credentials_are_needed(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (gw, _):
        anonymous = await get(gw, "/hardware/table", None)
        assert anonymous.status == 401
        alice = await get(gw, "/hardware/table", gw.tokens["alice"])  # slurm:read only
        assert alice.status == 403
        (error,) = (await body(alice))["errors"]
        assert error["source"] == "scope:slurmgate:hardware"
        assert "lacks the scope slurmgate:hardware" in error["description"]
        assert gw.upstream.calls[NODES] == 0


@pytest.mark.parametrize(
    ("query", "status", "source", "text"),
    [
        (
            "?partition=nope",
            404,
            "query:partition",
            "no partition 'nope'; partitions: batch, debug",
        ),
        ("?partition=", 400, "query:partition", "partition must be a partition name"),
        ("?partition=%0A", 400, "query:partition", "partition must be a partition name"),
        ("?partition=" + "p" * 257, 400, "query:partition", "partition must be"),
        ("?partition=debug&partition=batch", 400, "query:partition", "more than once"),
        ("?nodes=n1", 400, "query:nodes", "unknown query parameter 'nodes'"),
    ],
)
async def test_bad_input_is_told_in_the_envelope(
    tmp_path: Path, query: str, status: int, source: str, text: str
) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        response = await get(gw, f"/hardware/avail{query}", tokens["carol"])
        assert response.status == status
        data = await body(response)
        (error,) = data["errors"]
        assert (error["error_number"], error["source"]) == (status, source)
        assert text in error["description"]
        # never stored: the next one asks again
        await get(gw, f"/hardware/avail{query}", tokens["carol"])
        assert gw.upstream.calls[NODES] == (2 if status == 404 else 0)


async def test_a_partition_filter_is_its_own_entry(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        everything = await body(await get(gw, "/hardware/table", tokens["carol"]))
        debug = await get(gw, "/hardware/table?partition=debug", tokens["carol"])
        assert debug.headers["X-Cache"] == "MISS"
        data = await body(debug)
        assert data["partition"] == "debug"
        assert [p["name"] for p in data["partitions"]] == ["debug"]
        assert data["groups"] == everything["groups"]  # both lab nodes are in debug


@pytest.mark.parametrize(
    ("status", "answer", "text"),
    [
        (500, b'{"errors": [{"description": "slurmctld is gone"}]}', "with 500: slurmctld is gone"),
        (200, b'{"nodes": [], "errors": [{"error": "Unable to query"}]}', "Unable to query"),
        (200, b"not json", "with 200"),
        (200, b'{"nodes": "none", "errors": []}', "cannot be read: the answer has no list"),
    ],
)
async def test_an_upstream_failure_is_a_502_never_stored(
    tmp_path: Path, status: int, answer: bytes, text: str
) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        gw.upstream.answers[NODES] = (status, answer)
        response = await get(gw, "/hardware/stats", tokens["carol"])
        assert response.status == 502
        (error,) = (await body(response))["errors"]
        assert error["source"] == "slurmgate hardware"
        assert text in error["description"]
        gw.upstream.answers[NODES] = (200, recording("nodes"))
        again = await get(gw, "/hardware/stats", tokens["carol"])
        assert (again.status, again.headers["X-Cache"]) == (200, "MISS")


async def test_concurrent_misses_share_one_upstream_call(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        gw.upstream.held.add(NODES)
        requests = [
            asyncio.create_task(get(gw, "/hardware/avail", tokens["carol"])) for _ in range(8)
        ]
        await asyncio.wait_for(gw.upstream.arrived.wait(), 30)
        gw.upstream.release.set()
        answers = await asyncio.gather(*requests)
        assert {a.status for a in answers} == {200}
        assert len({await a.read() for a in answers}) == 1
        assert gw.upstream.calls[NODES] == 1


async def test_a_node_update_invalidates_the_hardware_group(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        await get(gw, "/hardware/table", tokens["dora"])
        assert (await get(gw, "/hardware/table", tokens["dora"])).headers["X-Cache"] == "HIT"
        update = await gw.client.post(
            f"/slurm/{V}/node/n1",
            json={"state": ["DRAIN"], "reason": "test"},
            headers={"Authorization": f"Bearer {tokens['dora']}"},
        )
        assert update.status == 200, await update.read()
        after = await get(gw, "/hardware/table", tokens["dora"])
        assert after.headers["X-Cache"] == "MISS"
        assert gw.upstream.calls[NODES] == 2


async def test_stale_if_error_serves_the_last_answer(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        stored = await get(gw, "/hardware/avail", tokens["carol"])
        gw.upstream.answers[NODES] = (500, b'{"errors": [{"description": "down"}]}')
        refused = await get(gw, "/hardware/avail", tokens["carol"], **{"Cache-Control": "no-cache"})
        assert refused.status == 502
        stale = await get(
            gw, "/hardware/avail", tokens["carol"], **{"Cache-Control": "no-cache, stale-if-error"}
        )
        assert (stale.status, stale.headers["X-Cache"]) == (200, "STALE")
        assert await stale.read() == await stored.read()


async def test_spellings_of_one_query_share_one_entry(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        first = await get(gw, "/hardware/stats?partition=debug", tokens["carol"])
        assert first.headers["X-Cache"] == "MISS"
        for spelling in ("?partition=%64ebug", "?partition=debu%67"):
            again = await get(gw, f"/hardware/stats{spelling}", tokens["carol"])
            assert again.headers["X-Cache"] == "HIT", spelling
        for accept in ("application/json", "*/*", "application/json;q=0.9, */*;q=0.1"):
            again = await get(gw, "/hardware/stats?partition=debug", tokens["carol"], Accept=accept)
            assert again.headers["X-Cache"] == "HIT", accept
        assert gw.upstream.calls[NODES] == 1


@pytest.mark.parametrize("accept", ["text/html", "application/yaml", "text/html, */*;q=0.1"])
async def test_an_accept_without_json_is_a_406_never_stored(tmp_path: Path, accept: str) -> None:
    async with gateway(tmp_path) as (gw, tokens):
        for _ in range(2):
            response = await get(gw, "/hardware/table", tokens["carol"], Accept=accept)
            assert response.status == 406
            (error,) = (await body(response))["errors"]
            assert (error["error_number"], error["source"]) == (406, "Accept")
        assert gw.upstream.calls[NODES] == 0
