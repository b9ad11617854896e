"""Prometheus collectors read when ``/metrics`` is scraped: the response cache, the SlurmUser
token, the upstream gate, the rate limits and the job events. They export what those objects
already keep (:class:`~.cache.store.CacheStats`, the token's times, the gate's and limiters'
counters, the events' :class:`~.events.hub.EventStats`), so
nothing is counted twice and the hot path pays nothing for these metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from slurmgate.server.cache.store import ResponseCache
    from slurmgate.server.events.hub import JobEvents
    from slurmgate.server.ops.limits import RateLimits
    from slurmgate.server.upstream.gate import UpstreamGate
    from slurmgate.server.upstream.token import SlurmUserToken

__all__ = ["CacheCollector", "EventsCollector", "LimitsCollector", "TokenCollector"]

#: CacheStats field -> (metric name without _total, help); requests by outcome are apart.
_CACHE_COUNTERS = (
    ("shared", "slurmgate_cache_shared", "Misses answered by another request's upstream call"),
    ("peer_fills", "slurmgate_cache_peer_fills", "Misses answered by another replica's fill"),
    ("fetches", "slurmgate_cache_fetches", "Upstream calls made to fill the cache"),
    ("stores", "slurmgate_cache_stores", "Answers stored"),
    ("not_stored", "slurmgate_cache_not_stored", "Answers not stored because they are errors"),
    ("invalidations", "slurmgate_cache_invalidations", "Writes that invalidated cache groups"),
    ("backend_errors", "slurmgate_cache_backend_errors", "Failed or timed-out backend operations"),
)
#: X-Cache value (lower case) -> CacheStats field
_OUTCOMES = (("hit", "hits"), ("miss", "misses"), ("stale", "stale"), ("bypass", "bypasses"))


class CacheCollector:
    """The cache's counters and state; nothing while the cache is off (or not yet set up)."""

    def __init__(self, cache: Callable[[], ResponseCache | None], backend: str) -> None:
        self._cache = cache
        self._backend = backend

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading the cache (for the registry's duplicate check)."""
        yield CounterMetricFamily("slurmgate_cache_requests", "", labels=["outcome"])
        for _, name, _ in _CACHE_COUNTERS:
            yield CounterMetricFamily(name, "")
        yield GaugeMetricFamily("slurmgate_cache_available", "", labels=["backend"])
        yield GaugeMetricFamily("slurmgate_cache_fills_in_flight", "")
        yield GaugeMetricFamily("slurmgate_cache_fill_waiters", "")

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        cache = self._cache()
        if cache is None:
            return
        stats = cache.stats
        requests = CounterMetricFamily(
            "slurmgate_cache_requests",
            "Requests of cached routes by what the cache did (X-Cache): hit, miss, stale, bypass",
            labels=["outcome"],
        )
        for outcome, field in _OUTCOMES:
            requests.add_metric([outcome], getattr(stats, field))
        yield requests
        for field, name, text in _CACHE_COUNTERS:
            yield CounterMetricFamily(name, text, value=getattr(stats, field))
        available = GaugeMetricFamily(
            "slurmgate_cache_available",
            "1 while the cache backend is used, 0 while it is left alone after a failure",
            labels=["backend"],
        )
        available.add_metric([self._backend], 1.0 if cache.available else 0.0)
        yield available
        yield GaugeMetricFamily(
            "slurmgate_cache_fills_in_flight",
            "Upstream calls under way to fill the cache (one per key: single-flight)",
            value=len(cache.flights),
        )
        yield GaugeMetricFamily(
            "slurmgate_cache_fill_waiters",
            "Requests waiting for those calls, their leaders included",
            value=cache.flights.waiting,
        )


class TokenCollector:
    """The SlurmUser token the gateway sends upstream: validity, age, time left, failures."""

    def __init__(self, token: Callable[[], SlurmUserToken | None]) -> None:
        self._token = token

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading the token manager."""
        for name in _TOKEN_GAUGES:
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[Metric]:
        """The current values; age and time left only while there is a token."""
        token = self._token()
        if token is None:
            return
        yield GaugeMetricFamily(
            "slurmgate_slurm_user_token_valid",
            "1 while the gateway has a SlurmUser token that has not expired, else 0",
            value=1.0 if token.valid else 0.0,
        )
        yield GaugeMetricFamily(
            "slurmgate_slurm_user_token_renewal_failures",
            "Consecutive failed renewals of the SlurmUser token (0 after a success)",
            value=token.failures,
        )
        age, expires_in = token.age, token.expires_in
        if age is not None:
            yield GaugeMetricFamily(
                "slurmgate_slurm_user_token_age_seconds",
                "Seconds since the current SlurmUser token was issued",
                value=age,
            )
        if expires_in is not None:
            yield GaugeMetricFamily(
                "slurmgate_slurm_user_token_expires_in_seconds",
                "Seconds until the current SlurmUser token expires (negative once it has)",
                value=expires_in,
            )


_TOKEN_GAUGES = (
    "slurmgate_slurm_user_token_valid",
    "slurmgate_slurm_user_token_renewal_failures",
    "slurmgate_slurm_user_token_age_seconds",
    "slurmgate_slurm_user_token_expires_in_seconds",
)


class LimitsCollector:
    """The upstream gate (slots in use, queue, refusals) and the rate limits (refusals, buckets)."""

    def __init__(
        self,
        gate: Callable[[], UpstreamGate | None],
        limits: Callable[[], RateLimits | None],
    ) -> None:
        self._gate = gate
        self._limits = limits

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading the gate or the limits."""
        yield GaugeMetricFamily("slurmgate_upstream_in_flight", "")
        yield GaugeMetricFamily("slurmgate_upstream_queued", "")
        yield CounterMetricFamily("slurmgate_upstream_rejected", "", labels=["reason"])
        yield CounterMetricFamily("slurmgate_rate_limited", "", labels=["kind"])
        yield GaugeMetricFamily("slurmgate_rate_limit_buckets", "", labels=["kind"])

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        gate = self._gate()
        if gate is not None:
            yield GaugeMetricFamily(
                "slurmgate_upstream_in_flight",
                "Calls to slurmrestd holding one of upstream.max_concurrency slots",
                value=gate.in_flight,
            )
            yield GaugeMetricFamily(
                "slurmgate_upstream_queued",
                "Calls to slurmrestd waiting for a slot",
                value=gate.queued,
            )
            rejected = CounterMetricFamily(
                "slurmgate_upstream_rejected",
                "Calls to slurmrestd refused with 503: queue_full (upstream.max_queue), "
                "caller_share (upstream.max_queue_per_caller), queue_timeout",
                labels=["reason"],
            )
            rejected.add_metric(["queue_full"], gate.rejected_full)
            rejected.add_metric(["caller_share"], gate.rejected_caller)
            rejected.add_metric(["queue_timeout"], gate.rejected_timeout)
            yield rejected
        limits = self._limits()
        if limits is not None:
            tables = (("caller", limits.callers), ("anonymous", limits.anonymous_buckets))
            refused = CounterMetricFamily(
                "slurmgate_rate_limited",
                "Requests refused with 429: caller (a token or a MUNGE user), anonymous (no "
                "valid credentials, per source address)",
                labels=["kind"],
            )
            buckets = GaugeMetricFamily(
                "slurmgate_rate_limit_buckets",
                "Callers whose rate-limit bucket is not full (bounded by limits.max_tracked)",
                labels=["kind"],
            )
            for kind, table in tables:
                refused.add_metric([kind], table.refused)
                buckets.add_metric([kind], len(table))
            yield refused
            yield buckets


class EventsCollector:
    """The job events: streams open, polls, events published, streams ended by reason."""

    def __init__(self, events: Callable[[], JobEvents | None]) -> None:
        self._events = events

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading the events."""
        yield GaugeMetricFamily("slurmgate_events_subscribers", "")
        yield CounterMetricFamily("slurmgate_events_streams", "")
        yield CounterMetricFamily("slurmgate_events_streams_ended", "", labels=["reason"])
        yield CounterMetricFamily("slurmgate_events_polls", "", labels=["outcome"])
        yield CounterMetricFamily("slurmgate_events_published", "")

    def collect(self) -> Iterator[Metric]:
        """The current values (nothing before the app has started)."""
        events = self._events()
        if events is None:
            return
        stats = events.stats
        yield GaugeMetricFamily(
            "slurmgate_events_subscribers", "Job event streams open", value=events.subscribers
        )
        yield CounterMetricFamily(
            "slurmgate_events_streams", "Job event streams started", value=stats.streams
        )
        ended = CounterMetricFamily(
            "slurmgate_events_streams_ended",
            "Job event streams ended, by reason: slow_consumer, shutdown, max_duration, "
            "credentials, client_gone",
            labels=["reason"],
        )
        for reason, count in stats.ended.items():
            ended.add_metric([reason], count)
        yield ended
        polls = CounterMetricFamily(
            "slurmgate_events_polls",
            "Polls of slurmrestd's jobs by the job events' poller: ok, failed",
            labels=["outcome"],
        )
        polls.add_metric(["ok"], stats.polls - stats.failed_polls)
        polls.add_metric(["failed"], stats.failed_polls)
        yield polls
        yield CounterMetricFamily(
            "slurmgate_events_published",
            "Job events published (once each, however many streams got it)",
            value=stats.events,
        )
