"""PNG plots of a run (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from tests.bench.scenarios import JOBS, NODES

__all__ = ["plot_all"]

Data = dict[str, Any]
_HIT_TARGETS = (
    "bare aiohttp",
    "nginx proxy_cache (1 worker)",
    "nginx proxy_cache (2 workers)",
    "slurmgate memory",
    "slurmgate redis",
)
_MISS_TARGETS = ("slurmrestd", "nginx proxy, no cache (1 worker)", "slurmgate off")


def _rows(data: Data, scenario: str, path: str, jobs: int) -> list[Data]:
    return [
        r for r in data["rows"] if (r["scenario"], r["path"], r["jobs"]) == (scenario, path, jobs)
    ]


def _grouped(ax: Axes, rows: list[Data], targets: tuple[str, ...], value: str, title: str) -> None:
    conns = sorted({r["connections"] for r in rows})
    width = 0.8 / len(targets)
    for i, target in enumerate(targets):
        heights = []
        for conn in conns:
            match = [r for r in rows if r["target"] == target and r["connections"] == conn]
            heights.append(match[0][value] if match else 0.0)
        positions = [c + (i - (len(targets) - 1) / 2) * width for c in range(len(conns))]
        ax.bar(positions, heights, width, label=target)
    ax.set_xticks(range(len(conns)), [f"{c} conns" for c in conns])
    ax.set_title(title)
    ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def plot_all(data: Data, out: Path, name: str) -> list[Path]:
    """Write the run's plots into ``out``; their paths."""
    plan = data["plan"]
    jobs = plan["main_jobs"]
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    _grouped(
        axes[0], _rows(data, "hit", NODES, jobs), _HIT_TARGETS, "rps", "cache hit: nodes, req/s"
    )
    _grouped(
        axes[1], _rows(data, "hit", JOBS, jobs), _HIT_TARGETS, "rps",
        f"cache hit: jobs list ({jobs:,} jobs), req/s",
    )  # fmt: skip
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    written.append(out / f"{name}-hits.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    nodes_miss = _rows(data, "miss", NODES, jobs)
    _grouped(axes[0], nodes_miss, _MISS_TARGETS, "p50_ms", "cache off: nodes, p50 ms")
    _grouped(axes[1], nodes_miss, _MISS_TARGETS, "p99_ms", "cache off: nodes, p99 ms")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    written.append(out / f"{name}-misses.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    counts = list(plan["job_counts"])
    if len(counts) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
        for target in _HIT_TARGETS:
            points = [
                (n, r["rps"])
                for n in counts
                for r in _rows(data, "hit", JOBS, n)
                if r["target"] == target and r["connections"] == plan["headline"]
            ]
            if points:
                axes[0].plot(*zip(*points, strict=True), marker="o", label=target)
        for target in ("slurmrestd", "slurmgate off"):
            points = [
                (n, r["p50_ms"])
                for n in counts
                for r in _rows(data, "miss", JOBS, n)
                if r["target"] == target and r["connections"] == 1 and r["requests"]
            ]
            if points:
                axes[1].plot(*zip(*points, strict=True), marker="o", label=target)
        axes[0].set_title(f"jobs list, cache hit, req/s ({plan['headline']} conns)")
        axes[1].set_title("jobs list, cache off, p50 ms (1 conn)")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("held jobs")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / f"{name}-job-counts.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    rows = [r for r in _rows(data, "hit", NODES, jobs) if r["connections"] == plan["headline"]]
    ax.barh([r["target"] for r in rows], [r["cpu_per_1k"] for r in rows])
    ax.set_title(f"CPU seconds per 1,000 cache hits on nodes ({plan['headline']} conns)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    written.append(out / f"{name}-cpu.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)
    return written
