"""The gateway's Prometheus metrics: one registry per application, never the global default one.

What is counted where:

- requests and their duration: the ``observe`` step (server/pipeline/observe.py), once per
  answer, labelled by operation id, method, status and authorization decision;
- upstream calls and their failures: ``send_as`` (server/upstream/acting.py), the one place every
  call to slurmrestd passes;
- the cache, the SlurmUser token, the upstream gate, the rate limits and the process: read when
  scraped, by the collectors in server/ops/collectors.py (the cache's own counters,
  :class:`~.cache.store.CacheStats`, are exported, not counted twice).

Label values come from fixed sets (operation ids of the routing table, known methods, statuses,
decisions, purposes, kinds), never from user names or raw paths, so the number of series stays
bounded. docs/operations.md lists every metric.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from slurmgate.server.ops.collectors import (
    CacheCollector,
    EventsCollector,
    LimitsCollector,
    TokenCollector,
)

if TYPE_CHECKING:
    from slurmgate.server.cache.store import ResponseCache
    from slurmgate.server.events.hub import JobEvents
    from slurmgate.server.ops.limits import RateLimits
    from slurmgate.server.upstream.gate import UpstreamGate
    from slurmgate.server.upstream.token import SlurmUserToken

__all__ = ["LATENCY_BUCKETS", "METHODS", "Metrics", "RequestCollector", "RequestTally"]

#: Seconds: a cache hit takes about a millisecond, an upstream call up to upstream.timeout (60 s).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Methods kept as label values; any other is counted as "other" (clients choose the method).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_CHILDREN = 10_000
_REQUESTS = "slurmgate_requests"
_DURATION = "slurmgate_request_duration_seconds"
_REQUEST_LABELS = ["operation", "method", "status", "decision"]


class Metrics:
    """The registry of one gateway application and the metrics the pipeline updates."""

    def __init__(
        self,
        *,
        cache: Callable[[], ResponseCache | None],
        cache_backend: str,
        token: Callable[[], SlurmUserToken | None],
        gate: Callable[[], UpstreamGate | None] = lambda: None,
        limits: Callable[[], RateLimits | None] = lambda: None,
        events: Callable[[], JobEvents | None] = lambda: None,
    ) -> None:
        """``cache``, ``token``, ``gate`` and ``limits`` return the app's cache, SlurmUser token
        manager, upstream gate and rate limits when scraped (None before the cleanup contexts
        set them up, or with the cache off)."""
        self.registry = CollectorRegistry()
        #: requests and their durations, counted in plain dicts and read when scraped
        self.requests = RequestTally()
        self.registry.register(RequestCollector(self.requests))
        self.upstream_seconds = Histogram(
            "slurmgate_upstream_request_duration_seconds",
            "Seconds each call to slurmrestd took, failed ones included, by purpose",
            ["purpose"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "slurmgate_upstream_errors",
            "Calls to slurmrestd that failed, by kind: unavailable (502), timeout (504), "
            "token (no valid SlurmUser token)",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(CacheCollector(cache, cache_backend))
        self.registry.register(TokenCollector(token))
        self.registry.register(LimitsCollector(gate, limits))
        self.registry.register(EventsCollector(events))
        ProcessCollector(namespace="slurmgate", registry=self.registry)

    def request(
        self, *, operation: str, method: str, status: int, decision: str, seconds: float
    ) -> None:
        """Count one answered request."""
        self.requests.add(operation, method, status, decision, seconds)


class RequestTally:
    """Requests by (operation, method, status, decision) and their durations by operation.

    Plain dicts and lists updated on the event loop, read by :class:`RequestCollector` when
    scraped: prometheus-client's Counter and Histogram take a lock and check their state on
    every update, which was 6% of a cache hit.
    """

    def __init__(self) -> None:
        #: (operation, method, status, decision) -> requests; guarded by the event loop
        self.counts: dict[tuple[str, str, int, str], int] = {}
        #: operation -> [count per bucket (not cumulative; the last is +Inf), sum of seconds]
        self.durations: dict[str, tuple[list[int], list[float]]] = {}

    def add(self, operation: str, method: str, status: int, decision: str, seconds: float) -> None:
        """Count one request."""
        key = (operation, method, status, decision)
        counts = self.counts
        if key in counts:
            counts[key] += 1
        else:
            if method not in METHODS:
                key = (operation, "other", status, decision)
            # Bounded like the labels: operation ids, methods, statuses and decisions are fixed
            # sets; past the cap new combinations are dropped rather than grow without end.
            if key in counts or len(counts) < _MAX_CHILDREN:
                counts[key] = counts.get(key, 0) + 1
        tally = self.durations.get(operation)
        if tally is None:
            if len(self.durations) >= _MAX_CHILDREN:
                return
            tally = self.durations[operation] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        tally[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        tally[1][0] += seconds


class RequestCollector:
    """``slurmgate_requests_total`` and ``slurmgate_request_duration_seconds`` from a tally."""

    def __init__(self, tally: RequestTally) -> None:
        self._tally = tally

    def describe(self) -> Iterator[Metric]:
        """The metric names (for the registry's duplicate check)."""
        yield CounterMetricFamily(_REQUESTS, "", labels=_REQUEST_LABELS)
        yield HistogramMetricFamily(_DURATION, "", labels=["operation"])

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        requests = CounterMetricFamily(
            _REQUESTS,
            "Requests answered, by operation id (none: matched nothing), method, status and "
            "authorization decision",
            labels=_REQUEST_LABELS,
        )
        for (operation, method, status, decision), count in sorted(self._tally.counts.items()):
            requests.add_metric([operation, method, str(status), decision], count)
        yield requests
        durations = HistogramMetricFamily(
            _DURATION,
            "Seconds from a request's arrival to its answer, by operation id",
            labels=["operation"],
        )
        bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
        for operation, (buckets, total) in sorted(self._tally.durations.items()):
            cumulative = list(accumulate(buckets))
            durations.add_metric([operation], list(zip(bounds, cumulative, strict=True)), total[0])
        yield durations
