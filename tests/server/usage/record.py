"""Record slurmdbd's job records for the usage unit tests.

``python -m tests.server.usage.record START END [LABEL]`` (seconds since the epoch) writes
``recordings/<suite>-<version>-<label>-jobs.json`` for the newest API version of each suite, as
slurmrestd answered ``GET /slurmdb/<version>/jobs`` with the query the gateway sends for that
window (``meta.client``, which names this host's connection, removed). The recordings in this
folder hold jobs that ran in the lab as alice, bob and carol in physics and chem, finished ones
and ones still running when recorded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from urllib.parse import urlencode

from tests.lab.env import LabSuite, load_lab
from tests.lab.rest import rest_get

HERE = Path(__file__).parent / "recordings"


def query(start: int, end: int) -> str:
    """The query the gateway sends for one slice (server/endpoints/usage.py)."""
    return urlencode(
        {
            "start_time": start,
            "end_time": end,
            "skip_steps": "true",
            "disable_truncate_usage_time": "true",
            "show_duplicates": "true",
        }
    )


def record(suite: LabSuite, start: int, end: int, label: str) -> None:
    """Write the answer of ``suite``'s newest API version."""
    version = suite.versions[-1]
    status, data = rest_get(
        suite,  # type: ignore[arg-type]
        f"/slurmdb/{version}/jobs?{query(start, end)}",
    )
    assert status == 200, f"{suite.name}: {status}"
    data["meta"].pop("client", None)
    path = HERE / f"{suite.name}-{version}-{label}-jobs.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(path, len(data["jobs"]), "jobs")


def main() -> None:
    """Record every suite."""
    parser = argparse.ArgumentParser()
    parser.add_argument("start", type=int)
    parser.add_argument("end", type=int)
    parser.add_argument("label", nargs="?", default="lab")
    args = parser.parse_args()
    for suite in load_lab().suites.values():
        record(suite, args.start, args.end, args.label)


if __name__ == "__main__":
    main()
