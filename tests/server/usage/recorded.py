"""The recorded slurmdbd answers (recordings/, made by record.py), and records derived from them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

__all__ = ["FORKY", "TRIXIE", "answer", "by_id", "derived"]

RECORDINGS = Path(__file__).parent / "recordings"
FORKY = "forky-v0.0.45-lab"
TRIXIE = "trixie-v0.0.42-lab"


def answer(name: str) -> dict[str, Any]:
    """A recorded ``/slurmdb/<version>/jobs`` answer."""
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}-jobs.json").read_text())
    return data


def by_id(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The answer's job records by job id."""
    return {job["job_id"]: job for job in data["jobs"]}


def derived(record: dict[str, Any], **changes: object) -> dict[str, Any]:
    """A copy of a recorded job with fields replaced: top-level keys, or ``time_<key>`` for
    ``time.<key>`` and ``allocated`` for ``tres.allocated``."""
    job = copy.deepcopy(record)
    for key, value in changes.items():
        if key.startswith("time_"):
            job["time"][key.removeprefix("time_")] = value
        elif key == "allocated":
            job["tres"]["allocated"] = value
        else:
            job[key] = value
    return job
