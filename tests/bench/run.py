"""One benchmark run: the plan, the steps per job count, and the results it collects."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests.bench.fill import (
    JOB_NAME,
    MIXED_JOB_NAME,
    cancel,
    cancel_named,
    submit_held,
    wait_purged,
)
from tests.bench.gateways import user_tokens
from tests.bench.measure import Row, UpstreamLog
from tests.bench.procs import REPO, cpu_seconds
from tests.bench.scenarios import (
    JOBS,
    NODES,
    Profile,
    Stampede,
    mixed,
    profile,
    stampede,
    throughput,
    warm,
)
from tests.bench.targets import Env, Target, direct, start_bare, start_gateway, start_nginx
from tests.lab.env import LabSuite, load_lab
from tests.lab.private_restd import PrivateRestd
from tests.layout import package_dirs
from tests.redis_server import RedisServer

__all__ = ["Plan", "Results", "run"]

#: Freshness of the ``short`` policy (jobs, nodes) for the cache-hit runs: longer than any run,
#: so that every measured request after the warm-up is a hit. Other scenarios use the defaults.
HIT_FRESHNESS = {"min": 600.0, "max": 600.0}


@dataclass(frozen=True)
class Plan:
    """What a run measures and for how long."""

    job_counts: tuple[int, ...] = (100, 1_000, 10_000)
    #: the job count at which everything else (nodes, stampede, mixed, replicas) is measured
    main_jobs: int = 1_000
    concurrencies: tuple[int, ...] = (1, 16, 64)
    #: the concurrency of the headline table and the target verdicts
    headline: int = 16
    duration: float = 5.0
    #: runs where slurmrestd answers every request of the jobs list (seconds per request)
    slow_duration: float = 15.0
    stampede: int = 500
    mixed_connections: int = 64
    mixed_duration: float = 20.0
    profile_seconds: float = 8.0


@dataclass
class Results:
    """Everything a run measured, as the report reads it (and the JSON beside it holds)."""

    plan: Plan
    started: str
    rows: list[Row] = field(default_factory=list)
    stampedes: list[Stampede] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    #: job count -> (jobs slurmrestd listed, bytes of the jobs list)
    job_lists: dict[int, tuple[int, int]] = field(default_factory=dict)
    nodes_bytes: int = 0
    conditions: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        """The results as JSON."""
        data = asdict(self)
        for row, raw in zip(self.rows, data["rows"], strict=True):
            raw["upstream_per_1k"] = row.upstream_per_1k
            raw["cpu_per_1k"] = row.cpu_per_1k
        return json.dumps(data, indent=1, sort_keys=True)


def _fetch(url: str, jwt: str) -> bytes:
    request = urllib.request.Request(url, headers={"X-SLURM-USER-TOKEN": jwt})  # noqa: S310
    with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 (loopback)
        body: bytes = response.read()
        return body


def _busy_processes(mine: set[int]) -> list[str]:
    """Other processes that used CPU over one second: what else was running."""
    before = {p.name: cpu_seconds(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    time.sleep(1.0)
    busy = []
    for pid, start in before.items():
        used = cpu_seconds(int(pid)) - start
        if used >= 0.05 and int(pid) not in mine:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            busy.append(f"{used * 100:.0f}% {cmd[:120].strip()}")
    return sorted(busy, reverse=True)


def _code_state() -> dict[str, Any]:
    """The commit measured, and files of the server that differ from it (a shared checkout)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()

    # The folders the gateway is installed from (pyproject's package-dir: the one list of them).
    folders = [folder.relative_to(REPO).as_posix() for folder in package_dirs().values()]
    dirty = git("status", "--short", "--", *folders).splitlines()
    return {"head": git("rev-parse", "--short", "HEAD"), "dirty": dirty}


