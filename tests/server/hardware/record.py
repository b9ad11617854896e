"""Record the lab's nodes and partitions for the hardware unit tests.

``python -m tests.server.hardware.record [LABEL]`` writes
``recordings/<suite>-<version>-<label>-{nodes,partitions}.json`` for the newest API version of each
suite, as slurmrestd answered ``GET /slurm/<version>/nodes`` and ``/partitions`` (the
``meta.client`` block, which names this host's connection, removed). The lab's jobs end at once
(its slurmd cannot run them) and its node states are shared by every test, so the recordings are
of idle nodes; the unit tests derive busy, drained and GPU nodes from them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tests.lab.env import LabSuite, load_lab
from tests.lab.rest import rest_get

HERE = Path(__file__).parent / "recordings"


def record(suite: LabSuite, label: str) -> None:
    """Write the two answers of ``suite``'s newest API version."""
    version = suite.versions[-1]
    for what in ("nodes", "partitions"):
        status, data = rest_get(suite, f"/slurm/{version}/{what}")  # type: ignore[arg-type]
        assert status == 200, f"{suite.name} {what}: {status}"
        data["meta"].pop("client", None)
        path = HERE / f"{suite.name}-{version}-{label}-{what}.json"
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(path)


def main() -> None:
    """Record every suite."""
    parser = argparse.ArgumentParser()
    parser.add_argument("label", nargs="?", default="idle")
    args = parser.parse_args()
    for suite in load_lab().suites.values():
        record(suite, args.label)


if __name__ == "__main__":
    main()
