"""Who sees which job events: a subscriber's filters (its query) within its token's visibility.

Pure (no aiohttp). The poller reads every job as the SlurmUser, so Slurm's own rules
(PrivateData) never apply to what it reads: the gateway applies them here, to every event, the
snapshot and every replayed event alike:

- account patterns: a token limited to some accounts sees only jobs whose account fully matches
  one of its patterns (lowercased, as the authorize step compares them); a job without an
  account is not seen by such a token;
- ``per_user`` (``events.per_user``, by default ``cache.per_user``: Slurm hides jobs per user):
  a caller sees only its own jobs (its Slurm user's).

A job's kind of event is judged per subscriber: a job that moves out of what a subscriber may
see (another account, another partition it did not ask for) *leaves* its stream, one that moves
in *appears*, so a subscriber never learns the new account or partition of a job it may no
longer see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from slurmgate.server.events.changes import Change, Kind
from slurmgate.server.events.records import JobRecord

__all__ = [
    "FILTER_KEYS",
    "MAX_VALUES",
    "FilterError",
    "JobFilter",
    "Seen",
    "View",
    "Visibility",
    "parse_filter",
]

#: The query parameters a subscriber may filter by (each repeatable, values also "," separated).
FILTER_KEYS = ("user", "account", "partition", "job_id")
#: Values one subscriber may give, all parameters together (filters are checked per event).
MAX_VALUES = 256
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}")
_JOB_ID = re.compile(r"[1-9][0-9]{0,9}")


class FilterError(ValueError):
    """A query the events endpoint does not take; ``key`` names the parameter."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(why)
        self.key = key
        self.why = why


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a subscriber asked for: each non-empty set must contain the job's value."""

    users: frozenset[str] = frozenset()
    #: lowercased
    accounts: frozenset[str] = frozenset()
    partitions: frozenset[str] = frozenset()
    #: a job id matches the job, every task of an array (its array job id) and every component
    #: of a heterogeneous job (its leader's id)
    job_ids: frozenset[int] = frozenset()

    def matches(self, job: JobRecord) -> bool:
        """Whether ``job`` passes every filter given."""
        if self.users and job.user not in self.users:
            return False
        if self.accounts and job.account not in self.accounts:
            return False
        if self.partitions and self.partitions.isdisjoint(job.partitions):
            return False
        return not self.job_ids or not self.job_ids.isdisjoint(
            (job.job_id, job.array_job_id, job.het_job_id)
        )


def parse_filter(pairs: Iterable[tuple[str, str]]) -> JobFilter:
    """The filter of a query's (name, value) pairs; :class:`FilterError` for anything else."""
    found: dict[str, set[str]] = {key: set() for key in FILTER_KEYS}
    count = 0
    for key, value in pairs:
        if key not in found:
            raise FilterError(
                key[:64], f"unknown query parameter; the events take: {', '.join(FILTER_KEYS)}"
            )
        for item in value.split(","):
            count += 1
            if count > MAX_VALUES:
                raise FilterError(key, f"more than {MAX_VALUES} filter values")
            pattern = _JOB_ID if key == "job_id" else _NAME
            if pattern.fullmatch(item) is None:
                raise FilterError(key, f"{item[:64]!r} is not a {key} (expected {pattern.pattern})")
            found[key].add(item)
    return JobFilter(
        users=frozenset(found["user"]),
        accounts=frozenset(item.lower() for item in found["account"]),
        partitions=frozenset(found["partition"]),
        job_ids=frozenset(int(item) for item in found["job_id"]),
    )


@dataclass(frozen=True, slots=True)
class Visibility:
    """What a token may see at all, whatever it asks for."""

    #: full-match patterns on the lowercased account; empty: every account
    accounts: tuple[re.Pattern[str], ...] = ()
    #: only this Slurm user's jobs; None: everyone's
    user: str | None = None

    def sees(self, job: JobRecord) -> bool:
        """Whether the token may see ``job``."""
        if self.user is not None and job.user != self.user:
            return False
        if not self.accounts:
            return True
        return bool(job.account) and any(p.fullmatch(job.account) for p in self.accounts)


@dataclass(frozen=True, slots=True)
class Seen:
    """A change as one subscriber sees it: the kind, the record shown and why."""

    kind: Kind
    #: the record shown: the new one, or for ``left`` the last one the subscriber could see
    job: JobRecord
    #: for ``changed``: the record before
    before: JobRecord | None
    #: ``appeared``: "new" or "matches" (moved into view); ``left``: "gone" or "no_longer_matches";
    #: ``changed``: "state" or "fields" (account or partition, within view)
    why: str


@dataclass(frozen=True, slots=True)
class View:
    """One subscriber: its token's visibility and its own filter."""

    visibility: Visibility
    filter: JobFilter

    def shows(self, job: JobRecord | None) -> bool:
        """Whether this subscriber is shown ``job`` (None: no job)."""
        return job is not None and self.visibility.sees(job) and self.filter.matches(job)

    def see(self, change: Change) -> Seen | None:
        """``change`` as this subscriber sees it, or None when it sees nothing of it."""
        was, now = self.shows(change.before), self.shows(change.after)
        before, after = change.before, change.after
        if was and now:
            assert before is not None
            assert after is not None
            why = "state" if before.state != after.state else "fields"
            return Seen("changed", after, before, why)
        if now:
            assert after is not None
            return Seen("appeared", after, None, "new" if before is None else "matches")
        if was:
            assert before is not None
            return Seen("left", before, None, "gone" if after is None else "no_longer_matches")
        return None
