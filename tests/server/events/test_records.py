"""Reading slurmrestd's jobs list: records, "no change", and refusals of other shapes."""

from __future__ import annotations

from typing import Any

import pytest

from slurmgate.server.events.records import UnreadableJobs, read_jobs
from tests.server.events.fakes import job


def answer(*jobs: dict[str, Any], last_update: int = 1795000100) -> dict[str, Any]:
    return {
        "jobs": list(jobs),
        "last_update": {"set": True, "infinite": False, "number": last_update},
        "errors": [],
    }


def test_a_job_is_read_with_its_fields() -> None:
    found = read_jobs(answer(job(7, "RUNNING+COMPLETING", account="PHYSICS")), asked_since=0)
    assert found.changed
    assert found.last_update == 1795000100
    record = found.jobs[7]
    assert record.state == ("RUNNING", "COMPLETING")
    assert record.account == "physics"  # lowercased, as Slurm stores it
    assert (record.user, record.partition, record.name) == ("alice", "debug", "job7")
    assert (record.array_job_id, record.array_task_id, record.het_job_id) == (None, None, None)
    assert (record.submit_time, record.start_time, record.exit_code) == (1795000007, None, 0)


def test_array_task_zero_and_ids_are_kept() -> None:
    item = job(
        12,
        array_job_id={"set": True, "number": 10},
        array_task_id={"set": True, "number": 0},
        het_job_id={"set": True, "number": 11},
    )
    record = read_jobs(answer(item), asked_since=0).jobs[12]
    assert (record.array_job_id, record.array_task_id, record.het_job_id) == (10, 0, 11)


def test_no_change_since_update_time() -> None:
    data = {"jobs": [], "last_update": {"set": True, "number": 0}, "errors": []}
    found = read_jobs(data, asked_since=1795000100)
    assert not found.changed
    assert found.jobs == {}
    # without an update_time, an empty list means no jobs at all
    assert read_jobs(data, asked_since=0).changed


def test_every_job_gone_is_a_change() -> None:
    found = read_jobs(answer(), asked_since=1795000000)
    assert found.changed
    assert found.jobs == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_id": "7"}, "job_id is str"),
        ({"job_id": True}, "job_id is bool"),
        ({"user_name": None}, "job 7: user_name is NoneType"),
        ({"account": 5}, "job 7: account is int"),
        ({"partition": ["debug"]}, "job 7: partition is list"),
        ({"job_state": "RUNNING"}, "job 7: job_state"),
        ({"job_state": []}, "job 7: job_state"),
        ({"job_state": [1]}, "job 7: job_state"),
    ],
)
def test_fields_that_decide_visibility_must_have_their_type(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnreadableJobs, match=message):
        read_jobs(answer(job(7) | change), asked_since=0)


def test_other_shapes_are_refused() -> None:
    with pytest.raises(UnreadableJobs, match="no jobs list"):
        read_jobs({"jobs": None}, asked_since=0)
    with pytest.raises(UnreadableJobs, match=r"jobs\[0\] is not an object"):
        read_jobs({"jobs": [5]}, asked_since=0)
    with pytest.raises(UnreadableJobs, match="listed twice"):
        read_jobs(answer(job(7), job(7)), asked_since=0)


def test_informational_fields_of_another_shape_are_null() -> None:
    item = job(7, name=5, nodes=None, submit_time="soon", exit_code=None)
    record = read_jobs(answer(item), asked_since=0).jobs[7]
    assert (record.name, record.nodes, record.submit_time, record.exit_code) == (
        None,
        None,
        None,
        None,
    )
