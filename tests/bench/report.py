"""The report of a run: markdown tables, target verdicts, profiles, PNG plots, README's table.

Works from the results' JSON (``Results.to_json``), so a report can be rendered again without
running anything (``python -m tests.bench --render results/<date>.json``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.plots import plot_all
from tests.bench.scenarios import JOBS, MIX, NODES

__all__ = ["Verdict", "headline", "render", "update_readme", "verdicts"]

README_BEGIN = "<!-- bench:begin (make bench writes this table) -->"
README_END = "<!-- bench:end -->"
BARE = "bare aiohttp"
NGINX1 = "nginx proxy_cache (1 worker)"
NGINX2 = "nginx proxy_cache (2 workers)"
MEMORY = "slurmgate memory"
REDIS = "slurmgate redis"
OFF = "slurmgate off"
DIRECT = "slurmrestd"
PLAIN = "nginx proxy, no cache (1 worker)"

Data = dict[str, Any]


def _find(data: Data, scenario: str, target: str, path: str, conn: int, jobs: int) -> Data | None:  # noqa: PLR0917
    for row in data["rows"]:
        if (row["scenario"], row["target"], row["path"], row["connections"], row["jobs"]) == (
            scenario,
            target,
            path,
            conn,
            jobs,
        ):
            found: Data = row
            return found
    return None


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{_num(value)} ms"


def _rate(row: Data | None) -> str:
    if row is None:
        return "-"
    if not row["requests"]:
        return f"no answer within {row['seconds']:.0f} s"
    return f"{_num(row['rps'])} req/s, p50 {_ms(row['p50_ms'])}"


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


@dataclass(frozen=True)
class Verdict:
    """One target of issue 7, as measured."""

    target: str
    measured: str
    passed: bool | None
    note: str

    @property
    def mark(self) -> str:
        """pass / MISS / not measured."""
        return {True: "pass", False: "**MISS**", None: "not measured"}[self.passed]


def _ratio_verdict(
    data: Data, name: str, path: str, other: str, *, wanted: float, what: str
) -> Verdict:
    plan = data["plan"]
    conn, jobs = plan["headline"], plan["main_jobs"]
    ours = _find(data, "hit", MEMORY, path, conn, jobs)
    theirs = _find(data, "hit", other, path, conn, jobs)
    if ours is None or theirs is None or not theirs["rps"]:
        return Verdict(name, "-", None, "")
    ratio = ours["rps"] / theirs["rps"]
    measured = (
        f"{_num(ours['rps'])} vs {_num(theirs['rps'])} req/s (c{conn}): **{ratio:.0%}** of {what}"
    )
    if ratio >= wanted:
        return Verdict(name, measured, True, f"{ratio / wanted:.2f}x the target")
    need = theirs["rps"] * wanted
    note = (
        f"short by {(wanted - ratio) * 100:.0f} points; needs {need / ours['rps']:.2f}x its "
        f"throughput ({_num(need)} req/s)"
    )
    return Verdict(name, measured, False, note)


def _ceiling(data: Data) -> str:
    """How far any aiohttp server gets against nginx in this run: the bare server's ratio."""
    plan = data["plan"]
    conn, jobs = plan["headline"], plan["main_jobs"]
    bare = _find(data, "hit", BARE, NODES, conn, jobs)
    nginx = _find(data, "hit", NGINX1, NODES, conn, jobs)
    if bare is None or nginx is None or not nginx["rps"]:
        return ""
    ratio = bare["rps"] / nginx["rps"]
    return f"bare aiohttp, the ceiling of any aiohttp server, reaches {ratio:.0%} of nginx here"


