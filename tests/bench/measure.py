"""What a run costs: upstream calls from slurmrestd's log, CPU and peak RSS from /proc."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.load import WrkResult
from tests.bench.procs import usage

__all__ = ["Row", "UpstreamLog", "fold_kinds", "measure"]

# slurmrestd logs one line per request it routes (without the query string).
_REQUEST = re.compile(rb"operations_router: .* (GET|POST|DELETE|PUT|PATCH) (/\S*)")
_JOB_ID = re.compile(r"/job/[0-9]+")


class UpstreamLog:
    """Requests slurmrestd logged since :meth:`mark`, read from where the last mark left off."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._offset = 0
        self.mark()

    def mark(self) -> None:
        """Start counting from the log's current end."""
        self._offset = self.log.stat().st_size if self.log.exists() else 0

    def since_mark(self) -> Counter[str]:
        """``"METHOD /path"`` -> count, for the requests logged since the last :meth:`mark`."""
        counts: Counter[str] = Counter()
        with self.log.open("rb") as f:
            f.seek(self._offset)
            for line in f:
                match = _REQUEST.search(line)
                if match is not None:
                    counts[f"{match[1].decode()} {match[2].decode(errors='replace')}"] += 1
        return counts


@dataclass
class Row:
    """One measured run: who, what, how hard, and the outcome."""

    scenario: str
    target: str
    path: str
    connections: int
    jobs: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    upstream_calls: int
    #: CPU seconds of the target's own processes (gateway, nginx, slurmrestd when direct, ...)
    cpu_seconds: float
    #: sum of the target's processes' VmHWM, MiB
    peak_rss_mib: float
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def upstream_per_1k(self) -> float:
        """Upstream calls per 1,000 client requests."""
        return 1000 * self.upstream_calls / self.requests if self.requests else 0.0

    @property
    def cpu_per_1k(self) -> float:
        """CPU seconds per 1,000 client requests."""
        return 1000 * self.cpu_seconds / self.requests if self.requests else 0.0


def measure(
    *,
    scenario: str,
    target: str,
    path: str,
    connections: int,
    jobs: int,
    pids: Callable[[], Iterable[int]],
    upstream: UpstreamLog,
    run: Callable[[], WrkResult],
) -> Row:
    """Run ``run`` and account for it: wrk's numbers plus upstream calls, CPU and peak RSS."""
    before = usage(pids())
    upstream.mark()
    result = run()
    by_kind = upstream.since_mark()
    after = usage(pids())
    return Row(
        scenario=scenario,
        target=target,
        path=path,
        connections=connections,
        jobs=jobs,
        requests=result.requests,
        seconds=result.seconds,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        upstream_calls=sum(by_kind.values()),
        cpu_seconds=after.cpu - before.cpu,
        peak_rss_mib=after.rss_kib / 1024,
        extra={"upstream_by_kind": fold_kinds(by_kind)},
    )


def fold_kinds(counts: Counter[str]) -> dict[str, int]:
    """Upstream calls by kind, ``/job/<id>`` paths folded into ``/job/{id}``."""
    kinds: Counter[str] = Counter()
    for key, n in counts.items():
        kinds[_JOB_ID.sub(r"/job/{id}", key)] += n
    return dict(sorted(kinds.items()))
