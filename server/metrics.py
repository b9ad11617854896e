"""The gateway's Prometheus metrics: one registry per application, never the global default one.

What is counted where:

- requests and their duration: the ``observe`` step (server/pipeline/observe.py), once per
  answer, labelled by operation id, method, status and authorization decision;
- upstream calls and their failures: ``send_as`` (server/upstream/acting.py), the one place every
  call to slurmrestd passes;
- the cache, the SlurmUser token, the upstream gate, the rate limits and the process: read when
  scraped, by the collectors in server/collectors.py (the cache's own counters,
  :class:`~.cache.store.CacheStats`, are exported, not counted twice).

Label values come from fixed sets (operation ids of the routing table, known methods, statuses,
decisions, purposes, kinds), never from user names or raw paths, so the number of series stays
bounded. docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

from slurmgate.server.collectors import CacheCollector, LimitsCollector, TokenCollector

if TYPE_CHECKING:
    from slurmgate.server.cache.store import ResponseCache
    from slurmgate.server.limits import RateLimits
    from slurmgate.server.upstream.gate import UpstreamGate
    from slurmgate.server.upstream.token import SlurmUserToken

__all__ = ["LATENCY_BUCKETS", "METHODS", "Metrics"]

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
    ) -> None:
        """``cache``, ``token``, ``gate`` and ``limits`` return the app's cache, SlurmUser token
        manager, upstream gate and rate limits when scraped (None before the cleanup contexts
        set them up, or with the cache off)."""
        self.registry = CollectorRegistry()
        #: (operation, method, status, decision) -> the children request() updates, so that the
        #: request path does one dict lookup instead of two labels() calls
        self._children: dict[tuple[str, str, int, str], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "slurmgate_requests",
            "Requests answered, by operation id (none: matched nothing), method, status and "
            "authorization decision",
            ["operation", "method", "status", "decision"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "slurmgate_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by operation id",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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
        ProcessCollector(namespace="slurmgate", registry=self.registry)

    def request(
        self, *, operation: str, method: str, status: int, decision: str, seconds: float
    ) -> None:
        """Count one answered request."""
        key = (operation, method, status, decision)
        children = self._children.get(key)
        if children is None:
            label = method if method in METHODS else "other"
            children = (
                self.requests.labels(operation, label, str(status), decision),
                self.request_seconds.labels(operation),
            )
            # Bounded like the labels (an unknown method is one key per method name: capped).
            if len(self._children) < _MAX_CHILDREN:
                self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)
