"""Reading slurmdbd's job records: the recorded lab answers of both suites, TRES names and units,
and answers of the wrong shape (refused, naming the job and field)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from slurmgate.server.usage.records import TRES_KEYS, UnreadableJobs, read_jobs, tres_key
from tests.server.usage.recorded import FORKY, TRIXIE, answer, by_id, derived


@pytest.mark.parametrize("name", [FORKY, TRIXIE])
def test_recorded_answers_of_both_suites_are_read(name: str) -> None:
    data = answer(name)
    jobs = read_jobs(data)
    assert len(jobs) == len(data["jobs"]) > 0
    for job, raw in zip(jobs, data["jobs"], strict=True):
        assert job.job_id == raw["job_id"]
        assert (job.account, job.user, job.cluster) == (raw["account"], raw["user"], raw["cluster"])
        assert (job.start, job.end) == (raw["time"]["start"], raw["time"]["end"])
        assert job.cluster == name.split("-", maxsplit=1)[0]
        counts = {t["type"]: t["count"] for t in raw["tres"]["allocated"]}
        # The lab's records: cpu, node and billing; energy (-2: unknown) is not counted.
        assert job.tres == {
            "cpu": counts["cpu"],
            "node": counts["node"],
            "billing": counts["billing"],
        }
        assert counts["energy"] < 0


def test_running_jobs_have_no_end() -> None:
    jobs = read_jobs(answer(FORKY))
    running = [job for job in jobs if job.end == 0]
    assert running
    assert all(job.start > 0 for job in running)


def test_mem_and_gpus_in_slurms_units() -> None:
    base = by_id(answer(FORKY))[37411]
    record = derived(
        base,
        allocated=[
            {"type": "cpu", "name": "", "id": 1, "count": 8},
            # Memory: Slurm's TRES count is in MB, as sacct's AllocTRES "mem=4G" is 4096 MB.
            {"type": "mem", "name": "", "id": 2, "count": 4096},
            {"type": "node", "name": "", "id": 4, "count": 2},
            {"type": "billing", "name": "", "id": 5, "count": 10},
            {"type": "gres", "name": "gpu", "id": 1001, "count": 4},
            # The same GPUs again, by type: not counted twice.
            {"type": "gres", "name": "gpu:h100", "id": 1002, "count": 4},
            {"type": "gres", "name": "shard", "id": 1003, "count": 3},
            {"type": "fs", "name": "disk", "id": 6, "count": 100},
            {"type": "energy", "name": "", "id": 3, "count": -2},
        ],
    )
    (job,) = read_jobs({"jobs": [record]})
    assert job.tres == {"cpu": 8, "mem": 4096, "node": 2, "billing": 10, "gres/gpu": 4}


@pytest.mark.parametrize(
    ("kind", "name", "key"),
    [
        ("cpu", "", "cpu"),
        ("mem", "", "mem"),
        ("gres", "gpu", "gres/gpu"),
        ("gres", "gpu:a100", None),
        ("gres", "mps", None),
        ("license", "matlab", None),
        ("energy", "", None),
    ],
)
def test_tres_names(kind: str, name: str, key: str | None) -> None:
    assert tres_key(kind, name) == key
    assert key is None or key in TRES_KEYS


def test_account_names_are_lowercased() -> None:
    record = derived(by_id(answer(FORKY))[37411], account="PHYSICS")
    assert read_jobs({"jobs": [record]})[0].account == "physics"


def test_optional_numbers_in_slurmrestds_set_infinite_number_form() -> None:
    record = derived(
        by_id(answer(FORKY))[37411],
        time_end={"set": True, "infinite": False, "number": 1795260300},
        time_start={"set": False, "infinite": False, "number": 5},
    )
    (job,) = read_jobs({"jobs": [record]})
    assert (job.start, job.end) == (0, 1795260300)


def _broken(**changes: object) -> dict[str, Any]:
    return {"jobs": [derived(by_id(answer(FORKY))[37411], **changes)]}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({}, "no list 'jobs'"),
        ({"jobs": {"a": 1}}, "no list 'jobs'"),
        ({"jobs": [1]}, "jobs[0] is not an object"),
        (_broken(account=None), "job 37411: account is NoneType"),
        (_broken(time_start="1795260188"), "job 37411: time.start is str"),
        (_broken(time_end=True), "job 37411: time.end is bool"),
        (_broken(allocated="cpu=2"), "tres.allocated is not a list"),
        (_broken(allocated=[{"type": "cpu", "count": "2"}]), "count is str"),
        (_broken(allocated=[{"count": 2}]), "no field type"),
    ],
)
def test_answers_of_the_wrong_shape_are_refused(data: dict[str, Any], says: str) -> None:
    with pytest.raises(UnreadableJobs, match=re.escape(says)):
        read_jobs(data)


def test_a_record_without_time_is_refused() -> None:
    record = by_id(answer(FORKY))[37411]
    del record["time"]
    with pytest.raises(UnreadableJobs, match=r"job 37411: no field time\.submission"):
        read_jobs({"jobs": [record]})
