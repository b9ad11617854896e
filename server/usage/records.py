"""slurmdbd's job records (``GET /slurmdb/v0.0.XX/jobs``), read into what a usage report needs.

Only fields every API version from v0.0.40 to v0.0.45 has are read: ``job_id``, ``cluster``,
``account``, ``user``, ``time.submission``, ``time.eligible``, ``time.start``, ``time.end`` and
``tres.allocated`` (a list of ``{"type", "name", "id", "count"}``). A field of the wrong type is
an error naming the job and the field, never a silent zero: a report that quietly leaves jobs out
would be a wrong bill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["TRES_KEYS", "Job", "UnreadableJobs", "read_jobs", "tres_key"]

#: The TRES a report counts, by Slurm's TRES name (``type`` or ``type/name``), in answer order.
TRES_KEYS = ("cpu", "mem", "gres/gpu", "billing", "node")


class UnreadableJobs(ValueError):
    """A slurmdbd answer that does not have the shape the report needs."""


@dataclass(frozen=True, slots=True)
class Job:
    """One job record (a job, an array task or a HetJob component; steps are not read).

    Times are seconds since the epoch, 0 for "not yet" (a job that never started has ``start``
    0; a job still running has ``end`` 0). ``tres`` holds the allocated count of each TRES of
    ``TRES_KEYS`` the record has (memory in MB, as Slurm counts it).
    """

    job_id: int
    cluster: str
    account: str
    user: str
    submission: int
    eligible: int
    start: int
    end: int
    tres: Mapping[str, int]

    @property
    def identity(self) -> tuple[str, int, int, int, int]:
        """What tells two records apart: a requeued job has a record per run, with one job id."""
        return (self.cluster, self.job_id, self.submission, self.eligible, self.start)


def tres_key(kind: str, name: str) -> str | None:
    """The report's name of an allocated TRES, or None when the report does not count it.

    Only untyped GPUs count as ``gres/gpu`` (``gres/gpu:h100`` is the same GPUs again, by type,
    when the site tracks both).
    """
    key = f"{kind}/{name}" if name else kind
    return key if key in TRES_KEYS else None


def _field(record: Mapping[str, object], path: str, where: str) -> object:
    value: object = record
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            raise UnreadableJobs(f"{where}: no field {path}")
        value = value[step]
    return value


def _integer(record: Mapping[str, object], path: str, where: str) -> int:
    value = _field(record, path, where)
    if isinstance(value, Mapping):
        # slurmrestd's optional numbers: {"set": bool, "infinite": bool, "number": int}
        if not value.get("set", False) or value.get("infinite", False):
            return 0
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnreadableJobs(f"{where}: {path} is {type(value).__name__}, not an integer")
    return value


def _text(record: Mapping[str, object], path: str, where: str) -> str:
    value = _field(record, path, where)
    if not isinstance(value, str):
        raise UnreadableJobs(f"{where}: {path} is {type(value).__name__}, not a string")
    return value


def _tres(record: Mapping[str, object], where: str) -> dict[str, int]:
    allocated = _field(record, "tres.allocated", where)
    if not isinstance(allocated, Sequence) or isinstance(allocated, str):
        raise UnreadableJobs(f"{where}: tres.allocated is not a list")
    found: dict[str, int] = {}
    for index, item in enumerate(allocated):
        at = f"{where}: tres.allocated[{index}]"
        if not isinstance(item, Mapping):
            raise UnreadableJobs(f"{at} is not an object")
        kind = _text(item, "type", at)
        name = item.get("name") or ""
        if not isinstance(name, str):
            raise UnreadableJobs(f"{at}: name is not a string")
        key = tres_key(kind, name)
        if key is None:
            continue
        count = _integer(item, "count", at)
        if count < 0:
            # Slurm marks a count it does not know with a negative number (energy: -2).
            continue
        found[key] = found.get(key, 0) + count
    return found


def read_jobs(answer: Mapping[str, object]) -> list[Job]:
    """The job records of one ``/slurmdb/.../jobs`` answer."""
    jobs = answer.get("jobs")
    if not isinstance(jobs, Sequence) or isinstance(jobs, str):
        raise UnreadableJobs("the answer has no list 'jobs'")
    found = []
    for index, record in enumerate(jobs):
        if not isinstance(record, Mapping):
            raise UnreadableJobs(f"jobs[{index}] is not an object")
        job_id = _integer(record, "job_id", f"jobs[{index}]")
        where = f"job {job_id}"
        found.append(
            Job(
                job_id=job_id,
                cluster=_text(record, "cluster", where),
                account=_text(record, "account", where).lower(),
                user=_text(record, "user", where),
                submission=_integer(record, "time.submission", where),
                eligible=_integer(record, "time.eligible", where),
                start=_integer(record, "time.start", where),
                end=_integer(record, "time.end", where),
                tres=_tres(record, where),
            )
        )
    return found
