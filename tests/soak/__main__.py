"""``python -m tests.soak`` (``make soak``): the steady soak and the long fuzz, then a report.

Writes ``build/soak/report.md`` and exits 1 when a check fails: an error during the soak, memory
not flat (RSS at the end above the RSS after warm-up plus the larger of 16 MiB and 10%), a gateway
crash, a 5xx the gateway made or a leaked secret during the fuzz, or fewer generated requests
per version than asked for.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab.env import load_lab, start_lab
from tests.server.fuzz import SuiteFuzz, fuzz_suite
from tests.soak.steady import SoakResult, run_soak

REPO = Path(__file__).resolve().parents[2]


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def soak_section(result: SoakResult, suite: str, version: str) -> tuple[list[str], list[str]]:
    """The report's soak section, and the checks that failed."""
    failed = []
    if result.errors:
        failed.append(f"soak: {len(result.errors)} errors, e.g. {result.errors[0]}")
    if result.rss_end > result.rss_allowed:
        failed.append(
            f"soak: RSS grew from {_mib(result.rss_after_warmup)} to {_mib(result.rss_end)} "
            f"(allowed: {_mib(result.rss_allowed)})"
        )
    if not result.alive or result.crashes:
        failed.append(f"soak: gateway died or logged an unhandled error: {result.crashes[:3]}")
    answered = sum(result.statuses.values())
    hits = result.cache.get("HIT", 0)
    cached = sum(n for state, n in result.cache.items() if state != "-")
    lines = [
        "## Steady mixed load",
        "",
        f"slurmgate serve (memory cache) in front of a slurmrestd of its own on the {suite} suite, "
        f"API {version}; the benchmark's mix (tests/bench/scenarios.py MIX) sent at "
        f"{result.rate:g} requests/s for {result.seconds:.0f} s.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| requests sent / answered | {result.sent:,} / {answered:,} |",
        f"| statuses | {dict(sorted(result.statuses.items()))} |",
        f"| errors (not 200, or no answer) | {len(result.errors)} |",
        f"| X-Cache | {dict(sorted(result.cache.items()))} "
        f"(hit ratio {hits / (cached or 1):.1%}) |",
        f"| upstream calls (forward) | {result.upstream_calls:,.0f} "
        f"({result.upstream_calls / (answered or 1) * 1000:.0f} per 1,000 requests) |",
        f"| latency p50 / p99 | {result.percentile(0.5) * 1000:.1f} ms / "
        f"{result.percentile(0.99) * 1000:.1f} ms |",
        f"| held jobs submitted (cancelled after) | {len(result.submitted)} |",
        f"| RSS at start | {_mib(result.rss[0][1])} |",
        f"| RSS after warm-up ({result.warmup:.0f} s) | {_mib(result.rss_after_warmup)} |",
        f"| RSS at the end | {_mib(result.rss_end)} |",
        f"| RSS at most | {_mib(max(kib for _, kib in result.rss))} |",
        f"| flat when the end is at most | {_mib(result.rss_allowed)} (after warm-up + max(16 MiB, "
        "10%)) |",
        f"| gateway alive, no traceback | {result.alive and not result.crashes} |",
        "",
        "RSS every minute: "
        + ", ".join(f"{t / 60:.0f} min {_mib(kib)}" for t, kib in result.rss if int(t) % 60 < 5),
        "",
    ]
    if result.errors:
        lines += ["Errors (first 10):", "", *(f"- `{e}`" for e in result.errors[:10]), ""]
    return lines, failed


