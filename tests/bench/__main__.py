"""``python -m tests.bench``: run the benchmark, write the report, update README's table.

``--quick`` is a short rehearsal (100 jobs, short runs) for developing the harness; its report
goes to the working folder, never to ``results/`` or README. ``--render FILE.json`` re-renders a
report from a run's saved results without running anything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tests.bench.report import render, update_readme
from tests.bench.run import Plan, run

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[2] / "README.md"
REPO_BUILD = README.parent / "build"

QUICK = Plan(
    job_counts=(100,),
    main_jobs=100,
    concurrencies=(1, 16),
    duration=2.0,
    slow_duration=2.0,
    stampede=100,
    mixed_connections=16,
    mixed_duration=4.0,
    profile_seconds=3.0,
)


def _free_name(out: Path, day: str) -> str:
    """``day``, or ``day-2``, ``day-3``... for a later run the same day: earlier reports and
    their written analyses are kept."""
    if not (out / f"{day}.json").exists():
        return day
    number = 2
    while (out / f"{day}-{number}.json").exists():
        number += 1
    return f"{day}-{number}"


def main() -> None:
    """Parse arguments, run, write."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short rehearsal")
    parser.add_argument("--out", type=Path, help="folder for the report (default: results/)")
    parser.add_argument("--render", type=Path, help="re-render a report from a results JSON")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args()
    if args.render:
        data = json.loads(args.render.read_text())
        out = (args.out or args.render.parent).resolve()
        name = args.render.stem
    else:
        results = run(QUICK if args.quick else Plan())
        data = json.loads(results.to_json())
        out = args.out or (REPO_BUILD / "bench-quick" if args.quick else RESULTS)
        out.mkdir(parents=True, exist_ok=True)
        name = _free_name(out, time.strftime("%Y-%m-%d"))
        (out / f"{name}.json").write_text(results.to_json() + "\n")
    report = render(data, out, name)
    print(f"bench: report in {report}", flush=True)
    if not args.no_readme and not args.quick:
        update_readme(README, data, report)
        print(f"bench: headline table updated in {README}", flush=True)


if __name__ == "__main__":
    main()
