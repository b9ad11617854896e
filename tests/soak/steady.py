"""A steady mixed load through ``slurmgate serve`` in front of the lab, with the gateway's memory
sampled as it goes.

The mix is the benchmark's (tests/bench/scenarios.py, ``MIX``): users polling the job list and
their own jobs, a dashboard reading nodes and partitions, a few submissions of held jobs (each
cancelled at the end). Requests are sent at a fixed rate, not as fast as possible: the lab is
shared, and a soak is about time, not throughput. Bounded by count (rate x seconds) and time.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from tests.bench.scenarios import MIX
from tests.lab.env import LabSuite
from tests.lab.private_restd import PrivateRestd
from tests.server.faults import GatewayProcess
from tests.server.gateway import create_token

__all__ = ["JOB_NAME", "SoakResult", "run_soak"]

#: The name of the held jobs the soak submits (and cancels at the end).
JOB_NAME = "sg-soak"
USERS = ("alice", "bob", "carol")
#: Requests allowed in flight at once; beyond, the rate drops (and the report shows it).
MAX_IN_FLIGHT = 32


@dataclass
class SoakResult:
    """What a soak measured."""

    seconds: float
    rate: float
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    cache: Counter[str] = field(default_factory=Counter)
    #: (request, what went wrong) for every answer that is not a success
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    #: (seconds since start, RSS in KiB) every few seconds
    rss: list[tuple[float, int]] = field(default_factory=list)
    warmup: float = 0.0
    submitted: list[int] = field(default_factory=list)
    alive: bool = True
    crashes: list[str] = field(default_factory=list)
    upstream_calls: float = 0.0

    @property
    def rss_after_warmup(self) -> int:
        """RSS at the first sample after the warm-up, KiB."""
        return next((kib for t, kib in self.rss if t >= self.warmup), self.rss[-1][1])

    @property
    def rss_end(self) -> int:
        """RSS at the last sample, KiB."""
        return self.rss[-1][1]

    @property
    def rss_allowed(self) -> int:
        """The most RSS may be at the end and still count as flat: after warm-up plus the larger
        of 16 MiB and 10%, KiB."""
        start = self.rss_after_warmup
        return start + max(16 * 1024, start // 10)

    def percentile(self, fraction: float) -> float:
        """Latency percentile, seconds."""
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100)[round(fraction * 100) - 1]


def _submit_body() -> dict[str, object]:
    return {
        "job": {
            "name": JOB_NAME,
            "account": "physics",
            "hold": True,
            "script": "#!/bin/sh\nsleep 60\n",
            "current_working_directory": "/",
            "environment": ["PATH=/usr/bin:/bin"],
            "standard_output": "/dev/null",
            "time_limit": {"set": True, "number": 10},
        }
    }


async def _load(
    gw: GatewayProcess,
    version: str,
    tokens: dict[str, str],
    result: SoakResult,
    *,
    seed: int,
) -> None:
    draw = random.Random(seed)  # noqa: S311 (a workload mix, not a secret)
    kinds = list(MIX)
    weights = list(MIX.values())
    total = int(result.rate * result.seconds)
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()

    def auth(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[user]}"}

    async with ClientSession(
        connector=TCPConnector(limit=MAX_IN_FLIGHT), timeout=ClientTimeout(total=60)
    ) as session:

        async def one(kind: str, user: str) -> None:
            method, path, body = "GET", f"/slurm/{version}/jobs/", None
            if kind.startswith("GET job/") and result.submitted:
                path = f"/slurm/{version}/job/{draw.choice(result.submitted[-15:])}"
            elif kind.startswith("GET nodes"):
                path, user = f"/slurm/{version}/nodes/", "dora"
            elif kind.startswith("GET partitions"):
                path, user = f"/slurm/{version}/partitions/", "dora"
            elif kind.startswith("POST"):
                method, path, body = "POST", f"/slurm/{version}/job/submit", _submit_body()
                user = "alice"
            clock = time.monotonic()
            try:
                async with session.request(
                    method, gw.url + path, json=body, headers=auth(user)
                ) as r:
                    data = await r.read()
                    status, cache = r.status, r.headers.get("X-Cache", "")
            except (ClientError, TimeoutError) as error:
                result.errors.append(f"{method} {path}: {type(error).__name__}: {error}")
                return
            finally:
                slots.release()
            result.latencies.append(time.monotonic() - clock)
            result.statuses[status] += 1
            result.cache[cache or "-"] += 1
            if status != 200:
                result.errors.append(f"{method} {path}: {status} {data[:200]!r}")
            elif method == "POST":
                result.submitted.append(int(json.loads(data)["job_id"]))

        for index in range(total):
            delay = started + index / result.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() - started > result.seconds + 60:
                break  # bounded in time too, whatever the rate achieved
            await slots.acquire()
            kind = draw.choices(kinds, weights)[0]
            task = asyncio.create_task(one(kind, draw.choice(USERS)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            result.sent += 1
        if tasks:
            await asyncio.wait(tasks, timeout=120)


async def _sample_rss(gw: GatewayProcess, result: SoakResult, stop: asyncio.Event) -> None:
    started = time.monotonic()
    while True:
        result.rss.append((time.monotonic() - started, gw.rss_kib()))
        try:
            async with asyncio.timeout(5):
                await stop.wait()
        except TimeoutError:
            continue
        result.rss.append((time.monotonic() - started, gw.rss_kib()))
        return


async def _upstream_calls(gw: GatewayProcess, token: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    async with ClientSession() as session, session.get(gw.url + "/metrics", headers=headers) as r:
        text = await r.text()
    prefix = 'slurmgate_upstream_request_duration_seconds_count{purpose="forward"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def run_soak(
    suite: LabSuite,
    version: str,
    workdir: Path,
    *,
    seconds: float,
    rate: float,
    warmup: float,
    seed: int = 7,
    log: Callable[[str], None] = print,
) -> SoakResult:
    """Run the soak (see the module docstring) and return what it measured; the held jobs it
    submitted are cancelled before it returns."""
    workdir.mkdir(parents=True, exist_ok=True)
    tokens_file = workdir / "tokens.toml"
    scopes = ("slurm:read", "slurm:jobs:manage")
    tokens = {user: create_token(tokens_file, user, scopes=scopes) for user in (*USERS, "dora")}
    ops = create_token(tokens_file, "ops", scopes=("slurmgate:metrics",))
    result = SoakResult(seconds=seconds, rate=rate, warmup=warmup)
    restd = PrivateRestd(suite.root, workdir / "slurmrestd.log")
    restd.start()
    try:
        gw = GatewayProcess(
            workdir,
            {
                "upstream": {"url": restd.url, "timeout": 30.0},
                "slurm_user_token": {"jwt_key": str(suite.jwt_key)},
                "auth": {"tokens_file": str(tokens_file)},
                "cache": {"backend": "memory"},
            },
        )
        try:
            log(f"soak: {seconds:.0f} s at {rate:g} req/s through {gw.url} (pid {gw.pid})")

            async def main() -> None:
                stop = asyncio.Event()
                sampler = asyncio.create_task(_sample_rss(gw, result, stop))
                try:
                    await _load(gw, version, tokens, result, seed=seed)
                finally:
                    stop.set()
                    await sampler
                result.upstream_calls = await _upstream_calls(gw, ops)

            asyncio.run(main())
            result.alive = gw.alive()
            result.crashes = gw.crashes()
        finally:
            gw.stop()
    finally:
        restd.stop()
        if result.submitted:
            suite.run("scancel", *(str(job) for job in result.submitted))
    return result
