"""GET /slurmgate/v1/usage against Slurm itself, in both suites (24.11: API v0.0.42, the newest
it serves; 26.05: v0.0.45).

- Jobs that really run (sleeps, as alice, bob and carol in physics and chem), one still running;
  the window starts and ends inside jobs' runs. The endpoint's numbers equal sums derived from
  ``sacct -X -D`` for the same window (every user, every TRES, job counts), for every grouping;
  an account-limited token gets exactly the physics part and a 403 for chem.
- ``sreport cluster AccountUtilizationByUser`` works from slurmdbd's hourly rollup: it rounds
  its window to whole hours and knows only hours the rollup has done (the rollup runs at the top
  of each hour, and a late job record sends it back to redo hours). So it is compared over the
  24 whole hours before the last hour rolled up (``hourly_rollup`` of slurmdbd's
  ``<cluster>_last_ran_table``, read-only, since no Slurm command shows it): TRES-seconds
  (``-t seconds``) exactly, and ``-t minutes`` as sreport prints them (seconds / 60, ``%.0f``).
  That window holds the jobs earlier runs of these tests (and of others) left; on a lab less than
  an hour old it holds none, and the comparison is only of zeros.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
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
from tests.server.usage.slurm_tools import (
    TRES,
    SacctJob,
    Sums,
    sacct_jobs,
    sreport_rows,
    sums,
    utc,
)

pytestmark = pytest.mark.lab

SUITES = ["trixie", "forky"]
USAGE = "/slurmgate/v1/usage"
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


@asynccontextmanager
async def usage_gateway(
    suite: LabSuite, tmp_path: Path, url: str | None = None
) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    """A gateway in front of the suite's slurmrestd (or ``url``); tokens: dora (slurmdb:read, no
    account patterns), physics (carol, slurmdb:read, ``^physics$``) and carol (slurmdb:read)."""
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "dora": create_token(tokens_file, "dora", scopes=("slurmdb:read",)),
        "physics": create_token(
            tokens_file, "carol", scopes=("slurmdb:read",), accounts=("^physics$",)
        ),
        "carol": create_token(tokens_file, "carol", scopes=("slurmdb:read",)),
    }
    upstream: dict[str, object] = {"url": url} if url else {}
    settings = gateway_settings(suite, "http", tokens_file, upstream=upstream)
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, tokens
    finally:
        await client.close()


async def get_usage(
    client: TestClient[Any, Any], token: str, query: str, status: int = 200, cache: str = "MISS"
) -> dict[str, Any]:
    """The answer, computed afresh (``Cache-Control: no-cache``) unless ``cache`` is HIT."""
    fresh = {} if cache == "HIT" else {"Cache-Control": "no-cache"}
    async with client.get(
        f"{USAGE}?{query}", headers={"Authorization": f"Bearer {token}", **fresh}
    ) as response:
        body = await response.read()
        assert response.status == status, body[:1000]
        if status == 200:
            assert response.headers["X-Cache"] == cache
        data: dict[str, Any] = json.loads(body)
        return data


def submit(
    suite: LabSuite, user: str, account: str, cpus: int, seconds: int, *, hold: bool = False
) -> str:
    out = suite.run(
        "sbatch",
        *(["--hold"] if hold else []),
        "--parsable",
        "--chdir=/tmp",
        "--output=/dev/null",
        "--job-name=slurmgate-usage",
        f"--account={account}",
        f"--cpus-per-task={cpus}",
        "--mem=100M",
        f"--wrap=sleep {seconds}",
        user=user,
    )
    return out.stdout.strip().split(";")[0]


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


def groups(data: dict[str, Any]) -> dict[tuple[str, ...], tuple[int, dict[str, int]]]:
    keys = data["group_by"]
    return {tuple(g[k] for k in keys): (g["jobs"], g["tres_seconds"]) for g in data["groups"]}


def expected(
    found: dict[tuple[str, ...], Sums],
) -> dict[tuple[str, ...], tuple[int, dict[str, int]]]:
    return {key: (s.jobs, s.seconds) for key, s in found.items()}


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


def last_rolled_hour(suite: LabSuite) -> int:
    """The start of the oldest hour slurmdbd's rollup has still to do (or redo)."""
    out = suite.run(
        "mariadb",
        "-N",
        "-B",
        "slurm_acct_db",
        "-e",
        f"SELECT hourly_rollup FROM {suite.cluster}_last_ran_table",  # noqa: S608 (lab's name)
    )
    return int(out.stdout.split()[0]) // 3600 * 3600


@pytest.mark.parametrize("suite_name", SUITES)
async def test_usage_equals_sreport_over_rolled_up_hours(
    lab: Lab, tmp_path: Path, suite_name: str
) -> None:
    suite = lab.suites[suite_name]
    end = await asyncio.to_thread(last_rolled_hour, suite)
    start = end - 24 * 3600
    seconds = await asyncio.to_thread(sreport_rows, suite, start, end)
    minutes = await asyncio.to_thread(sreport_rows, suite, start, end, "minutes")
    assert ("root", "") in seconds, f"sreport {utc(start)}..{utc(end)} printed no root row"
    async with usage_gateway(suite, tmp_path) as (client, tokens):
        by_user = await get_usage(
            client, tokens["dora"], f"start={start}&end={end}&group_by=account,user"
        )
        by_account = await get_usage(
            client, tokens["dora"], f"start={start}&end={end}&group_by=account"
        )
    now = int(time.time())
    records = await asyncio.to_thread(sacct_jobs, suite, start, end)
    # sacct first: the same window, every job record
    assert groups(by_user) == expected(sums(records, start, end, now, ("account", "user")))
    ours: dict[tuple[str, str], dict[str, Any]] = {
        (g["account"], g["user"]): g for g in by_user["groups"]
    }
    ours |= {(g["account"], ""): g for g in by_account["groups"]}
    ours[("root", "")] = by_account["total"]
    # sreport lists every association, used or not; the endpoint only groups that ran jobs
    for key in set(seconds) | set(ours):
        for tres in TRES:
            used = ours[key]["tres_seconds"][tres] if key in ours else 0
            # sreport leaves out TRES the database does not track (the lab has no gres/gpu)
            assert seconds.get(key, {}).get(tres, 0) == used, (key, tres)
            printed = minutes.get(key, {}).get(tres, 0)
            assert printed == int(f"{used / 60:.0f}"), (key, tres)


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
