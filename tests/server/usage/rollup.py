"""What the sreport lab test does to slurmdbd's records so that the hourly rollup covers jobs
that have just run.

``sreport`` sums slurmdbd's hourly rollup, which covers only hours that have ended: slurmdbd runs
it at the top of each hour, up to that hour (``_rollup_handler`` in src/slurmdbd/slurmdbd.c,
``_cluster_rollup_usage`` in src/plugins/accounting_storage/mysql/as_mysql_usage.c). ``sreport``
also leaves out a cluster with no usage of its own in the window (``_process_util_by_report`` in
src/api/cluster_report_functions.c), and the rollup writes a cluster's usage only for hours that
one of its registration events covers (``_setup_cluster_usage`` in as_mysql_rollup.c). On a lab
started minutes ago no hour is both over and registered. So the test:

1. moves the records of its own jobs back in time, everything else unchanged (user, account,
   TRES, how long they ran): submit, eligible, start and end in ``<cluster>_job_table``, start
   and end in ``<cluster>_step_table`` (:func:`move_jobs`);
2. when the cluster registered after the first hour it compares, dates the cluster's first
   registration event back to that hour (:func:`date_registration_back`);
3. has slurmdbd roll those hours up, ``sacctmgr rollup START END`` (:func:`roll_up`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from tests.lab.env import LabSuite
from tests.server.usage.slurm_tools import utc

__all__ = [
    "cut",
    "date_registration_back",
    "move_jobs",
    "registered_at",
    "roll_up",
]

_ACCOUNT = re.compile(r"[a-z0-9_]+")


def _query(suite: LabSuite, statement: str) -> list[list[str]]:
    out = suite.run("mariadb", "-N", "-B", "slurm_acct_db", "-e", statement)
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def registered_at(suite: LabSuite) -> int:
    """When the cluster's first registration event (``node_name`` empty) starts."""
    table = f"{suite.cluster}_event_table"
    rows = _query(suite, f"SELECT MIN(time_start) FROM {table} WHERE node_name = ''")  # noqa: S608
    return int(rows[0][0])


def date_registration_back(suite: LabSuite, to: int) -> int | None:
    """Start the cluster's first registration event at ``to`` if it starts later; the time it
    started at before, or None when it was early enough.

    On a lab whose slurmdbd has not rolled anything up yet, its own rollup then starts at ``to``
    too (it begins at the first registration): those hours hold no jobs but the test's."""
    first = registered_at(suite)
    if first <= to:
        return None
    _query(
        suite,
        f"UPDATE {suite.cluster}_event_table SET time_start = {int(to)} "  # noqa: S608
        f"WHERE node_name = '' AND time_start = {first}",
    )
    return first


def move_jobs(
    suite: LabSuite, job_ids: Sequence[str], accounts: Sequence[str], seconds: int
) -> None:
    """Move the records of the finished jobs ``job_ids`` (in ``accounts``) and of their steps
    ``seconds`` back in time, in one transaction."""
    if not all(_ACCOUNT.fullmatch(a) for a in accounts):
        raise ValueError(f"not account names: {accounts}")
    ids = ",".join(str(int(i)) for i in job_ids)
    names = ",".join(f"'{a}'" for a in accounts)
    job_table, step_table = f"{suite.cluster}_job_table", f"{suite.cluster}_step_table"
    rows = _query(
        suite,
        f"SELECT job_db_inx FROM {job_table} WHERE id_job IN ({ids}) "  # noqa: S608
        f"AND account IN ({names}) AND time_start > 0 AND time_end > 0",
    )
    if len(rows) != len(job_ids):
        raise AssertionError(f"{suite.name}: {len(rows)} finished records of jobs {ids}")
    inx = ",".join(str(int(row[0])) for row in rows)
    back = int(seconds)

    def moved(column: str) -> str:
        return f"{column} = IF({column} > 0, {column} - {back}, 0)"

    steps = ", ".join(moved(c) for c in ("time_start", "time_end"))
    jobs = ", ".join(moved(c) for c in ("time_submit", "time_eligible", "time_start", "time_end"))
    where = f"WHERE job_db_inx IN ({inx})"
    _query(
        suite,
        f"START TRANSACTION; UPDATE {step_table} SET {steps} {where}; "  # noqa: S608
        f"UPDATE {job_table} SET {jobs} {where}; COMMIT;",
    )


def roll_up(suite: LabSuite, start: int, end: int) -> None:
    """Have slurmdbd roll up the hours ``[start, end)`` now.

    ``sacctmgr rollup START END`` is DBD_ROLL_USAGE: slurmdbd runs the hourly rollup over those
    hours before it answers, from the job records, and leaves ``<cluster>_last_ran_table`` as it
    is since an end is given (``_cluster_rollup_usage``). It also sets the in-memory mark below
    which a late job record makes slurmdbd redo hours (``global_last_rollup``) to ``end``; the
    plain ``sacctmgr rollup`` after it puts the mark back to the current hour, as slurmdbd's hourly
    run does, and rolls up nothing the hourly run would not (only hours that have ended).
    """
    suite.run("env", "TZ=UTC", "sacctmgr", "-i", "rollup", utc(start), utc(end))
    suite.run("sacctmgr", "-i", "rollup")


def cut(starting: Sequence[tuple[int, int]], ending: Sequence[tuple[int, int]]) -> int | None:
    """An instant of the jobs' real runs ((start, end) seconds) at which one of ``starting``
    and one of ``ending`` run, and before which one of each ended; None if there is none.

    ``starting``'s records are moved so that this instant becomes a window's start, ``ending``'s
    so that it becomes its end: the window then holds runs cut at both edges, runs inside it
    and, just before it, runs outside.
    """
    times = sorted({t for run in (*starting, *ending) for t in run})
    for before, after in itertools.pairwise(times):
        if after - before < 2:
            continue
        at = (before + after) // 2
        if all(
            any(start < at < end for start, end in group) and any(end < at for _, end in group)
            for group in (starting, ending)
        ):
            return at
    return None
