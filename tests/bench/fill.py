"""Filling the lab with held jobs, and taking them away again.

Jobs are real, separate batch jobs (``sbatch --hold``), not array tasks: slurmrestd lists a
pending array as one job, and the point is a long jobs list. They are spread over three users
and both accounts, named :data:`JOB_NAME`, and never run. The lab is shared with ``make test``:
:func:`cancel` removes exactly the jobs the benchmark made (slurmctld forgets them MinJobAge
later), and :func:`cancel_named` those of an earlier run that did not finish.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tests.lab.env import LabSuite

__all__ = [
    "JOB_NAME",
    "MIXED_JOB_NAME",
    "USERS",
    "cancel",
    "cancel_named",
    "submit_held",
    "wait_purged",
]

JOB_NAME = "slurmgate-bench"
#: The name of the jobs the mixed workload submits through the gateway.
MIXED_JOB_NAME = "slurmgate-bench-mixed"
#: Who owns the benchmark's jobs, with the account each submits to.
USERS = (("alice", "physics"), ("bob", "chem"), ("carol", "physics"))
#: sbatch calls per chroot call (each takes a few ms; suite.run allows 120 s).
_CHUNK = 2000


def _submit(suite: LabSuite, user: str, account: str, count: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        n = min(_CHUNK, count - len(ids))
        script = (
            f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); "
            f"sbatch --hold --parsable -J {JOB_NAME} -A {account} -o /dev/null -t 10 "
            "--wrap 'sleep 60' || exit 1; done"
        )
        out = suite.run("sh", "-c", script, user=user).stdout.split()
        ids += [int(line.split(";")[0]) for line in out]
    return ids


def submit_held(suite: LabSuite, count: int) -> dict[str, list[int]]:
    """Submit ``count`` held jobs, spread over :data:`USERS` (three sbatch streams at once);
    their ids by user."""
    shares = [count // len(USERS) + (1 if i < count % len(USERS) else 0) for i in range(3)]
    with ThreadPoolExecutor(len(USERS)) as pool:
        futures = {
            user: pool.submit(_submit, suite, user, account, share)
            for (user, account), share in zip(USERS, shares, strict=True)
        }
        return {user: future.result() for user, future in futures.items()}


def cancel(suite: LabSuite, ids: Sequence[int]) -> None:
    """Cancel the jobs ``ids`` (as root, a thousand per scancel)."""
    for start in range(0, len(ids), 1000):
        chunk = [str(job) for job in ids[start : start + 1000]]
        suite.run("scancel", *chunk)


def cancel_named(suite: LabSuite, *names: str) -> None:
    """Cancel the benchmark users' pending jobs named ``names`` (the mixed workload's, or an
    earlier run's that did not finish)."""
    users = ",".join(user for user, _ in USERS)
    listed = suite.run(
        "squeue", "--noheader", "--format=%i", "--states=PENDING",
        f"--name={','.join(names)}", f"--user={users}",
    ).stdout.split()  # fmt: skip
    cancel(suite, [int(job) for job in listed])


def _listed(suite: LabSuite, *names: str) -> int:
    users = ",".join(user for user, _ in USERS)
    out = suite.run(
        "squeue", "--noheader", "--format=%i", "--states=all",
        f"--name={','.join(names)}", f"--user={users}",
    ).stdout  # fmt: skip
    return len(out.split())


def wait_purged(suite: LabSuite, timeout: float = 420.0) -> tuple[float, int]:
    """Wait until slurmctld no longer lists an earlier run's jobs (cancelled jobs stay listed for
    MinJobAge, 300 s by default, and would lengthen the jobs list); (seconds waited, jobs still
    listed when giving up)."""
    start = time.monotonic()
    while True:
        left = _listed(suite, JOB_NAME, MIXED_JOB_NAME)
        waited = time.monotonic() - start
        if left == 0 or waited >= timeout:
            return waited, left
        print(f"fill: waiting for slurmctld to forget {left} jobs of an earlier run", flush=True)
        time.sleep(min(15.0, max(1.0, timeout - waited)))
