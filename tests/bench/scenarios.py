"""The benchmark's scenarios, each a function returning what it measured.

- :func:`throughput`: wrk against one target (all its replicas at once), one path, one
  concurrency; a :class:`~tests.bench.measure.Row`.
- :func:`stampede`: a burst of identical requests on a cold key; upstream calls per key.
- :func:`mixed`: users polling their jobs, a dashboard reading nodes and partitions, a few
  submissions (:data:`MIX`); upstream calls against client requests, errors.
- :func:`profile`: py-spy on a gateway process while wrk loads it; the hottest frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.bench.fill import MIXED_JOB_NAME
from tests.bench.load import (
    PlanLine,
    WrkResult,
    burst,
    combine,
    mixed_script,
    run_wrk,
    run_wrk_parallel,
    stats_script,
    write_plan,
)
from tests.bench.measure import Row, measure
from tests.bench.targets import VERSION, Env, Target

__all__ = [
    "JOBS",
    "MIX",
    "NODES",
    "Profile",
    "Stampede",
    "mixed",
    "profile",
    "stampede",
    "throughput",
    "warm",
]

NODES = f"/slurm/{VERSION}/nodes/"
JOBS = f"/slurm/{VERSION}/jobs/"
PARTITIONS = f"/slurm/{VERSION}/partitions/"
SUBMIT = f"/slurm/{VERSION}/job/submit"
#: The mixed workload, per 1,000 requests: what each kind stands for.
MIX = {
    "GET jobs (users polling the queue, squeue-like)": 500,
    "GET job/{id} (users polling one of their 5 newest jobs)": 200,
    "GET nodes (dashboard)": 250,
    "GET partitions (dashboard)": 48,
    "POST job/submit (a held job)": 2,
}


def _run(target: Target, path: str, connections: int, duration: float, env: Env) -> WrkResult:
    script = stats_script(env.workdir)
    timeout = max(60.0, duration * 4)
    if len(target.urls) == 1:
        return run_wrk(
            target.url + path,
            script,
            connections=connections,
            duration=duration,
            headers=target.headers,
            timeout=timeout,
        )
    return combine(
        run_wrk_parallel(
            [url + path for url in target.urls],
            script,
            connections=connections,
            duration=duration,
            headers=target.headers,
            timeout=timeout,
        )
    )


def warm(target: Target, path: str) -> int:
    """One request of ``path`` through the first replica, so that the next ones can be hits;
    the size of the answer (the report checks that every target serves the same list)."""
    answer = burst(target.urls[:1], path, target.headers, 1)
    if set(answer.statuses) != {200}:
        raise RuntimeError(f"{target.name}: GET {path} answered {dict(answer.statuses)}")
    return max(answer.body_sizes)


def throughput(
    env: Env,
    scenario: str,
    target: Target,
    path: str,
    *,
    connections: int,
    duration: float,
    jobs: int,
) -> Row:
    """wrk on ``path`` of ``target`` with ``connections`` connections for ``duration`` s."""
    row = measure(
        scenario=scenario,
        target=target.name,
        path=path,
        connections=connections,
        jobs=jobs,
        pids=target.pids,
        upstream=env.upstream,
        run=lambda: _run(target, path, connections, duration, env),
    )
    print(
        f"  {scenario:<8} {target.name:<36} {path:<24} c={connections:<3} "
        f"{row.rps:>9.1f} req/s  p50 {row.p50_ms:8.2f} ms  p99 {row.p99_ms:8.2f} ms  "
        f"upstream/1k {row.upstream_per_1k:7.2f}  errors {row.errors}",
        flush=True,
    )
    return row


@dataclass(frozen=True)
class Stampede:
    """A burst of identical requests on a cold key."""

    target: str
    path: str
    jobs: int
    replicas: int
    requests: int
    seconds: float
    upstream_calls: int
    statuses: dict[int, int]
    outcomes: dict[str, int]
    #: distinct body sizes among the answers (1 when everyone got the same answer)
    body_sizes: int


def stampede(env: Env, target: Target, path: str, count: int, jobs: int) -> Stampede:
    """``count`` identical GETs of ``path`` at once over ``target``'s replicas, key cold."""
    env.upstream.mark()
    result = burst(target.urls, path, target.headers, count)
    calls = env.upstream.since_mark()[f"GET {path}"]
    found = Stampede(
        target=target.name,
        path=path,
        jobs=jobs,
        replicas=len(target.urls),
        requests=count,
        seconds=result.seconds,
        upstream_calls=calls,
        statuses=dict(result.statuses),
        outcomes=dict(result.outcomes),
        body_sizes=len(result.body_sizes),
    )
    print(
        f"  stampede {target.name:<36} {path:<24} {count} requests: {calls} upstream calls, "
        f"statuses {found.statuses}, X-Cache {found.outcomes}, {result.seconds:.2f} s",
        flush=True,
    )
    return found


def _submit_body() -> str:
    job = {
        "name": MIXED_JOB_NAME,
        "account": "physics",
        "hold": True,
        "script": "#!/bin/sh\nsleep 60\n",
        "current_working_directory": "/",
        "environment": ["PATH=/usr/bin:/bin"],
        "standard_output": "/dev/null",
        "time_limit": {"set": True, "number": 10},
    }
    return json.dumps({"job": job}, separators=(",", ":"))


