"""What changed between two job lists: jobs that appeared, changed or left (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from slurmgate.server.events.records import JobRecord

__all__ = ["Change", "Kind", "diff"]

#: appeared: a job slurmctld did not list before; changed: its state (or account, partition,
#: user) is another; left: slurmctld no longer lists it (purged MinJobAge after it ended)
Kind = Literal["appeared", "changed", "left"]


@dataclass(frozen=True, slots=True)
class Change:
    """One job's change; ``before`` is None when it appeared, ``after`` when it left."""

    kind: Kind
    before: JobRecord | None
    after: JobRecord | None

    @property
    def job_id(self) -> int:
        """The job's id."""
        record = self.after if self.after is not None else self.before
        assert record is not None  # every Change has one of the two
        return record.job_id


def diff(old: Mapping[int, JobRecord], new: Mapping[int, JobRecord]) -> list[Change]:
    """The changes from ``old`` to ``new``, by job id (so a poll's events come in id order).

    A job counts as changed only when :meth:`JobRecord.tracked` differs: its state, or what
    decides who sees it. Times, reasons and nodes alone make no event.
    """
    changes: list[Change] = []
    for job_id in sorted(old.keys() | new.keys()):
        before, after = old.get(job_id), new.get(job_id)
        if before is None:
            changes.append(Change("appeared", None, after))
        elif after is None:
            changes.append(Change("left", before, None))
        elif before.tracked() != after.tracked():
            changes.append(Change("changed", before, after))
    return changes