def verdicts(data: Data) -> list[Verdict]:
    """Each target of issue 7 with its measured ratio and whether it was met."""
    plan = data["plan"]
    found = [
        _ratio_verdict(
            data, "Cache hit on nodes: >= 70% of bare aiohttp (per process)", NODES, BARE,
            wanted=0.70, what="bare aiohttp",
        ),
        _ratio_verdict(
            data, "Cache hit on nodes: >= 50% of nginx proxy_cache, same workers (1)", NODES,
            NGINX1, wanted=0.50, what="nginx (1 worker)",
        ),
        _ratio_verdict(
            data, f"Cache hit on the jobs list ({plan['main_jobs']:,} jobs): >= nginx proxy_cache",
            JOBS, NGINX1, wanted=1.0, what="nginx (1 worker)",
        ),
    ]  # fmt: skip
    ceiling = _ceiling(data)
    if ceiling and found[1].passed is False:
        found[1] = dataclasses.replace(found[1], note=f"{found[1].note}; {ceiling}")
    ours = _find(data, "miss", OFF, NODES, 1, plan["main_jobs"])
    theirs = _find(data, "miss", DIRECT, NODES, 1, plan["main_jobs"])
    name = "Cache off: p50 added over direct slurmrestd <= 1 ms on nodes"
    if ours and theirs:
        added = ours["p50_ms"] - theirs["p50_ms"]
        measured = f"p50 {_ms(ours['p50_ms'])} vs {_ms(theirs['p50_ms'])} (c1): **{added:+.2f} ms**"
        ok = added <= 1.0
        note = "" if ok else f"{added - 1:.2f} ms over"
        found.append(Verdict(name, measured, ok, note))
    else:
        found.append(Verdict(name, "-", None, ""))
    stampedes = [s for s in data["stampedes"] if s["target"].startswith("slurmgate")]
    worst = max((s["upstream_calls"] for s in stampedes), default=None)
    name = "Stampede: 1 upstream call per cold key, per cluster of replicas"
    if worst is None:
        found.append(Verdict(name, "-", None, ""))
    else:
        count = stampedes[0]["requests"]
        errors = sum(n for s in stampedes for st, n in s["statuses"].items() if st != "200")
        measured = (
            f"{len(stampedes)} bursts of {count}: at most **{worst}** upstream call(s) per key; "
            f"{errors} non-200 answers"
        )
        over = [
            f"{s['target']} GET {s['path']}: {s['upstream_calls']} calls"
            for s in stampedes
            if s["upstream_calls"] != 1
        ]
        found.append(Verdict(name, measured, worst == 1 and errors == 0, "; ".join(over)))
    name = "Mixed workload: >= 20x fewer upstream calls than requests, no errors"
    mixed = [r for r in data["rows"] if r["scenario"] == "mixed"]
    if not mixed:
        found.append(Verdict(name, "-", None, ""))
    else:
        parts = []
        ok = True
        for row in mixed:
            ratio = row["requests"] / row["upstream_calls"] if row["upstream_calls"] else 0
            ok = ok and ratio >= 20 and row["errors"] == 0
            parts.append(f"{row['target']}: **{ratio:.1f}x**, {row['errors']} errors")
        worst_ratio = min(r["requests"] / r["upstream_calls"] for r in mixed if r["upstream_calls"])
        note = "" if ok else f"worst {worst_ratio:.1f}x: {20 / worst_ratio:.1f}x short"
        found.append(Verdict(name, "; ".join(parts), ok, note))
    return found


def headline(data: Data) -> list[str]:
    """The headline table (README): req/s and p50 at the headline concurrency."""
    plan = data["plan"]
    conn, jobs = plan["headline"], plan["main_jobs"]
    listed, size = data["job_lists"][str(jobs)]
    columns = [
        ("direct slurmrestd", "miss", DIRECT),
        ("nginx proxy_cache (1 worker)", "hit", NGINX1),
        ("nginx proxy_cache (2 workers)", "hit", NGINX2),
        ("bare aiohttp, same bytes", "hit", BARE),
        ("slurmgate, memory cache", "hit", MEMORY),
        ("slurmgate, Redis cache", "hit", REDIS),
    ]
    rows = []
    for label, path in (
        (f"nodes ({_size(data['nodes_bytes'])})", NODES),
        (f"jobs ({_size(size)}, {listed:,} jobs)", JOBS),
    ):
        cells = [label]
        for _, scenario, target in columns:
            row = _find(data, scenario, target, path, conn, jobs)
            cells.append(_rate(row))
        rows.append(cells)
    return _table(["GET", *(c[0] for c in columns)], rows)


def _rows_table(rows: Sequence[Data]) -> list[str]:
    header = [
        "target", "conns", "req/s", "p50", "p99", "errors", "upstream / 1k req",
        "CPU s / 1k req", "peak RSS",
    ]  # fmt: skip
    return _table(
        header,
        (
            [
                r["target"],
                str(r["connections"]),
                _num(r["rps"]),
                _ms(r["p50_ms"]),
                _ms(r["p99_ms"]),
                str(r["errors"]),
                _num(r["upstream_per_1k"]),
                f"{r['cpu_per_1k']:.3f}",
                f"{r['peak_rss_mib']:.0f} MiB",
            ]
            for r in rows
        ),
    )


def _select(data: Data, scenario: str, path: str, jobs: int) -> list[Data]:
    rows = [
        r for r in data["rows"] if (r["scenario"], r["path"], r["jobs"]) == (scenario, path, jobs)
    ]
    return sorted(rows, key=lambda r: (r["connections"], r["target"]))