def mix_plan(env: Env, own_jobs: dict[str, list[int]]) -> list[PlanLine]:
    """The plan file lines for :data:`MIX`: each user polls with their own token."""
    users = sorted(own_jobs)
    weights = list(MIX.values())
    lines = [
        PlanLine(weights[0] // len(users) or 1, "GET", JOBS, _bearer(env, user)) for user in users
    ]
    newest = {user: sorted(ids)[-5:] for user, ids in own_jobs.items()}
    per_job = max(1, weights[1] // sum(len(ids) for ids in newest.values()))
    lines += [
        PlanLine(per_job, "GET", f"/slurm/{VERSION}/job/{job}", _bearer(env, user))
        for user in users
        for job in newest[user]
    ]
    lines.append(PlanLine(weights[2], "GET", NODES, _bearer(env, "dora")))
    lines.append(PlanLine(weights[3], "GET", PARTITIONS, _bearer(env, "dora")))
    lines.append(PlanLine(weights[4], "POST", SUBMIT, _bearer(env, "alice"), _submit_body()))
    return lines


def _bearer(env: Env, user: str) -> str:
    return env.gateway_headers(user)["Authorization"]


def mixed(
    env: Env,
    target: Target,
    own_jobs: dict[str, list[int]],
    *,
    connections: int,
    duration: float,
    jobs: int,
) -> Row:
    """The mixed workload against ``target`` (all its replicas at once)."""
    plan = write_plan(env.workdir / "mixed.plan", mix_plan(env, own_jobs))
    script = mixed_script(env.workdir)

    def run() -> WrkResult:
        results = run_wrk_parallel(
            [url + "/" for url in target.urls],
            script,
            connections=connections,
            duration=duration,
            script_args=[str(plan), "7"],
            timeout=120,
        )
        return combine(results)

    row = measure(
        scenario="mixed",
        target=target.name,
        path="mixed",
        connections=connections,
        jobs=jobs,
        pids=target.pids,
        upstream=env.upstream,
        run=run,
    )
    print(
        f"  mixed    {target.name:<36} {row.requests} requests, {row.upstream_calls} upstream "
        f"({row.upstream_per_1k:.1f}/1k), errors {row.errors}, {row.rps:.1f} req/s; "
        f"{row.extra['upstream_by_kind']}",
        flush=True,
    )
    return row


#: Frames under every request (the console script, run_app, the event loop): left out of the
#: total-time list, where they would only push the informative frames down.
_BOILERPLATE = frozenset(
    {
        "<module>",
        "main",
        "_serve",
        "run_app",
        "BaseEventLoop.run_until_complete",
        "BaseEventLoop.run_forever",
        "BaseEventLoop._run_once",
        "Handle._run",
    }
)


@dataclass(frozen=True)
class Profile:
    """The hottest frames of one gateway process under load, from py-spy."""

    target: str
    path: str
    connections: int
    samples: int
    #: (share of samples, frame) where the frame is the innermost one (own time)
    own: list[tuple[float, str]]
    #: (share of samples, frame) where the frame is anywhere on the stack (total time)
    total: list[tuple[float, str]]

    def as_dict(self) -> dict[str, object]:
        """For the results' JSON."""
        return asdict(self)


def parse_collapsed(
    text: str, top: int = 15
) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    """py-spy's ``--format raw`` (collapsed stacks) -> samples, top own frames, top total frames."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [frame.strip() for frame in stack.split(";") if frame.strip()]
        if not frames:
            continue
        own[frames[-1]] += n
        for frame in set(frames):
            if frame.split(" (")[0] not in _BOILERPLATE:
                total[frame] += n
    if not samples:
        return 0, [], []

    def share(counts: Counter[str]) -> list[tuple[float, str]]:
        return [(100 * n / samples, frame) for frame, n in counts.most_common(top)]

    return samples, share(own), share(total)


def profile(env: Env, target: Target, path: str, *, connections: int, seconds: float) -> Profile:
    """py-spy on ``target``'s first process while wrk loads ``path`` for ``seconds``."""
    pyspy = Path(sys.executable).parent / "py-spy"
    out = (
        env.workdir
        / f"profile-{target.name.replace(' ', '_')}-{path.strip('/').replace('/', '_')}.txt"
    )
    pid = target.pids()[0]
    spy = subprocess.Popen(
        [
            str(pyspy), "record",
            "--pid", str(pid),
            "--duration", str(round(seconds)),
            "--rate", "250",
            "--format", "raw",
            "--function",
            "--nonblocking",
            "--output", str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        run_wrk(
            target.url + path,
            stats_script(env.workdir),
            connections=connections,
            duration=seconds,
            headers=target.headers,
        )
    finally:
        _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')}")
    samples, own, total = parse_collapsed(out.read_text())
    print(f"  profile  {target.name} {path} c={connections}: {samples} samples", flush=True)
    for pct, frame in own[:5]:
        print(f"    {pct:5.1f}%  {frame}", flush=True)
    return Profile(target.name, path, connections, samples, own, total)
