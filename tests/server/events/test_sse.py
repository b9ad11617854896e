"""SSE framing (server/events/sse.py): what a standard client reads back from a frame."""

from __future__ import annotations

import json
from typing import Any

from slurmgate.server.events import sse


def read(frame: bytes) -> tuple[dict[str, str], list[str], Any]:
    """The fields, the data lines and the data as a client following the standard joins them."""
    assert frame.endswith(b"\n\n")
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in frame.decode().removesuffix("\n\n").split("\n"):
        name, _, value = line.partition(": ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    return fields, data, json.loads("\n".join(data))


def test_an_event_is_one_data_line() -> None:
    data = {"id": "e-1", "event": "changed", "job": {"job_id": 7, "name": "a\nb"}}
    fields, lines, decoded = read(sse.frame("changed", data, event_id="e-1"))
    assert fields == {"id": "e-1", "event": "changed"}
    assert len(lines) == 1
    assert decoded == data


def test_a_snapshot_puts_each_job_on_a_line_of_its_own() -> None:
    jobs = [{"job_id": n, "name": "x" * 200, "note": "line\nbreak"} for n in range(1000)]
    data = {"id": "e-9", "event": "snapshot", "reason": None, "time": "t", "jobs": jobs}
    fields, lines, decoded = read(sse.frame("snapshot", data, event_id="e-9", spread="jobs"))
    assert fields == {"id": "e-9", "event": "snapshot"}
    assert decoded == data
    assert len(lines) == 1 + len(jobs)
    assert max(len(line) for line in lines) < 300  # no line grows with the number of jobs
    assert lines[0] == '{"id":"e-9","event":"snapshot","reason":null,"time":"t","jobs":['


def test_a_snapshot_without_jobs_is_one_line() -> None:
    data: dict[str, object] = {
        "id": "e-0",
        "event": "snapshot",
        "reason": None,
        "time": "t",
        "jobs": [],
    }
    _, lines, decoded = read(sse.frame("snapshot", data, spread="jobs"))
    assert lines == ['{"id":"e-0","event":"snapshot","reason":null,"time":"t","jobs":[]}']
    assert decoded == data


def test_a_single_job_and_a_lone_list() -> None:
    data = {"jobs": [{"job_id": 1}]}
    _, lines, decoded = read(sse.frame("snapshot", data, spread="jobs"))
    assert lines == ['{"jobs":[', '{"job_id":1}]}']
    assert decoded == data