def _job_counts(data: Data) -> list[str]:
    plan = data["plan"]
    conn = plan["headline"]
    targets = [DIRECT, BARE, NGINX1, NGINX2, MEMORY, REDIS]
    header = [
        "held jobs",
        "listed",
        "jobs list",
        *(f"{t}: hit req/s (c{conn})" for t in targets[1:]),
    ]
    header += ["direct p50 (c1)", "slurmgate off p50 (c1)"]
    rows = []
    for jobs in plan["job_counts"]:
        listed, size = data["job_lists"].get(str(jobs), (0, 0))
        cells = [f"{jobs:,}", f"{listed:,}", _size(size)]
        for target in targets[1:]:
            row = _find(data, "hit", target, JOBS, conn, jobs)
            cells.append(_num(row["rps"]) if row else "-")
        for target in (DIRECT, OFF):
            row = _find(data, "miss", target, JOBS, 1, jobs)
            cells.append(_ms(row["p50_ms"]) if row and row["requests"] else "-")
        rows.append(cells)
    return _table(header, rows)


def _stampede_table(data: Data) -> list[str]:
    return _table(
        ["target", "replicas", "GET", "requests at once", "upstream calls", "statuses", "X-Cache",
         "seconds"],
        (
            [
                s["target"], str(s["replicas"]), s["path"], str(s["requests"]),
                f"**{s['upstream_calls']}**",
                ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items())),
                ", ".join(f"{k or '-'}: {v}" for k, v in sorted(s["outcomes"].items())),
                f"{s['seconds']:.2f}",
            ]
            for s in data["stampedes"]
        ),
    )  # fmt: skip


def _mixed_table(data: Data) -> list[str]:
    rows = [r for r in data["rows"] if r["scenario"] == "mixed"]
    out = _table(
        ["target", "conns", "requests", "req/s", "p50", "p99", "errors", "upstream calls",
         "requests per upstream call", "upstream calls by kind"],
        (
            [
                r["target"], str(r["connections"]), f"{r['requests']:,}", _num(r["rps"]),
                _ms(r["p50_ms"]), _ms(r["p99_ms"]), str(r["errors"]), str(r["upstream_calls"]),
                f"{r['requests'] / r['upstream_calls']:.1f}" if r["upstream_calls"] else "-",
                "; ".join(f"{k}: {v}" for k, v in r["extra"].get("upstream_by_kind", {}).items()),
            ]
            for r in rows
        ),
    )  # fmt: skip
    mix = _table(["request", "per 1,000"], ([k, str(v)] for k, v in MIX.items()))
    return ["The mix:", "", *mix, *out]


def _profiles(data: Data) -> list[str]:
    out: list[str] = []
    for p in data["profiles"]:
        out += [
            f"**{p['target']}, GET {p['path']}, {p['connections']} connections** "
            f"({p['samples']} samples). Own time (innermost frame):",
            "",
            "```",
            *(f"{pct:5.1f}%  {frame}" for pct, frame in p["own"][:12]),
            "```",
            "",
            "Total time (frame anywhere on the stack):",
            "",
            "```",
            *(f"{pct:5.1f}%  {frame}" for pct, frame in p["total"][:15]),
            "```",
            "",
        ]
    return out


