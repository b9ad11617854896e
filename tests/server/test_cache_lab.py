"""The response cache in front of the real slurmrestd of both suites, with each backend (memory,
and a real redis-server): hit and refresh, stale-if-error while slurmrestd is down, what is never
stored, read-your-writes, a stampede, and Redis killed under load.

Upstream calls are counted where they land: the lines slurmrestd logs for the method and path.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from slurmgate.server.cache.keys import key_material
from slurmgate.server.cli.commands import main as cli
from slurmgate.server.keys import TOKENS
from tests.lab.env import Lab, LabSuite
from tests.lab.private_restd import PrivateRestd
from tests.redis_server import RedisServer
from tests.server.cache_lab import (
    Gateway,
    Reply,
    burst,
    by_suite,
    restd_log,
    running,
    upstream_calls,
)
from tests.server.gateway import logged_requests

pytestmark = pytest.mark.lab


@pytest.fixture(params=["memory", "redis"])
def cache_section(request: pytest.FixtureRequest) -> dict[str, object]:
    """The [cache] section for each backend; redis gets a redis-server of the test's own."""
    if request.param == "memory":
        return {"backend": "memory"}
    redis: RedisServer = request.getfixturevalue("redis_server")
    return {"backend": "redis", "redis_url": redis.url}


@by_suite
async def test_miss_then_hit_then_refresh(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, cache_section: dict[str, object]
) -> None:
    suite = lab.suites[suite_name]
    async with running(suite, version, tmp_path, cache_section) as gw:
        nodes = gw.path("nodes/")
        calls = upstream_calls(restd_log(suite), "GET", nodes)
        first = await gw.get(nodes)
        assert (first.status, first.cache) == (200, "MISS"), first.body[:300]
        assert sorted(n["name"] for n in first.json()["nodes"]) == ["n1", "n2"]
        assert first.headers["Cache-Control"].startswith("max-age=")
        second = await gw.get(nodes)
        assert (second.status, second.cache) == (200, "HIT")
        assert second.body == first.body
        assert second.headers["X-Cache-Generated-At"] == first.headers["X-Cache-Generated-At"]
        assert calls() == 1
        refreshed = await gw.get(nodes, cache_control="no-cache")
        assert (refreshed.status, refreshed.cache) == (200, "MISS")
        assert calls() == 2


@by_suite
async def test_stale_if_error_while_slurmrestd_is_down(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, cache_section: dict[str, object]
) -> None:
    suite = lab.suites[suite_name]
    restd = PrivateRestd(suite.root, tmp_path / "slurmrestd.log")
    await asyncio.to_thread(restd.start)
    try:
        upstream: dict[str, object] = {"url": restd.url}
        async with running(suite, version, tmp_path, cache_section, upstream=upstream) as gw:
            nodes = gw.path("nodes/")
            stored = await gw.get(nodes)
            assert (stored.status, stored.cache) == (200, "MISS"), stored.body[:300]
            assert logged_requests(restd.log, "GET", nodes) == 1

            assert restd.is_slurmrestd(), "the PID we signal is not slurmrestd"
            await asyncio.to_thread(restd.stop)
            assert not await asyncio.to_thread(restd.answers)
            stale = await gw.get(nodes, cache_control="no-cache, stale-if-error")
            assert (stale.status, stale.cache) == (200, "STALE")
            assert stale.body == stored.body
            assert "Age" in stale.headers
            failed = await gw.get(nodes, cache_control="no-cache")
            assert failed.status == 502
            assert failed.json()["errors"][0]["error"] == "Upstream slurmrestd unavailable"

            await asyncio.to_thread(restd.start)  # the same port again
            back = await gw.get(nodes, cache_control="no-cache")
            assert (back.status, back.cache) == (200, "MISS"), back.body[:300]
            assert logged_requests(restd.log, "GET", nodes) == 2
    finally:
        await asyncio.to_thread(restd.stop)


@by_suite
async def test_error_answers_are_never_stored(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, cache_section: dict[str, object]
) -> None:
    suite = lab.suites[suite_name]
    async with running(suite, version, tmp_path, cache_section) as gw:
        missing = gw.path("job/999999")
        calls = upstream_calls(restd_log(suite), "GET", missing)
        for _ in range(2):
            reply = await gw.get(missing)
            assert (reply.status, reply.cache) == (404, "MISS"), reply.body[:300]
            assert reply.json()["errors"], "slurmrestd's 404 names its error"
            assert "Age" not in reply.headers
        assert calls() == 2
        assert gw.store.stats.not_stored == 2


