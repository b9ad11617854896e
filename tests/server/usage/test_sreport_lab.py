"""GET /slurmgate/v1/usage equals ``sreport cluster AccountUtilizationByUser`` over jobs that
really ran, in both suites (24.11 and 26.05), on a lab started minutes ago as on an old one.

sreport does not read job records: it sums slurmdbd's hourly rollup, over whole hours, and
slurmdbd rolls up an hour only once it has ended. A job that ran a minute ago is in no report
yet. So the test changes the times of its own jobs' records and has slurmdbd roll them up now
(tests/server/usage/rollup.py says how, and which Slurm sources say why):

1. It makes two throwaway accounts (``sgt<hex>``, deleted at the end) so that no other jobs are
   in their rows, with alice and carol in one and bob and carol in the other, and runs six short
   sleeps in them: STARTING, to be moved to a window's start, and ENDING, to its end.
2. Once slurmdbd has their final records, it picks an instant of the real runs at which a long
   job of each group runs and a short one has ended, and moves the records (jobs and steps:
   submit, eligible, start and end, nothing else) back in time so that this instant falls on
   the top of the hour three hours before the current one for STARTING, and of the next hour for
   ENDING. That hour is a window whose start and end both cut runs, with a run inside it and one
   just before it.
3. It dates the cluster's first registration back to the first hour compared if it is later
   (sreport leaves out hours in which the cluster was not registered), and has slurmdbd roll up
   the three hours around the window with ``sacctmgr rollup START END``.

Over the window and over those three hours, every (account, user) row and every account row of
sreport (``root`` against ``total``) equals the endpoint's ``tres_seconds`` with ``-t seconds``,
``-t minutes`` prints the endpoint's seconds / 60 as sreport rounds them (``%.0f``), the endpoint
equals sacct's records, and the test's own four rows are not zero. sreport computes from
slurmdbd's own rollup of the records the gateway reads through slurmrestd.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.lab.env import Lab, LabSuite, throwaway_account
from tests.server.usage.rollup import cut, date_registration_back, move_jobs, roll_up
from tests.server.usage.slurm_tools import (
    TRES,
    SacctJob,
    finished,
    sacct_jobs,
    sreport_rows,
    sums,
    utc,
)
from tests.server.usage.usage_lab import (
    SUITES,
    expected,
    get_usage,
    groups,
    submit,
    usage_gateway,
)

pytestmark = pytest.mark.lab

HOUR = 3600
#: (user, the first or the second account, CPUs, seconds): records moved to the window's start
STARTING = (("alice", 0, 2, 6), ("carol", 0, 1, 20), ("bob", 1, 1, 20))
#: and to its end; eight CPUs in all, the lab's two nodes
ENDING = (("carol", 1, 2, 6), ("alice", 0, 1, 20), ("bob", 1, 1, 20))
#: how long the jobs may take to start, run and reach slurmdbd (they run 20 s)
WAIT_SECONDS = 90
#: Jobs start no later than this before the top of an hour: slurmdbd's rollup of an hour writes
#: the usage of the associations with jobs in it and never deletes any, so the rollup of the hour
#: the jobs ran in must not see their records before they are moved.
HOUR_GUARD = WAIT_SECONDS + 30
#: how long sreport may take to show the rollup of the test's jobs
ROLLUP_SECONDS = 30


def throwaway_accounts(suite: LabSuite) -> tuple[str, str]:
    """Two new accounts: alice and carol in the first, bob and carol in the second."""
    first = throwaway_account()
    second = throwaway_account()
    while second == first:
        second = throwaway_account()
    names = (first, second)
    cluster = f"cluster={suite.cluster}"
    about = ("description=slurmgate sreport test", "organization=slurmgate")
    suite.run("sacctmgr", "-i", "add", "account", ",".join(names), cluster, *about)
    suite.run("sacctmgr", "-i", "add", "user", "alice,carol", f"account={names[0]}", cluster)
    suite.run("sacctmgr", "-i", "add", "user", "bob,carol", f"account={names[1]}", cluster)
    return names


def submit_jobs(suite: LabSuite, accounts: tuple[str, str], ids: list[str]) -> None:
    """Submit STARTING then ENDING, appending their ids to ``ids`` (for the caller's cleanup)."""
    deadline = time.monotonic() + 15
    for user, account, cpus, seconds in (*STARTING, *ENDING):
        while True:
            try:
                ids.append(submit(suite, user, accounts[account], cpus, seconds))
                break
            except subprocess.CalledProcessError as error:
                # slurmdbd tells slurmctld of the new associations a moment after sacctmgr ends
                if "Invalid account" not in error.stderr or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def clear_of_the_hour() -> None:
    """Sleep past the top of the hour when less than HOUR_GUARD seconds remain before it."""
    now = time.time()
    top = (int(now) // HOUR + 1) * HOUR
    if top - now < HOUR_GUARD:
        time.sleep(top - now + 1)


def wait_finished(suite: LabSuite, ids: list[str]) -> dict[str, SacctJob]:
    """sacct's records of the jobs once they and their steps have completed."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not finished(suite, ids):
        if time.monotonic() > deadline:
            now = int(time.time())
            found = sacct_jobs(suite, now - HOUR, now + 60, *ids)
            pytest.fail(
                f"{suite.name}: the sreport test's jobs did not finish in {WAIT_SECONDS} s: {found}"
            )
        time.sleep(1)
    now = int(time.time())
    return {job.job_id: job for job in sacct_jobs(suite, now - HOUR, now + 60, *ids)}


def move_and_roll_up(suite: LabSuite, accounts: tuple[str, str], ids: list[str]) -> int:
    """Move the finished jobs' records and roll them up; the start of the window they cut."""
    found = wait_finished(suite, ids)
    runs = [(found[i].start or 0, found[i].end or 0) for i in ids]
    at = cut(runs[: len(STARTING)], runs[len(STARTING) :])
    if at is None:
        pytest.fail(
            f"{suite.name}: no instant of the runs cuts both groups as the test needs "
            f"(a long job running, a short one ended): {found}"
        )
    now = int(time.time())
    hour = now // HOUR * HOUR
    if min(start for start, _ in runs) < hour or hour + HOUR - now < 20:
        # Moved now, they could leave usage in that hour's rollup that no record backs.
        pytest.fail(
            f"{suite.name}: the jobs took too long: at {utc(now)} they ran in an hour that is or "
            f"is about to be rolled up; their records were left as they are: {found}"
        )
    start = hour - 3 * HOUR
    move_jobs(suite, ids[: len(STARTING)], accounts, at - start)
    move_jobs(suite, ids[len(STARTING) :], accounts, at - (start + HOUR))
    date_registration_back(suite, start - HOUR)
    roll_up(suite, start - HOUR, start + 2 * HOUR)
    return start


def rolled_up(
    suite: LabSuite, start: int, end: int, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """sreport's rows in seconds, once they hold ``keys`` (a bounded wait)."""
    deadline = time.monotonic() + ROLLUP_SECONDS
    while True:
        rows = sreport_rows(suite, start, end)
        if keys <= rows.keys():
            return rows
        if time.monotonic() > deadline:
            pytest.fail(
                f"{suite.name}: slurmdbd's rollup of {utc(start)}..{utc(end)} did not cover "
                f"the test's jobs ({sorted(keys)}) in {ROLLUP_SECONDS} s: {rows}"
            )
        time.sleep(1)


def drop(suite: LabSuite, accounts: tuple[str, str], ids: list[str]) -> None:
    """Cancel the jobs that still run and delete the accounts (the lab fixture deletes what an
    interrupted run leaves)."""
    for job_id in ids:
        # scancel refuses a job that has ended already
        with contextlib.suppress(subprocess.CalledProcessError):
            suite.run("scancel", job_id)
    deadline = time.monotonic() + 15
    while True:
        try:
            suite.run("sacctmgr", "-i", "delete", "account", ",".join(accounts))
            return
        except subprocess.CalledProcessError:
            # sacctmgr refuses while a cancelled job is still ending
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.parametrize("suite_name", SUITES)
async def test_usage_equals_sreport_over_jobs_rolled_up_by_slurmdbd(
    lab: Lab, tmp_path: Path, suite_name: str
) -> None:
    suite = lab.suites[suite_name]
    await asyncio.to_thread(clear_of_the_hour)
    accounts = await asyncio.to_thread(throwaway_accounts, suite)
    ids: list[str] = []
    try:
        await asyncio.to_thread(submit_jobs, suite, accounts, ids)
        start = await asyncio.to_thread(move_and_roll_up, suite, accounts, ids)
        end = start + HOUR
        moved = await asyncio.to_thread(sacct_jobs, suite, start - HOUR, end + HOUR, *ids)
        runs = [(j.start or 0, j.end or 0) for j in moved]
        assert sorted(j.job_id for j in moved) == sorted(ids)
        # the window's edges cut runs, runs are inside it and one is before it
        assert any(first < start < last for first, last in runs), moved
        assert any(first < end < last for first, last in runs), moved
        assert any(start <= first and last <= end for first, last in runs), moved
        assert any(last < start for _, last in runs), moved
        async with usage_gateway(suite, tmp_path) as (client, tokens):
            for window in ((start, end), (start - HOUR, end + HOUR)):
                await compare(suite, client, tokens["dora"], accounts, window)
    finally:
        await asyncio.to_thread(drop, suite, accounts, ids)


async def compare(
    suite: LabSuite,
    client: TestClient[Any, Any],
    token: str,
    accounts: tuple[str, str],
    window: tuple[int, int],
) -> None:
    """The endpoint's answers for ``window`` against sacct's records and sreport's rows."""
    start, end = window
    own = {(accounts[0], "alice"), (accounts[0], "carol")}
    own |= {(accounts[1], "bob"), (accounts[1], "carol")}
    seconds = await asyncio.to_thread(rolled_up, suite, start, end, own)
    minutes = await asyncio.to_thread(sreport_rows, suite, start, end, "minutes")
    query = f"start={start}&end={end}"
    by_user = await get_usage(client, token, f"{query}&group_by=account,user")
    by_account = await get_usage(client, token, f"{query}&group_by=account")
    now = int(time.time())
    records = await asyncio.to_thread(sacct_jobs, suite, start, end)
    assert groups(by_user) == expected(sums(records, start, end, now, ("account", "user")))
    mine = sums([j for j in records if j.account in accounts], start, end, now, ("account", "user"))
    assert mine.keys() == own, mine
    assert all(s.seconds["cpu"] > 0 and s.seconds["node"] > 0 for s in mine.values()), mine
    ours: dict[tuple[str, str], dict[str, Any]] = {
        (g["account"], g["user"]): g for g in by_user["groups"]
    }
    ours |= {(g["account"], ""): g for g in by_account["groups"]}
    ours[("root", "")] = by_account["total"]
    assert {(a, "") for a in accounts} <= ours.keys()
    # sreport lists associations with usage rows in the window, the endpoint groups with jobs
    for key in set(seconds) | set(ours):
        for tres in TRES:
            used = ours[key]["tres_seconds"][tres] if key in ours else 0
            # sreport leaves out TRES the database does not track (the lab has no gres/gpu)
            assert seconds.get(key, {}).get(tres, 0) == used, (utc(start), key, tres)
            printed = minutes.get(key, {}).get(tres, 0)
            assert printed == int(f"{used / 60:.0f}"), (utc(start), key, tres)