def _conditions(data: Data) -> list[str]:
    plan = data["plan"]
    cond = data["conditions"]
    machine = cond.get("machine", {})
    lines = [
        f"One run, started {data['started']}, {data['seconds'] / 60:.1f} minutes. "
        f"Machine: {machine.get('cpus')} CPUs, Linux {machine.get('kernel')}, Python "
        f"{machine.get('python')}; lab suite {machine.get('suite')}, API v0.0.45, the "
        "benchmark's own slurmrestd (same chroot, same slurmctld) so that its log counts only "
        "the benchmark's upstream calls.",
        "",
        f"Load: wrk 4.1 with one thread, {', '.join(map(str, plan['concurrencies']))} "
        f"connections, {plan['duration']:.0f} s per run ({plan['slow_duration']:.0f} s when "
        "slurmrestd answers every jobs-list request); everything on loopback on the same 2 cores "
        "as the servers, so every number is a share of one small machine. Timings are noisy: "
        "treat differences under ~10% as noise. Cache-hit runs set the `short` freshness to "
        "600 s (every request after the warm-up is a hit; nginx `proxy_cache_valid 200 600s`); "
        "the stampede and mixed runs use the defaults. Gateways run with `log_level = "
        '"warning"` (no access log line per request). CPU and peak RSS are the target\'s own '
        "processes (nginx: master and workers; slurmgate Redis variants: plus redis-server, "
        "whose peak RSS accumulates over the run; direct: slurmrestd). Replicas: one wrk per "
        "replica at once, p50 averaged over them weighted by requests, p99 the worst.",
        "",
    ]
    code = cond.get("code")
    if code:
        dirty = code["dirty"]
        lines += [
            f"Code measured: commit {code['head']}"
            + (
                ", with uncommitted changes of other engineers in the shared checkout: "
                + ", ".join(f"`{d}`" for d in dirty[:12])
                + (" ..." if len(dirty) > 12 else "")
                if dirty
                else ", clean"
            )
            + ".",
            "",
        ]
    purge = cond.get("purge")
    if purge:
        lines += [
            f"Before filling, the run waited {purge['waited_seconds']} s for slurmctld to forget "
            f"an earlier run's cancelled jobs ({purge['still_listed']} still listed then).",
            "",
        ]
    for key, sizes in (cond.get("warm_sizes") or {}).items():
        if max(sizes.values()) > 1.05 * min(sizes.values()):
            lines += [
                f"**Warning:** the targets' warm-up answers for {key} differ in size "
                f"({', '.join(f'{t}: {n:,}' for t, n in sizes.items())}): the jobs list changed "
                "between them (other tests of the shared lab), so that comparison is not exact.",
                "",
            ]
    warnings = cond.get("server_warnings") or []
    if warnings:
        lines += ["Warnings the servers logged during the run:", "", "```", *warnings, "```", ""]
    for label in ("before", "after"):
        info = cond.get(label)
        if not info:
            continue
        busy = info["busy"][:6]
        lines.append(
            f"Load average {label} the run: {info['loadavg']}; other processes busy then: "
            + ("; ".join(f"`{b}`" for b in busy) if busy else "none")
            + "."
        )
        lines.append("")
    return lines


def render(data: Data, out: Path, name: str) -> Path:
    """Write ``<out>/<name>.md`` and its PNG plots; the markdown's path."""
    plan = data["plan"]
    jobs = plan["main_jobs"]
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_all(data, out, name)
    lines = [f"# Benchmark {name}", "", *_conditions(data)]
    lines += ["## Headline", "", *headline(data)]
    lines += ["## Targets (issue 7)", ""]
    lines += _table(
        ["target", "measured", "verdict", "note"],
        ([v.target, v.measured, v.mark, v.note] for v in verdicts(data)),
    )
    for title, scenario, path in (
        ("Cache hits: nodes", "hit", NODES),
        (f"Cache hits: jobs list ({jobs:,} jobs)", "hit", JOBS),
        ("Cache off (misses): nodes", "miss", NODES),
        (f"Cache off (misses): jobs list ({jobs:,} jobs)", "miss", JOBS),
        ("3 replicas sharing Redis: nodes", "replicas", NODES),
        (f"3 replicas sharing Redis: jobs list ({jobs:,} jobs)", "replicas", JOBS),
    ):
        rows = _select(data, scenario, path, jobs)
        if rows:
            lines += [f"## {title}", "", *_rows_table(rows)]
    lines += ["## Job counts: the jobs list", "", *_job_counts(data)]
    lines += ["## Stampede: identical requests on a cold key", "", *_stampede_table(data)]
    lines += ["## Mixed workload", "", *_mixed_table(data)]
    lines += ["## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Profiles (py-spy, slurmgate under wrk)", "", *_profiles(data)]
    # The analysis of a run is written by a person after reading it; re-rendering keeps it.
    analysis = out / f"{name}-analysis.md"
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    report = out / f"{name}.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


def update_readme(readme: Path, data: Data, report: Path) -> None:
    """Replace the table between README's bench markers with this run's headline."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise RuntimeError(f"{readme} has no {README_BEGIN!r} ... {README_END!r} markers")
    plan = data["plan"]
    relative = report.relative_to(readme.parent) if report.is_relative_to(readme.parent) else report
    marks = ", ".join(f"{v.mark.strip('*')}" for v in verdicts(data))
    block = [
        README_BEGIN,
        f"Measured by `make bench` on {data['started'][:10]} (one run, 2 cores, loopback, "
        f"wrk -t1 -c{plan['headline']}, Slurm 26.05 lab with {plan['main_jobs']:,} held jobs; "
        f"report: [{relative}]({relative})):",
        "",
        *headline(data),
        f"Targets of issue 7 ({marks}):",
        "",
        *_table(
            ["target", "measured", "verdict"],
            ([v.target, v.measured, v.mark] for v in verdicts(data)),
        ),
        README_END,
    ]
    readme.write_text(pattern.sub(lambda _: "\n".join(block), text))
