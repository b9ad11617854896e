"""Diffing two job lists: appeared, changed, left; untracked fields make no event."""

from __future__ import annotations

from slurmgate.server.events.changes import diff
from tests.server.events.fakes import record


def test_appear_change_leave_in_job_id_order() -> None:
    old = {1: record(1), 2: record(2, "RUNNING"), 3: record(3)}
    new = {2: record(2, "COMPLETED"), 3: record(3), 4: record(4)}
    changes = diff(old, new)
    assert [(c.kind, c.job_id) for c in changes] == [("left", 1), ("changed", 2), ("appeared", 4)]
    left, changed, appeared = changes
    assert (left.before, left.after) == (old[1], None)
    assert (changed.before, changed.after) == (old[2], new[2])
    assert (appeared.before, appeared.after) == (None, new[4])


def test_flags_account_and_partition_are_changes() -> None:
    old = {1: record(1, "RUNNING"), 2: record(2), 3: record(3)}
    new = {
        1: record(1, "RUNNING+COMPLETING"),
        2: record(2, account="chem"),
        3: record(3, partition="batch"),
    }
    assert [(c.kind, c.job_id) for c in diff(old, new)] == [
        ("changed", 1),
        ("changed", 2),
        ("changed", 3),
    ]


def test_times_reasons_and_nodes_alone_are_not() -> None:
    old = {1: record(1, reason="Priority", start_time=5)}
    new = {1: record(1, reason="Resources", start_time=6, nodes="n1")}
    assert diff(old, new) == []
    assert diff({}, {}) == []
