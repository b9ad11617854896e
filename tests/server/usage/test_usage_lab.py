"""GET /slurmgate/v1/usage against Slurm itself, in both suites (24.11: API v0.0.42, the newest
it serves; 26.05: v0.0.45), compared with ``sacct``; ``sreport`` is test_sreport_lab.py's.

- Jobs that really run (sleeps, as alice, bob and carol in physics and chem), one still running;
  the window starts and ends inside jobs' runs. The endpoint's numbers equal sums derived from
  ``sacct -X -D`` for the same window (every user, every TRES, job counts), for every grouping;
  an account-limited token gets exactly the physics part and a 403 for chem.
- A second identical report is a cache hit, and a token with account patterns gets its own entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.env import Lab, LabSuite
from tests.lab.private_restd import PrivateRestd
from tests.server.gateway import logged_requests
from tests.server.usage.slurm_tools import SacctJob, sacct_jobs, sums
from tests.server.usage.usage_lab import (
    SUITES,
    expected,
    get_usage,
    groups,
    submit,
    usage_gateway,
)

pytestmark = pytest.mark.lab

#: (user, account, CPUs, seconds): finished jobs whose runs the window cuts, and one that runs on
JOBS = (
    ("alice", "physics", 2, 16),
    ("bob", "chem", 1, 10),
    ("carol", "chem", 2, 6),
    ("carol", "physics", 1, 24),
)
LONG = ("carol", "physics", 1, 600)
#: submitted (held) in physics, then moved to chem before it runs: it is chem's, and a token
#: limited to physics must not see it
MOVED = ("carol", "physics", 1, 12)
#: how long the jobs may take to start, run and reach slurmdbd
WAIT_SECONDS = 240


def wait_for(suite: LabSuite, finished: list[str], running: str) -> dict[str, SacctJob]:
    """sacct's records of the jobs once the finished ones have ended and the other runs."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        now = int(time.time())
        found = {j.job_id: j for j in sacct_jobs(suite, now - 3600, now + 60, *finished, running)}
        done = all(
            found.get(i) and found[i].end is not None and found[i].state == "COMPLETED"
            for i in finished
        )
        if done and running in found and found[running].state == "RUNNING":
            return found
        if time.monotonic() > deadline:
            pytest.fail(
                f"{suite.name}: the usage test's jobs did not run within {WAIT_SECONDS} s: {found}"
            )
        time.sleep(2)


@pytest.mark.parametrize("suite_name", SUITES)
async def test_usage_equals_sacct_over_a_window_inside_jobs(
    lab: Lab, tmp_path: Path, suite_name: str
) -> None:
    suite = lab.suites[suite_name]
    ids = [submit(suite, *job) for job in JOBS]
    long_id = submit(suite, *LONG)
    moved = submit(suite, *MOVED, hold=True)
    try:
        suite.run("scontrol", "update", f"JobId={moved}", "Account=chem", user=MOVED[0])
        suite.run("scontrol", "release", moved, user=MOVED[0])
        ids.append(moved)
        mine = await asyncio.to_thread(wait_for, suite, ids, long_id)
        runs = [mine[i] for i in ids]
        assert all(job.start is not None and job.end is not None for job in runs)
        middles = sorted((job.start + job.end) // 2 for job in runs)  # type: ignore[operator]
        start, end = middles[0], middles[-1]
        assert start < end, runs
        # the window starts and ends inside runs, and the long job runs through it
        assert any(j.start < start < j.end for j in runs)  # type: ignore[operator]
        assert any(j.start < end < j.end for j in runs)  # type: ignore[operator]
        window = f"start={start}&end={end}"
        async with usage_gateway(suite, tmp_path) as (client, tokens):
            for grouping in ("account", "user", "account,user"):
                data = await get_usage(client, tokens["dora"], f"{window}&group_by={grouping}")
                now = int(time.time())
                records = await asyncio.to_thread(sacct_jobs, suite, start, end)
                by = tuple(grouping.split(","))
                assert groups(data) == expected(sums(records, start, end, now, by)), grouping
                assert data["cluster"] == suite.cluster
                assert data["meta"]["slurmgate"]["api_version"] == suite.versions[-1]
            # the test's own jobs are in it, each clipped to the window
            mine_only = sums([*runs, mine[long_id]], start, end, now, ("account", "user"))
            for key, own in mine_only.items():
                jobs, seconds = groups(data)[key]
                assert jobs >= own.jobs
                assert all(seconds[t] >= own.seconds[t] > 0 for t in ("cpu", "node", "billing"))
            # limited to physics: exactly sacct's physics part, grouped by user too; the job
            # moved to chem is chem's (sacct says so) and is not in carol's physics total
            assert mine[moved].account == "chem"
            data = await get_usage(client, tokens["physics"], f"{window}&group_by=user")
            physics = [j for j in records if j.account == "physics"]
            assert moved not in {j.job_id for j in physics}
            assert groups(data) == expected(sums(physics, start, end, now, ("user",)))
            await get_usage(client, tokens["physics"], f"{window}&account=chem", status=403)
            # up to now: the running job counts until the answer was computed
            before = int(time.time())
            data = await get_usage(
                client, tokens["dora"], f"start={start}&user=carol&account=physics&group_by=account"
            )
            after = int(time.time())
            assert data["running_jobs"] >= 1
            assert before <= data["computed_at"] <= after
            records = await asyncio.to_thread(sacct_jobs, suite, start, after)
            carol = [j for j in records if j.user == "carol" and j.account == "physics"]
            assert groups(data) == expected(
                sums(carol, start, data["computed_at"], data["computed_at"], ("account",))
            )
    finally:
        for job_id in (long_id, moved):
            # scancel refuses a job that has ended already; a held one must not stay behind
            with contextlib.suppress(subprocess.CalledProcessError):
                suite.run("scancel", job_id, user=LONG[0])


@pytest.mark.parametrize("suite_name", SUITES)
async def test_a_second_report_is_a_hit_and_patterns_get_their_own(
    lab: Lab, tmp_path: Path, suite_name: str
) -> None:
    """Counted in the log of a slurmrestd of the test's own, which nothing else uses."""
    suite = lab.suites[suite_name]
    jobs_path = f"/slurmdb/{suite.versions[-1]}/jobs"
    end = int(time.time()) // 3600 * 3600
    window = f"start={end - 2 * 86400}&end={end}"  # two days: two upstream calls
    restd = PrivateRestd(suite.root, tmp_path / "slurmrestd.log")
    await asyncio.to_thread(restd.start)
    try:
        async with usage_gateway(suite, tmp_path, restd.url) as (client, tokens):

            def calls() -> int:
                return logged_requests(restd.log, "GET", jobs_path)

            assert calls() == 0
            first = await get_usage(client, tokens["carol"], window)
            assert calls() == 2
            again = await get_usage(client, tokens["carol"], window, cache="HIT")
            assert again == first
            assert calls() == 2
            # carol again, but limited to physics: never carol's unlimited entry
            limited = await get_usage(client, tokens["physics"], window)
            assert calls() == 4
            assert {g["account"] for g in limited["groups"]} <= {"physics"}
            physics = [g for g in first["groups"] if g["account"] == "physics"]
            assert limited["groups"] == physics
            await get_usage(client, tokens["physics"], window, cache="HIT")
            assert calls() == 4
    finally:
        await asyncio.to_thread(restd.stop)
