"""A usage report: each job clipped to the window, its TRES-seconds summed per group.

A job counts for the part of its run inside ``[start, end)``: from ``max(job start, start)`` to
``min(job end, end)``, a job still running (end 0) up to ``now``. Its TRES-seconds are each
allocated count times those seconds; TRES-minutes are TRES-seconds / 60. This is what slurmdbd's
hourly rollup adds up for ``sreport`` (which then prints minutes rounded to whole numbers), and
what ``sacct -X`` start, end and AllocTRES give.

A job is counted in ``jobs`` when its run overlaps the window: it started before the window's end
and ended after its start (one that started and ended in the same second inside the window
counts too, with no TRES-seconds). Jobs that never started count nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from slurmgate.server.usage.records import TRES_KEYS, Job
from slurmgate.server.usage.request import UsageQuery

__all__ = ["Group", "Json", "Usage", "overlap", "summarize"]

Json = dict[str, object]


def overlap(job: Job, start: int, end: int, now: int) -> int | None:
    """Seconds of ``job``'s run inside ``[start, end)``; None when it did not run in it."""
    if job.start <= 0:
        return None
    # Running (end 0): up to now. A record whose end is before its start ran for no time.
    finished = max(job.end if job.end > 0 else now, job.start)
    if job.start >= end or finished < start:
        return None
    if finished == start and job.start < start:
        return None  # it ended exactly as the window began
    return max(0, min(finished, end) - max(job.start, start))


@dataclass(slots=True)
class Group:
    """What one group used: jobs and TRES-seconds per TRES of ``TRES_KEYS``."""

    jobs: int = 0
    seconds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRES_KEYS, 0))

    def add(self, job: Job, seconds: int) -> None:
        """Count ``job``, which ran ``seconds`` inside the window."""
        self.jobs += 1
        for key, count in job.tres.items():
            self.seconds[key] += count * seconds

    def as_json(self) -> Json:
        """``jobs``, ``tres_minutes`` (to the millisecond of a minute) and ``tres_seconds``."""
        return {
            "jobs": self.jobs,
            "tres_minutes": {key: round(value / 60, 3) for key, value in self.seconds.items()},
            "tres_seconds": dict(self.seconds),
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """A report's groups (by their key values, in ``group_by`` order) and its total."""

    groups: dict[tuple[str, ...], Group]
    total: Group
    running: int

    def as_json(self, group_by: tuple[str, ...]) -> Json:
        """The groups sorted by key, each with its key fields, then the total."""
        return {
            "groups": [
                {**dict(zip(group_by, key, strict=True)), **group.as_json()}
                for key, group in sorted(self.groups.items())
            ],
            "total": self.total.as_json(),
            "running_jobs": self.running,
        }


def summarize(
    jobs: Iterable[Job],
    query: UsageQuery,
    *,
    now: int,
    cluster: str,
    allowed: Callable[[str], bool],
) -> Usage:
    """Sum ``jobs`` of ``cluster`` over ``query``'s window, per group.

    A record counts only when its own account is one ``allowed`` accepts and, when the query
    names accounts or users, one of those: slurmdbd's filters are not relied on (the same record
    may also come back from several slices; it counts once).
    """
    seen: set[tuple[str, int, int, int, int]] = set()
    groups: dict[tuple[str, ...], Group] = {}
    total = Group()
    running = 0
    for job in jobs:
        if job.identity in seen:
            continue
        seen.add(job.identity)
        if job.cluster != cluster or not allowed(job.account):
            continue
        if query.accounts and job.account not in query.accounts:
            continue
        if query.users and job.user not in query.users:
            continue
        seconds = overlap(job, query.start, query.end, now)
        if seconds is None:
            continue
        key = tuple(job.account if name == "account" else job.user for name in query.group_by)
        groups.setdefault(key, Group()).add(job, seconds)
        total.add(job, seconds)
        running += job.end <= 0
    return Usage(groups, total, running)
