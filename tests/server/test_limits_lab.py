"""Rate limits and the upstream cap through the real gateway in front of the lab's Slurm.

The cap is measured on slurmrestd's side: with the inetd transport every call is one slurmrestd
process, run here through a wrapper that logs when it starts and ends. The gateway holds a slot
from before the process starts until after it has been reaped, so the most processes alive at
once is the most calls slurmrestd had under way.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from tests.lab.env import Lab, LabSuite
from tests.server.gateway import create_token, gateway_settings, slurmrestd_requests

VERSION = "v0.0.42"  # served by both suites; trixie is used


async def start(
    suite: LabSuite, transport: str, tmp_path: Path, **sections: dict[str, object]
) -> TestClient[Any, Any]:
    settings = gateway_settings(suite, transport, tmp_path / "tokens.toml", **sections)
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    return client


async def get(client: TestClient[Any, Any], path: str, token: str) -> ClientResponse:
    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    await response.read()
    return response


async def test_a_token_over_its_rate_gets_429_and_hits_count(lab: Lab, tmp_path: Path) -> None:
    suite = lab.suites["trixie"]
    tokens = tmp_path / "tokens.toml"
    alice = create_token(tokens, "alice", scopes=("slurm:read",))
    portal = create_token(tokens, "carol", scopes=("slurm:read",), extra=("--rate", "inf"))
    nodes = f"/slurm/{VERSION}/nodes/"
    client = await start(suite, "http", tmp_path, limits={"rate": 0.5, "burst": 3})
    try:
        before = slurmrestd_requests(suite, "GET", nodes)
        answers = [await get(client, nodes, alice) for _ in range(4)]
        assert [a.status for a in answers] == [200, 200, 200, 429]
        assert [a.headers.get("X-Cache") for a in answers[:3]] == ["MISS", "HIT", "HIT"]
        # slurmctld saw one request; the client made three and was then refused
        assert slurmrestd_requests(suite, "GET", nodes) - before == 1
        refused = answers[3]
        assert refused.headers["Retry-After"] == "2"
        body = json.loads(await refused.read())
        assert body["errors"][0]["error"] == "Rate limit exceeded"
        assert body["errors"][0]["error_number"] == 429
        # a token with its own rate (inf) is not limited; nor is it slowed by alice's bucket
        statuses = [(await get(client, nodes, portal)).status for _ in range(20)]
        assert statuses == [200] * 20
    finally:
        await client.close()


async def test_a_burst_of_misses_never_exceeds_the_cap_at_slurmrestd(
    lab: Lab, tmp_path: Path
) -> None:
    suite = lab.suites["trixie"]
    alice = create_token(tmp_path / "tokens.toml", "alice", scopes=("slurm:read",))
    stamps = tmp_path / "slurmrestd-processes.log"
    wrapper = (
        f'echo "start $(date +%s.%N)" >> {shlex.quote(str(stamps))}; "$@"; status=$?; '
        f'echo "end $(date +%s.%N)" >> {shlex.quote(str(stamps))}; exit $status'
    )

    async def burst(cap: int, queue: int, misses: int) -> tuple[int, list[int]]:
        upstream: dict[str, object] = {
            "command": ["/bin/sh", "-c", wrapper, "slurmrestd", *suite.inetd_command],
            "max_processes": 64,
            "max_concurrency": cap,
            "max_queue": queue,
            "max_queue_per_caller": queue,
            "queue_timeout": 120.0,
        }
        client = await start(suite, "inetd", tmp_path, upstream=upstream)
        try:
            stamps.write_text("")  # after the start-up calls (API versions)
            answers = await asyncio.gather(
                *(get(client, f"/slurm/{VERSION}/job/{90000 + n}", alice) for n in range(misses))
            )
        finally:
            await client.close()
        return most_at_once(stamps.read_text()), [a.status for a in answers]

    # a burst of 12 distinct misses with room for them all: slurmrestd runs many at once
    # (the measurement can see more than 3)
    peak, statuses = await burst(cap=12, queue=0, misses=12)
    assert peak > 3, peak
    assert 503 not in statuses
    # with a cap of 3 and a queue of 5: never more than 3, and the 4 beyond the queue get 503
    peak, statuses = await burst(cap=3, queue=5, misses=12)
    assert peak <= 3, peak
    assert statuses.count(503) == 4, statuses
    # the others got slurmrestd's own answer (an unknown job: not 503)
    assert len([s for s in statuses if s != 503]) == 8
    assert stamps.read_text().count("start") == 8


def most_at_once(log: str) -> int:
    """The most intervals open at once, from "start <t>" and "end <t>" lines."""
    events = []
    for line in log.splitlines():
        kind, when = line.split()
        events.append((float(when), 1 if kind == "start" else -1))
    assert sum(change for _, change in events) == 0, "a process without an end"
    # at equal times, ends first: touching intervals do not overlap
    running = peak = 0
    for _, change in sorted(events):
        running += change
        peak = max(peak, running)
    return peak