@by_suite
async def test_update_time_answers_are_never_stored(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, cache_section: dict[str, object]
) -> None:
    suite = lab.suites[suite_name]
    async with running(suite, version, tmp_path, cache_section) as gw:
        jobs = gw.path("jobs/")
        calls = upstream_calls(restd_log(suite), "GET", jobs)
        for _ in range(2):
            reply = await gw.get(f"{jobs}?update_time={int(time.time())}")
            assert (reply.status, reply.cache) == (200, "BYPASS"), reply.body[:300]
        assert calls() == 2


def held_job() -> dict[str, Any]:
    return {
        "job": {
            "name": "sg-cache-lab",
            "script": "#!/bin/sh\nsleep 300\n",
            "account": "physics",
            "current_working_directory": "/tmp",  # noqa: S108 (in the chroot, for the job)
            "environment": ["PATH=/usr/bin:/bin"],
            "hold": True,
        }
    }


def job_state(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.body[:500]
    (job,) = reply.json()["jobs"]
    state: list[str] = job["job_state"]
    return state


def cancel(suite: LabSuite, job_id: int) -> None:
    """scancel the job unless it has already ended."""
    state = suite.run("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T").stdout.split()
    if state not in ([], ["CANCELLED"]):
        suite.run("scancel", str(job_id))


@by_suite
async def test_a_write_is_seen_by_the_next_read(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, cache_section: dict[str, object]
) -> None:
    suite = lab.suites[suite_name]
    async with running(suite, version, tmp_path, cache_section) as gw:
        jobs = gw.path("jobs/")
        assert (await gw.get(jobs)).cache == "MISS"
        assert (await gw.get(jobs)).cache == "HIT"
        submitted = await gw.call("POST", gw.path("job/submit"), body=held_job())
        assert submitted.status == 200, submitted.body[:500]
        job_id: int = submitted.json()["job_id"]
        try:
            listed = await gw.get(jobs)
            assert listed.cache == "MISS"
            assert job_id in [job["job_id"] for job in listed.json()["jobs"]]
            job = gw.path(f"job/{job_id}")
            assert "PENDING" in job_state(await gw.get(job))
            pending = await gw.get(job)
            assert pending.cache == "HIT"  # a PENDING answer is stored now
            cancelled = await gw.call("DELETE", job)
            assert cancelled.status == 200, cancelled.body[:500]
            after = await gw.get(job)
            assert after.cache == "MISS"
            assert "CANCELLED" in job_state(after)
        finally:
            await asyncio.to_thread(cancel, suite, job_id)


@by_suite
async def test_a_stampede_makes_one_upstream_call(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, cache_section: dict[str, object]
) -> None:
    suite = lab.suites[suite_name]
    async with running(suite, version, tmp_path, cache_section) as gw:
        partitions = gw.path("partitions/")
        calls = upstream_calls(restd_log(suite), "GET", partitions)
        replies = await burst([str(gw.client.make_url(partitions))], gw.token, 500)
        assert Counter(r.status for r in replies) == {200: 500}
        assert calls() == 1, gw.store.stats
        assert gw.store.stats.fetches == 1
        assert len({r.body for r in replies}) == 1


@by_suite
async def test_redis_killed_and_restarted_under_load(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, redis_server: RedisServer
) -> None:
    suite = lab.suites[suite_name]
    cache = {"backend": "redis", "redis_url": redis_server.url, "retry_interval": 0.5}
    async with running(suite, version, tmp_path, cache) as gw:
        paths = [gw.path("nodes/"), gw.path("partitions/")]
        calls = [upstream_calls(restd_log(suite), "GET", path) for path in paths]
        replies = await load_with_outage(gw, paths, redis_server)
        assert Counter(r.status for _, r in replies) == {200: len(replies)}
        outcomes = Counter((phase, r.cache) for phase, r in replies)
        assert outcomes[("before", "HIT")] > 0, outcomes
        assert outcomes[("down", "BYPASS")] > 0, outcomes
        assert gw.store.stats.backend_errors >= 1
        # What slurmrestd saw is what the gateway counted, and less than one call per request.
        assert sum(count() for count in calls) == gw.store.stats.fetches < len(replies)

        # Caching resumes once the backend is tried again (after retry_interval).
        async with asyncio.timeout(10):
            while not gw.store.available:  # noqa: ASYNC110 (a deadline, not an event)
                await asyncio.sleep(0.05)
        node = gw.path("node/n1")  # not requested during the run
        node_calls = upstream_calls(restd_log(suite), "GET", node)
        first = await gw.get(node)
        assert (first.status, first.cache) == (200, "MISS")
        second = await gw.get(node)
        assert (second.status, second.cache) == (200, "HIT")
        assert node_calls() == 1


class Ticker:
    """Counts requests started; :meth:`reach` waits until a number of them have."""

    def __init__(self) -> None:
        self.count = 0
        self._waiting: list[tuple[int, asyncio.Event]] = []

    def tick(self) -> None:
        self.count += 1
        for target, event in self._waiting:
            if self.count >= target:
                event.set()

    async def reach(self, target: int) -> None:
        event = asyncio.Event()
        if self.count < target:
            self._waiting.append((target, event))
            await event.wait()


async def load_with_outage(
    gw: Gateway,
    paths: list[str],
    redis: RedisServer,
    *,
    workers: int = 20,
    kill_at: int = 100,
    down_for: int = 200,
    back_for: int = 200,
    limit: int = 5000,
) -> list[tuple[str, Reply]]:
    """GET ``paths`` in turn from ``workers`` loops; kill Redis after ``kill_at`` requests,
    start it again ``down_for`` requests later, stop ``back_for`` requests after that. Each reply
    comes with the phase its request started in: before, down (Redis dead) or back."""
    ticker = Ticker()
    phase = "before"
    replies: list[tuple[str, Reply]] = []

    async def control() -> None:
        nonlocal phase
        await ticker.reach(kill_at)
        await asyncio.to_thread(redis.kill)
        phase = "down"
        await ticker.reach(ticker.count + down_for)
        await asyncio.to_thread(redis.start)
        phase = "back"
        await ticker.reach(ticker.count + back_for)

    async def worker() -> None:
        while not controller.done() and ticker.count < limit:
            started_in = phase
            path = paths[ticker.count % len(paths)]
            ticker.tick()
            replies.append((started_in, await gw.get(path)))

    controller = asyncio.create_task(control())
    try:
        async with asyncio.timeout(45):
            await asyncio.gather(*(worker() for _ in range(workers)))
            await controller  # if the limit came first, this waits for the timeout
    finally:
        if not controller.done():
            controller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await controller
    return replies


@by_suite
async def test_hits_sent_from_memory_files_are_slurmrestds_bytes(
    lab: Lab, tmp_path: Path, suite_name: str, version: str
) -> None:
    suite = lab.suites[suite_name]
    # Every answer above 1 KiB goes to a memory file and is sent with sendfile.
    cache = {"backend": "memory", "memory_file_min_bytes": 1024}
    async with running(suite, version, tmp_path, cache) as gw:
        nodes = gw.path("nodes/")
        calls = upstream_calls(restd_log(suite), "GET", nodes)
        first = await gw.get(nodes)
        assert (first.status, first.cache) == (200, "MISS"), first.body[:300]
        assert len(first.body) > 1024
        client = gw.client
        hits = await burst([str(client.make_url(nodes))], gw.token, 50)
        lookup = await gw.store.lookup(key_material(nodes, "*/*", None), "nodes")
        assert lookup is not None
        assert lookup.entry is not None
        assert lookup.entry.file is not None
        assert {(hit.status, hit.cache) for hit in hits} == {(200, "HIT")}
        assert {hit.body for hit in hits} == {first.body}
        assert all(hit.headers["Content-Length"] == str(len(first.body)) for hit in hits)
        assert sorted(n["name"] for n in hits[0].json()["nodes"]) == ["n1", "n2"]
        assert calls() == 1


@by_suite
async def test_repeated_hits_are_answered_until_the_token_is_revoked(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, cache_section: dict[str, object]
) -> None:
    """Repeated hits are slurmrestd's answer again, each through the whole request path, so a
    revocation is refused by the very next request, though its answer is still fresh."""
    suite = lab.suites[suite_name]
    async with running(suite, version, tmp_path, cache_section) as gw:
        nodes = gw.path("nodes/")
        calls = upstream_calls(restd_log(suite), "GET", nodes)
        first = await gw.get(nodes)
        replies = [await gw.get(nodes) for _ in range(5)]
        assert [(r.status, r.cache) for r in replies] == [(200, "HIT")] * 5
        assert {r.body for r in replies} == {first.body}
        assert sorted(n["name"] for n in first.json()["nodes"]) == ["n1", "n2"]
        hits = gw.store.stats.hits
        assert hits == 5
        assert calls() == 1
        tokens = gw.client.app[TOKENS]
        (name,) = tokens.entries
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli(["token", "revoke", "--tokens-file", str(tokens.path), name]) == 0
        assert await tokens.refresh()
        refused = await gw.get(nodes)
        assert refused.status == 401, refused.body[:300]
        assert gw.store.stats.hits == hits  # refused before the cache was read
        assert calls() == 1