def fuzz_section(runs: Sequence[SuiteFuzz], budget: int) -> tuple[list[str], list[str]]:
    """The report's fuzz section, and the checks that failed."""
    failed = []
    lines = [
        "## Fuzzing (schemathesis)",
        "",
        f"Generated requests (positive and negative) from the gateway's own OpenAPI document, at "
        f"least {budget:,} per API version, through slurmgate serve in front of a slurmrestd of "
        "its own (restarted when a request killed it). Writes only with a token limited to an "
        "account that does not exist (tests/server/fuzz.py).",
        "",
        "| suite | version | operations | requests | seconds | statuses | slurmrestd 5xx "
        "relayed | slurmrestd crashes | slurmrestd timeouts | gateway failures |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    crashes, timeouts = [], []
    for run in runs:
        for s in run.versions:
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items()))
            lines.append(
                f"| {run.suite} | {s.version} | {s.operations} | {s.sent:,} | {s.seconds:.0f} | "
                f"{statuses} | {sum(s.upstream_5xx.values())} | {len(s.upstream_crashes)} | "
                f"{len(s.upstream_timeouts)} | {len(s.failures)} |"
            )
            failed += [f"fuzz {run.suite} {s.version}: {f}" for f in s.failures[:10]]
            if s.sent < budget:
                failed.append(f"fuzz {run.suite} {s.version}: only {s.sent} requests")
            crashes += s.upstream_crashes
            timeouts += s.upstream_timeouts
        if not run.alive or run.crashes:
            failed.append(f"fuzz {run.suite}: gateway died or crashed: {run.crashes[:3]}")
        if run.log_leaks:
            failed.append(f"fuzz {run.suite}: secrets in the gateway's log: {run.log_leaks}")
    lines.append("")
    if crashes:
        lines += [
            "Requests after which slurmrestd died (slurmrestd's bugs; the gateway answered 502 "
            "and went on). First 10:",
            "",
            *(f"- `{c[:400]}`" for c in crashes[:10]),
            "",
        ]
    if timeouts:
        lines += [
            "Requests slurmrestd did not answer within upstream.timeout (the gateway answered "
            "504 in time). First 10:",
            "",
            *(f"- `{c[:400]}`" for c in timeouts[:10]),
            "",
        ]
    return lines, failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and the fuzz; write the report; 0 when every check passed."""
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="soak duration")
    parser.add_argument("--rate", type=float, default=40.0, help="soak requests per second")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS counts")
    parser.add_argument("--fuzz", type=int, default=2000, help="fuzz requests per API version")
    parser.add_argument("--fuzz-seconds", type=float, default=600.0, help="per API version")
    parser.add_argument("--suite", default="forky", help="suite of the steady soak")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "soak")
    args = parser.parse_args(argv)
    start_lab()
    lab = load_lab()
    suite = lab.suites[args.suite]
    version = suite.versions[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    # The gateways' and slurmrestds' logs stay in build/soak/work/ for a look after a failure.
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    result = run_soak(
        suite,
        version,
        work / "soak",
        seconds=args.seconds,
        rate=args.rate,
        warmup=args.warmup,
    )
    soak_lines, failed = soak_section(result, args.suite, version)
    print("\n".join(soak_lines), flush=True)
    runs = []
    for name, each in sorted(lab.suites.items()):
        print(f"fuzz: {name} {' '.join(each.versions)}", flush=True)
        run = fuzz_suite(
            each,
            each.versions,
            work / f"fuzz-{name}",
            budget=args.fuzz,
            seconds=args.fuzz_seconds,
        )
        for stats in run.versions:
            print("  " + stats.line(), flush=True)
        runs.append(run)
    fuzz_lines, fuzz_failed = fuzz_section(runs, args.fuzz)
    failed += fuzz_failed
    verdict = "PASS" if not failed else "FAIL"
    report = [
        f"# make soak: {verdict}",
        "",
        f"Run {started} on this machine (2 cores, shared), Slurm lab suites "
        f"{', '.join(sorted(lab.suites))}.",
        "",
        *soak_lines,
        *fuzz_lines,
        "## Checks that failed",
        "",
        *([f"- {f}" for f in failed] or ["none"]),
        "",
    ]
    path = args.out / "report.md"
    path.write_text("\n".join(report))
    print(f"soak: {verdict}; report in {path}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
