"""What Slurm's own tools say about usage, for the lab tests: ``sacct`` records summed over a
window, and ``sreport``'s rows. An implementation of its own, apart from server/usage/, so that
the endpoint is compared with something it does not share code with.

Both tools run in the suite's chroot with ``TZ=UTC``: the times they take and print are UTC.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.lab.env import LabSuite

__all__ = [
    "TRES",
    "SacctJob",
    "Sums",
    "finished",
    "parse_alloc_tres",
    "read_sacct",
    "read_sreport",
    "sacct_jobs",
    "sreport_rows",
    "sums",
    "utc",
]

#: the TRES the endpoint reports, by the names sacct and sreport use
TRES = ("cpu", "mem", "gres/gpu", "billing", "node")
#: memory units in sacct's AllocTRES, in MB (Slurm's TRES unit for mem)
_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "P": 1024**3}
_MEM = re.compile(r"([0-9]+(?:\.[0-9]+)?)([KMGTP]?)")
_FORMAT = "JobIDRaw,Cluster,Account,User,Start,End,State,AllocTRES"


def utc(seconds: int) -> str:
    """``seconds`` as sacct and sreport take times (UTC, as their TZ is)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _seconds(text: str) -> int | None:
    if text in ("Unknown", "None", ""):
        return None
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())


def parse_alloc_tres(text: str) -> dict[str, int]:
    """sacct's AllocTRES (``billing=2,cpu=2,mem=4G,node=1,gres/gpu=1``) as counts of ``TRES``,
    memory in MB; typed GPUs (``gres/gpu:h100``) and other TRES are left out."""
    counts: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in TRES:
            continue
        if name == "mem":
            match = _MEM.fullmatch(value)
            if match is None:
                raise ValueError(f"memory {value!r} in AllocTRES {text!r}")
            counts[name] = round(float(match[1]) * _MEM_UNITS[match[2] or "M"])
        else:
            counts[name] = int(value)
    return counts


@dataclass(frozen=True)
class SacctJob:
    """One line of ``sacct -X -P``: start and end None when unknown (end: still running)."""

    job_id: str
    cluster: str
    account: str
    user: str
    start: int | None
    end: int | None
    state: str
    tres: dict[str, int]


def read_sacct(text: str) -> list[SacctJob]:
    """``sacct -P -n --format=`` + ``_FORMAT`` output."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job_id, cluster, account, user, start, end, state, tres = line.split("|")
        jobs.append(
            SacctJob(
                job_id,
                cluster,
                account,
                user,
                _seconds(start),
                _seconds(end),
                state,
                parse_alloc_tres(tres),
            )
        )
    return jobs


def sacct_jobs(suite: LabSuite, start: int, end: int, *ids: str) -> list[SacctJob]:
    """Every job allocation (all users, every run of requeued jobs) in ``[start, end]``, or the
    jobs ``ids``."""
    args = ["-a", "-X", "-D", "-P", "-n", "--noconvert", f"--format={_FORMAT}"]
    args += ["-S", utc(start), "-E", utc(end)]
    if ids:
        args += ["-j", ",".join(ids)]
    return read_sacct(suite.run("env", "TZ=UTC", "sacct", *args).stdout)


def finished(suite: LabSuite, ids: list[str]) -> bool:
    """Whether sacct shows each job of ``ids`` and its batch step COMPLETED, with an end: then
    slurmctld has nothing more to write to their records."""
    out = suite.run(
        "sacct", "-a", "-D", "-P", "-n", "-j", ",".join(ids), "--format=JobIDRaw,State,End"
    ).stdout
    done = set()
    for line in out.splitlines():
        job_id, state, end = line.split("|")
        if state == "COMPLETED" and _seconds(end) is not None:
            done.add(job_id)
    return all(i in done and f"{i}.batch" in done for i in ids)


@dataclass
class Sums:
    """Jobs and TRES-seconds per group."""

    jobs: int = 0
    seconds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRES, 0))


def sums(
    jobs: list[SacctJob], start: int, end: int, now: int, group_by: tuple[str, ...]
) -> dict[tuple[str, ...], Sums]:
    """TRES-seconds of each job's part inside ``[start, end)`` (running jobs up to ``now``)."""
    found: dict[tuple[str, ...], Sums] = defaultdict(Sums)
    for job in jobs:
        if job.start is None:
            continue
        stop = job.end if job.end is not None else now
        inside = min(stop, end) - max(job.start, start)
        ran_inside = job.start < end and (stop > start or job.start == stop >= start)
        if not ran_inside:
            continue
        key = tuple(job.account if name == "account" else job.user for name in group_by)
        group = found[key]
        group.jobs += 1
        for name, count in job.tres.items():
            group.seconds[name] += count * max(inside, 0)
    return dict(found)


def read_sreport(text: str) -> dict[tuple[str, str], dict[str, int]]:
    """``sreport -P -n cluster AccountUtilizationByUser ... --tres=...`` rows:
    (account, user) -> TRES -> used; user "" is the account's total (root: the cluster's)."""
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for line in text.splitlines():
        if not line.strip():
            continue
        _cluster, account, user, _name, tres, used = line.split("|")[:6]
        rows[(account, user)][tres] = int(used)
    return dict(rows)


def sreport_rows(
    suite: LabSuite, start: int, end: int, unit: str = "seconds"
) -> dict[tuple[str, str], dict[str, int]]:
    """sreport's AccountUtilizationByUser over ``[start, end)`` (whole hours) in ``unit``."""
    out = suite.run(
        "env",
        "TZ=UTC",
        "sreport",
        "-P",
        "-n",
        "cluster",
        "AccountUtilizationByUser",
        f"start={utc(start)}",
        f"end={utc(end)}",
        "-t",
        unit,
        f"--tres={','.join(TRES)}",
    )
    return read_sreport(out.stdout)