def _warnings(workdir: Path, limit: int = 30) -> list[str]:
    """Warnings and errors the servers logged (slurmgate, nginx, redis), without timestamps."""
    found: dict[str, tuple[str, int]] = {}
    for log in sorted(workdir.glob("*/*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if not any(m in line for m in (" WARNING ", " ERROR ", "[error]", "[warn]")):
                continue
            if "buffered to a temporary file" in line:
                continue  # nginx's way of receiving a large answer, as configured
            text = f"{log.parent.name}: {line.split(' ', 2)[-1][:200]}"
            key = re.sub(r"[0-9]+", "N", text)
            first, count = found.get(key, (text, 0))
            found[key] = (first, count + 1)
    return [f"{n}x {text}" for text, n in list(found.values())[:limit]]


def _conditions(label: str, results: Results) -> None:
    load = Path("/proc/loadavg").read_text().split()[:3]
    results.conditions[label] = {
        "loadavg": " ".join(load),
        "busy": _busy_processes({os.getpid()}),
    }


def _step(env: Env, plan: Plan, jobs: int, own: dict[str, list[int]], results: Results) -> None:
    """Everything measured at ``jobs`` held jobs."""
    main = jobs == plan.main_jobs
    bodies = {path: _fetch(env.restd.url + path, env.slurm_jwt) for path in (NODES, JOBS)}
    listed = len(json.loads(bodies[JOBS])["jobs"])
    results.job_lists[jobs] = (listed, len(bodies[JOBS]))
    results.nodes_bytes = len(bodies[NODES])
    print(
        f"step: {jobs} held jobs ({listed} listed, jobs list {len(bodies[JOBS])} bytes)", flush=True
    )
    rows = results.rows
    with ExitStack() as stack:
        bare = start_bare(env, stack, bodies)
        nginx1, plain1 = start_nginx(env, stack, workers=1, valid_seconds=600)
        nginx2, _ = start_nginx(env, stack, workers=2, valid_seconds=600)
        memory = start_gateway(env, stack, "memory", short=HIT_FRESHNESS)
        redis = start_gateway(env, stack, "redis", short=HIT_FRESHNESS)
        off = start_gateway(env, stack, "off")
        hit_targets = [bare, nginx1, nginx2, memory, redis]
        for path in (NODES, JOBS) if main else (JOBS,):
            concurrencies = plan.concurrencies if main else (plan.headline,)
            sizes = {target.name: warm(target, path) for target in hit_targets}
            results.conditions.setdefault("warm_sizes", {})[f"{jobs} {path}"] = sizes
            # At 10,000 jobs a jobs list is ~80 MB and even a hit takes seconds.
            long = path == JOBS and jobs >= 10_000
            for connections in concurrencies:
                for target in hit_targets:
                    rows.append(
                        throughput(
                            env, "hit", target, path,
                            connections=connections,
                            duration=plan.slow_duration if long else plan.duration,
                            jobs=jobs,
                        )
                    )  # fmt: skip
            slow = path == JOBS
            miss_concurrencies = plan.concurrencies if not slow else (1, plan.headline)
            for connections in miss_concurrencies if main else (1,):
                for target in (direct(env), plain1, off):
                    rows.append(
                        throughput(
                            env, "miss", target, path,
                            connections=connections,
                            duration=plan.slow_duration if slow else plan.duration,
                            jobs=jobs,
                        )
                    )  # fmt: skip
        if main:
            for path in (NODES, JOBS):
                results.profiles.append(
                    profile(
                        env, memory, path,
                        connections=plan.headline, seconds=plan.profile_seconds,
                    )
                )  # fmt: skip
            results.profiles.append(
                profile(env, off, NODES, connections=plan.headline, seconds=plan.profile_seconds)
            )
    if main:
        _replicas(env, plan, jobs, results)
        _stampedes(env, plan, jobs, results)
        _mixed(env, plan, jobs, own, results)


def _replicas(env: Env, plan: Plan, jobs: int, results: Results) -> None:
    """Three slurmgate replicas sharing Redis, each loaded by its own wrk."""
    with ExitStack() as stack:
        three = start_gateway(env, stack, "redis", replicas=3, short=HIT_FRESHNESS)
        for path in (NODES, JOBS):
            warm(three, path)
            for connections in plan.concurrencies[1:]:
                results.rows.append(
                    throughput(
                        env, "replicas", three, path,
                        connections=connections, duration=plan.duration, jobs=jobs,
                    )
                )  # fmt: skip


def _stampedes(env: Env, plan: Plan, jobs: int, results: Results) -> None:
    """Cold keys hit by a burst: each target freshly started, default freshness."""
    starts: list[Callable[[ExitStack], Target]] = [
        partial(start_gateway, env, backend="memory"),
        partial(start_gateway, env, backend="redis"),
        partial(start_gateway, env, backend="redis", replicas=3),
        lambda stack: start_nginx(env, stack, workers=1, valid_seconds=10)[0],
    ]
    for start in starts:
        with ExitStack() as stack:
            target = start(stack)
            for path in (NODES, JOBS):
                results.stampedes.append(stampede(env, target, path, plan.stampede, jobs))


def _mixed(env: Env, plan: Plan, jobs: int, own: dict[str, list[int]], results: Results) -> None:
    """The mixed workload with default freshness, one gateway and three sharing Redis."""
    try:
        for backend, replicas in (("memory", 1), ("redis", 3)):
            with ExitStack() as stack:
                target = start_gateway(env, stack, backend, replicas=replicas)
                results.rows.append(
                    mixed(
                        env, target, own,
                        connections=plan.mixed_connections,
                        duration=plan.mixed_duration, jobs=jobs,
                    )
                )  # fmt: skip
    finally:
        cancel_named(env.suite, MIXED_JOB_NAME)


def run(plan: Plan, suite_name: str = "forky") -> Results:
    """The whole benchmark against ``suite_name``; the lab must be up."""
    suite: LabSuite = load_lab().suites[suite_name]
    started = time.monotonic()
    results = Results(plan=plan, started=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    results.conditions["machine"] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "suite": f"{suite.name} (Slurm {suite.slurm_release})",
    }
    results.conditions["code"] = _code_state()
    _conditions("before", results)
    workdir = Path(tempfile.mkdtemp(prefix="slurmgate-bench-"))
    workdir.chmod(0o755)  # nginx's workers run as nobody and need to reach their folders
    print(f"bench: working in {workdir}", flush=True)
    own: dict[str, list[int]] = {}
    with ExitStack() as stack:
        restd = PrivateRestd(suite.root, workdir / "slurmrestd.log")
        restd.start()
        stack.callback(restd.stop)
        (workdir / "redis").mkdir()
        redis = RedisServer(workdir / "redis")
        redis.start()
        stack.callback(redis.stop)
        tokens_file = workdir / "tokens.toml"
        env = Env(
            suite=suite,
            workdir=workdir,
            restd=restd,
            redis=redis,
            tokens_file=tokens_file,
            tokens=user_tokens(tokens_file, ["alice", "bob", "carol", "dora"]),
            slurm_jwt=suite.token("alice", lifespan=4 * 3600),
            upstream=UpstreamLog(restd.log),
        )
        cancel_named(suite, JOB_NAME, MIXED_JOB_NAME)
        waited, left = wait_purged(suite)
        results.conditions["purge"] = {"waited_seconds": round(waited), "still_listed": left}
        stack.callback(lambda: cancel(suite, [job for ids in own.values() for job in ids]))
        for jobs in plan.job_counts:
            have = sum(len(ids) for ids in own.values())
            t0 = time.monotonic()
            for user, ids in submit_held(suite, jobs - have).items():
                own.setdefault(user, []).extend(ids)
            print(f"fill: {jobs - have} held jobs in {time.monotonic() - t0:.1f} s", flush=True)
            _step(env, plan, jobs, own, results)
        _conditions("after", results)
    results.seconds = time.monotonic() - started
    results.conditions["server_warnings"] = _warnings(workdir)
    # Kept only when the run failed (an exception skips this): logs, configurations, profiles.
    shutil.rmtree(workdir, ignore_errors=True)
    return results
