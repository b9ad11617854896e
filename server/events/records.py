"""Jobs as the event poller reads them from ``GET /slurm/<v>/jobs``: frozen records, no aiohttp.

Only the fields an event carries are read, and only fields every API version from v0.0.40 to
v0.0.45 has. The ones that decide who sees a job and whether it changed (id, user, account,
partition, state) must have their type or the whole answer is refused: an event stream built on
a shape the gateway does not understand could show a job to the wrong subscriber. The others are
informational and read as null when absent or of another shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["JobRecord", "JobsAnswer", "UnreadableJobs", "read_jobs"]


class UnreadableJobs(ValueError):
    """slurmrestd's answer is not the jobs list the poller expects (names the job and field)."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as slurmctld shows it, reduced to what events carry."""

    job_id: int
    user: str
    #: lowercased (Slurm stores account names lowercased; patterns compare lowercased)
    account: str
    #: one partition, or several separated by "," for a job pending in any of them
    partition: str
    #: base state and flags, as slurmrestd lists them (["PENDING"], ["COMPLETED"], ...)
    state: tuple[str, ...]
    name: str | None = None
    reason: str | None = None
    nodes: str | None = None
    array_job_id: int | None = None
    array_task_id: int | None = None
    het_job_id: int | None = None
    submit_time: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    exit_code: int | None = None

    @property
    def partitions(self) -> tuple[str, ...]:
        """The partitions named (a pending job may ask for several)."""
        return tuple(part for part in self.partition.split(",") if part)

    def tracked(self) -> tuple[object, ...]:
        """What makes a ``changed`` event: the state, and what decides who sees the job."""
        return (self.state, self.account, self.partition, self.user)

    def as_json(self) -> dict[str, object]:
        """The job as an event's ``job`` object."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "user": self.user,
            "account": self.account,
            "partition": self.partition,
            "state": list(self.state),
            "reason": self.reason,
            "nodes": self.nodes,
            "array_job_id": self.array_job_id,
            "array_task_id": self.array_task_id,
            "het_job_id": self.het_job_id,
            "submit_time": self.submit_time,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True, slots=True)
class JobsAnswer:
    """One poll's outcome: every job (``changed``), or nothing changed since ``update_time``."""

    changed: bool
    #: job id -> record; empty when nothing changed
    jobs: Mapping[int, JobRecord]
    #: slurmctld's time of this list, to send as the next ``update_time`` (0 when unchanged)
    last_update: int


def _number(value: object) -> int | None:
    """slurmrestd's ``{"set": true, "number": N}`` (or a plain integer) as N; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping) and value.get("set") is True and not value.get("infinite"):
        number = value.get("number")
        if isinstance(number, int) and not isinstance(number, bool):
            return number
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _exit_code(value: object) -> int | None:
    """v0.0.40+: ``{"status": [...], "return_code": {"set", "number"}}``."""
    if isinstance(value, Mapping):
        return _number(value.get("return_code"))
    return _number(value)


def _int(job: Mapping[str, Any], key: str, where: str) -> int:
    value = job.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UnreadableJobs(f"{where}: {key} is {type(value).__name__}, not an integer")
    return value


def _str(job: Mapping[str, Any], key: str, where: str) -> str:
    value = job.get(key)
    if not isinstance(value, str):
        raise UnreadableJobs(f"{where}: {key} is {type(value).__name__}, not a string")
    return value


def _record(job: object, index: int) -> JobRecord:
    if not isinstance(job, Mapping):
        raise UnreadableJobs(f"jobs[{index}] is not an object")
    where = f"jobs[{index}]"
    job_id = _int(job, "job_id", where)
    where = f"job {job_id}"
    state = job.get("job_state")
    if not isinstance(state, list) or not state or not all(isinstance(s, str) for s in state):
        raise UnreadableJobs(f"{where}: job_state is not a list of names")
    return JobRecord(
        job_id=job_id,
        user=_str(job, "user_name", where),
        account=_str(job, "account", where).lower(),
        partition=_str(job, "partition", where),
        state=tuple(state),
        name=_text(job.get("name")),
        reason=_text(job.get("state_reason")),
        nodes=_text(job.get("nodes")),
        array_job_id=_number(job.get("array_job_id")) or None,
        array_task_id=_number(job.get("array_task_id")),
        het_job_id=_number(job.get("het_job_id")) or None,
        submit_time=_number(job.get("submit_time")) or None,
        start_time=_number(job.get("start_time")) or None,
        end_time=_number(job.get("end_time")) or None,
        exit_code=_exit_code(job.get("exit_code")),
    )


def read_jobs(data: Mapping[str, Any], *, asked_since: int) -> JobsAnswer:
    """Read a ``GET /slurm/<v>/jobs`` answer asked with ``update_time=asked_since`` (0: none).

    With an ``update_time``, slurmctld answers "no change in data" when no job changed since then
    (it compares with its own last job update time): slurmrestd then sends no jobs and no
    ``last_update``, with the warning "No job changes since update_time". Otherwise the answer
    lists every job, and ``last_update`` is the time of that list.
    """
    jobs = data.get("jobs")
    if not isinstance(jobs, list):
        raise UnreadableJobs("the answer has no jobs list")
    last_update = _number(data.get("last_update")) or 0
    if asked_since and not jobs and last_update == 0:
        return JobsAnswer(changed=False, jobs={}, last_update=0)
    records: dict[int, JobRecord] = {}
    for index, job in enumerate(jobs):
        record = _record(job, index)
        if record.job_id in records:
            raise UnreadableJobs(f"job {record.job_id} is listed twice")
        records[record.job_id] = record
    return JobsAnswer(changed=True, jobs=records, last_update=last_update)
