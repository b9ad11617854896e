"""Rate limits and the upstream cap through the whole gateway, in front of a scripted fake
slurmrestd: 429 and 503 in slurmrestd's envelope with Retry-After, what counts, what cannot dodge
the limit, the cap seen from the upstream's side, the metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse

from slurmgate.server.keys import RATE_LIMITS, TOKENS
from tests.server.fake_gateway import Gateway, V, start
from tests.server.gateway import create_token

NODES = f"/slurm/{V}/nodes/"


async def error_of(response: ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body = json.loads(await response.read())
    (error,) = body["errors"]
    assert error["error_number"] == status
    assert body["meta"]["plugin"]["name"] == "slurmgate"
    assert body["warnings"] == []
    return dict(error)


async def test_over_the_rate_is_429_with_retry_after_and_cache_hits_count(tmp_path: Path) -> None:
    async with start(tmp_path, limits={"rate": 0.2, "burst": 3}) as gw:
        statuses = [(await gw.get(NODES)).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        # one miss, two hits: the hits were requests all the same
        assert gw.upstream.calls[NODES] == 1
        refused = await gw.get(NODES)
        error = await error_of(refused, 429)
        assert error["error"] == "Rate limit exceeded"
        assert error["source"] == "slurmgate rate limit"
        assert "0.2 requests per second (bursts of 3)" in error["description"]
        # 5 s until the next request fits (1 / 0.2), rounded up: an integer
        assert refused.headers["Retry-After"] == "5"
        assert refused.headers["Content-Type"].startswith("application/json")
        assert "X-Request-ID" in refused.headers
        # another token is not affected
        assert (await gw.get(NODES, user="bob")).status == 200


async def test_the_same_token_is_the_same_bucket_however_it_is_sent(tmp_path: Path) -> None:
    async with start(tmp_path, limits={"rate": 0.1, "burst": 4}) as gw:
        secret = gw.tokens["alice"]
        spellings = [
            {"Authorization": f"Bearer {secret}"},
            {"authorization": f"bearer {secret}"},
            {"AUTHORIZATION": f"BEARER {secret}"},
            {"x-slurm-user-token": secret},
            {"X-SLURM-USER-TOKEN": secret, "X-SLURM-USER-NAME": "alice"},
        ]
        statuses = []
        for headers in spellings:
            response = await gw.client.get(NODES, headers=headers)
            await response.read()
            statuses.append(response.status)
        assert statuses == [200, 200, 200, 200, 429]


async def test_refused_requests_count_and_unmatched_ones_do_not(tmp_path: Path) -> None:
    async with start(tmp_path, limits={"rate": 0.1, "burst": 2}) as gw:
        # bob lacks slurm:jobs:manage: refused by authorization, counted all the same
        denied = await gw.client.post(
            f"/slurm/{V}/job/submit",
            data=b"{}",
            headers={
                "Authorization": f"Bearer {gw.tokens['bob']}",
                "Content-Type": "application/json",
            },
        )
        await error_of(denied, 403)
        # paths that match no operation are not counted
        for _ in range(5):
            assert (await gw.get("/slurm/v0.0.45/nonexistent", user="bob")).status == 404
        assert (await gw.get(NODES, user="bob")).status == 200
        await error_of(await gw.get(NODES, user="bob"), 429)


async def test_a_token_of_its_own_rate(tmp_path: Path) -> None:
    async with start(tmp_path, limits={"rate": 0.1, "burst": 1}) as gw:
        tokens = tmp_path / "tokens.toml"
        unlimited = create_token(tokens, "portal", scopes=("slurm:read",), extra=("--rate", "inf"))
        bigger = create_token(tokens, "batch", scopes=("slurm:read",), extra=("--burst", "3"))
        await reload_tokens(gw)
        for secret, expected in ((unlimited, [200] * 10), (bigger, [200] * 3 + [429])):
            statuses = []
            for _ in expected:
                response = await gw.client.get(NODES, headers={"Authorization": f"Bearer {secret}"})
                await response.read()
                statuses.append(response.status)
            assert statuses == expected


async def reload_tokens(gw: Gateway) -> None:
    assert await gw.client.app[TOKENS].refresh(force=True)


async def test_anonymous_requests_are_limited_per_source(tmp_path: Path) -> None:
    async with start(tmp_path, limits={"anonymous_rate": 0.1, "anonymous_burst": 3}) as gw:
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await gw.get("/meta/versions", user=None)).status == 200
        for _ in range(2):
            assert (await gw.get(NODES, user=None, **bad)).status == 401
        error = await error_of(await gw.get(NODES, user=None, **bad), 429)
        assert error["description"].startswith("invalid bearer token; ")
        await error_of(await gw.get("/meta/versions", user=None), 429)
        # valid credentials from the same address never touch the address's bucket
        assert (await gw.get(NODES)).status == 200
        assert gw.client.app[RATE_LIMITS].anonymous_buckets.refused == 2


async def test_the_upstream_cap_from_the_upstream_side(tmp_path: Path) -> None:
    upstream_limits = {"max_concurrency": 2, "max_queue": 3, "max_queue_per_caller": 2}
    async with start(tmp_path, upstream=upstream_limits) as gw:
        gw.upstream.held.update(f"/slurm/{V}/job/{n}" for n in range(1, 20))
        # six distinct misses of alice: two go upstream, two wait, two are refused at once
        alice = [asyncio.create_task(gw.get(f"/slurm/{V}/job/{n}")) for n in range(1, 7)]
        refused = [task for task in alice if await _finished_within(task, 0.5)]
        assert len(refused) == 2
        for task in refused:
            error = await error_of(task.result(), 503)
            assert error["error"] == "Upstream slurmrestd busy"
            assert "max_queue_per_caller" in error["description"]
            assert int(task.result().headers["Retry-After"]) >= 1
        # bob takes the last place in the queue; then it is full for everyone
        bob = asyncio.create_task(gw.get(f"/slurm/{V}/job/7", user="bob"))
        await asyncio.sleep(0.1)
        assert not bob.done()
        full = await gw.get(f"/slurm/{V}/job/8", user="bob")
        assert "upstream.max_queue" in (await error_of(full, 503))["description"]
        # the health pings do not queue
        assert (await gw.get("/health", user=None)).status == 200
        metrics = await (await gw.get("/metrics", user="ops")).text()
        assert "slurmgate_upstream_in_flight 2.0" in metrics
        assert "slurmgate_upstream_queued 3.0" in metrics
        assert 'slurmgate_upstream_rejected_total{reason="caller_share"} 2.0' in metrics
        assert 'slurmgate_upstream_rejected_total{reason="queue_full"} 1.0' in metrics
        gw.upstream.release.set()
        done = [await task for task in alice if task not in refused] + [await bob]
        assert [response.status for response in done] == [200] * 5
        assert gw.upstream.peak == 2


async def _finished_within(task: asyncio.Task[ClientResponse], seconds: float) -> bool:
    await asyncio.wait([task], timeout=seconds)
    return task.done()


async def test_rate_limit_metrics(tmp_path: Path) -> None:
    async with start(tmp_path, limits={"rate": 0.1, "burst": 1}) as gw:
        assert (await gw.get(NODES, user="bob")).status == 200
        assert (await gw.get(NODES, user="bob")).status == 429
        metrics = await (await gw.get("/metrics", user="ops")).text()
        assert 'slurmgate_rate_limited_total{kind="caller"} 1.0' in metrics
        assert 'slurmgate_rate_limit_buckets{kind="caller"} 2.0' in metrics  # bob, ops
        assert (
            'slurmgate_requests_total{decision="limited",method="GET",'
            'operation="slurm_v0045_get_nodes",status="429"} 1.0'
        ) in metrics
