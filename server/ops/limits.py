"""Per-caller rate limits: a token bucket per token, per MUNGE user and per anonymous address.

No aiohttp here: the pipeline step (server/pipeline/limit.py) asks :meth:`RateLimits.caller` or
:meth:`RateLimits.anonymous` and turns a refusal into 429.

Each bucket is kept as the generic cell rate algorithm keeps it: one float per caller, the
*theoretical arrival time* (TAT). A request at ``now`` is allowed when
``max(TAT, now) + interval - now <= burst * interval`` and then moves the TAT on by one
``interval`` (1 / rate); otherwise it is refused, and the difference is how long to wait. That
is exactly a bucket of ``burst`` requests refilled at ``rate`` per second, with no refill
arithmetic, no per-caller object and no lock: a check is a dict lookup, a few float operations
and a dict store, all on the event loop without an await.

A bucket whose TAT has passed is full, exactly as if it had never been seen, so it can be
forgotten at any moment without changing any answer: that is how the tables stay bounded.
Every :data:`SWEEP_INTERVAL` seconds (on the next check) the passed ones are dropped, so a
bucket outlives its caller's last request by at most ``burst / rate`` seconds plus that interval;
revoked and idle tokens vanish by themselves. A table that is full of live buckets
(``limits.max_tracked``) refuses new callers rather than letting them through untracked: that is
an attack in progress (every caller with a live bucket has sent a request within seconds), and
failing open would make the limit a matter of using enough names or addresses.

Limits are per process: replicas behind a load balancer each keep their own buckets (a caller
spread over N replicas gets up to N times the rate; docs/operations.md says so).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from slurmgate.server.identity.base import Identity

__all__ = [
    "SWEEP_INTERVAL",
    "Rate",
    "RateLimiter",
    "RateLimits",
    "address_key",
    "resolve",
]

log = logging.getLogger("slurmgate.limits")

#: Seconds between sweeps of a table for buckets that have refilled (and so carry nothing).
SWEEP_INTERVAL = 10.0
#: Least seconds between two sweeps forced by a full table (a sweep is O(table)).
_FULL_SWEEP_INTERVAL = 1.0
#: Seconds of float rounding forgiven: a client exactly at its rate must not be refused because
#: now + interval - now is a few ulps more than interval (clocks count in 1e5..1e7 seconds).
_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate`` requests per second on average, up to ``burst`` at once."""

    rate: float
    burst: int
    #: seconds one request adds to the TAT (1 / rate)
    interval: float = field(init=False, repr=False)
    #: how far ahead of now the TAT may run: burst * interval
    span: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.rate > 0 or math.isnan(self.rate):
            raise ValueError(f"a rate must be more than 0 requests per second, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"a burst must be at least 1, not {self.burst}")
        interval = 1.0 / self.rate
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "span", self.burst * interval)


@functools.lru_cache(maxsize=4096)
def resolve(
    rate: float | None, burst: int | None, default_rate: float | None, default_burst: int | None
) -> Rate | None:
    """The limit that applies: an own ``rate`` replaces the default's rate and burst (its burst
    then defaults to one second's worth), an own ``burst`` alone replaces the default burst.

    ``None`` (or an infinite rate) means no limit. Cached: callers share a few distinct limits.
    """
    if rate is None:
        rate, burst = default_rate, burst if burst is not None else default_burst
    if rate is None or math.isinf(rate):
        return None
    return Rate(rate, burst if burst is not None else max(1, math.ceil(rate)))


@functools.lru_cache(maxsize=16384)
def address_key(remote: str | None) -> str:
    """The bucket of an anonymous request's source: its IPv4 address, or its IPv6 /64.

    One host usually holds a whole /64, so counting IPv6 addresses one by one would let it
    change address for every request. An IPv4-mapped address counts as the IPv4 one.
    """
    if remote is None:
        return "-"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]  # a unix socket peer, say
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """Token buckets by key; see the module docstring. Not thread-safe: one event loop owns it."""

    def __init__(self, *, max_keys: int) -> None:
        self.max_keys = max_keys
        # key -> TAT (same clock as the `now` the caller passes); guarded by the event loop:
        # take() has no await.
        self._tats: dict[str, float] = {}
        self._next_sweep = -math.inf
        self._last_full_sweep = -math.inf
        #: requests refused, and those refused because the table was full (for metrics)
        self.refused = 0
        self.refused_full = 0

    def __len__(self) -> int:
        return len(self._tats)

    def take(self, key: str, now: float, limit: Rate) -> float | None:
        """Count one request of ``key`` at ``now``: None if allowed, else seconds to wait
        (a refusal counted in :attr:`refused`)."""
        tats = self._tats
        tat = tats.get(key)
        if tat is None or tat < now:
            if tat is None and len(tats) >= self.max_keys and not self._room(now):
                self.refused += 1
                self.refused_full += 1
                return _FULL_SWEEP_INTERVAL
            tat = now
        tat += limit.interval
        if tat - now > limit.span + _SLACK:
            self.refused += 1
            return tat - now - limit.span
        tats[key] = tat
        if now >= self._next_sweep:
            self.sweep(now)
        return None

    def sweep(self, now: float) -> int:
        """Forget every bucket that has refilled by ``now``; returns how many."""
        tats = self._tats
        full = [key for key, tat in tats.items() if tat <= now]
        for key in full:
            del tats[key]
        self._next_sweep = now + SWEEP_INTERVAL
        return len(full)

    def _room(self, now: float) -> bool:
        """Sweep a full table (at most once a second); whether a new key fits afterwards."""
        if now - self._last_full_sweep >= _FULL_SWEEP_INTERVAL:
            self._last_full_sweep = now
            self.sweep(now)
            if len(self._tats) >= self.max_keys:
                log.warning(
                    "rate limits: %d callers with live buckets (limits.max_tracked); "
                    "new callers are refused until some refill",
                    len(self._tats),
                )
        return len(self._tats) < self.max_keys


class RateLimits:
    """The limits of one gateway: defaults from the configuration, a token's own from its entry.

    ``callers`` counts tokens (by token name) and MUNGE users (by ``munge:<uid>``: one user,
    one uid); ``anonymous`` counts requests without valid credentials by source
    (:func:`address_key`). The two tables are apart so that no token name can share a bucket
    with an address. :meth:`configure` replaces the limits (on SIGHUP), keeping the buckets.
    """

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: int | None = None,
        munge_rate: float | None = None,
        munge_burst: int | None = None,
        anonymous_rate: float | None = None,
        anonymous_burst: int | None = None,
        max_tracked: int = 100_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.callers = RateLimiter(max_keys=max_tracked)
        self.anonymous_buckets = RateLimiter(max_keys=max_tracked)
        self.configure(
            rate=rate,
            burst=burst,
            munge_rate=munge_rate,
            munge_burst=munge_burst,
            anonymous_rate=anonymous_rate,
            anonymous_burst=anonymous_burst,
            max_tracked=max_tracked,
        )

    def configure(
        self,
        *,
        rate: float | None,
        burst: int | None,
        munge_rate: float | None,
        munge_burst: int | None,
        anonymous_rate: float | None,
        anonymous_burst: int | None,
        max_tracked: int,
    ) -> None:
        """Set the limits; the buckets (what callers have used) stay."""
        self._default = (rate, burst)
        self._token_default = resolve(None, None, rate, burst)
        # MUNGE callers: auth.munge.rate/burst over limits.rate/burst, like a token's own.
        self._munge = resolve(munge_rate, munge_burst, rate, burst)
        self._anonymous = resolve(anonymous_rate, anonymous_burst, None, None)
        self.callers.max_keys = max_tracked
        self.anonymous_buckets.max_keys = max_tracked

    def limit_of(self, identity: Identity) -> Rate | None:
        """The limit that applies to ``identity`` (None: none)."""
        if identity.method == "munge":
            return self._munge
        if identity.rate is None and identity.burst is None:
            return self._token_default
        return resolve(identity.rate, identity.burst, *self._default)

    def caller(self, identity: Identity, now: float) -> tuple[float, Rate] | None:
        """Count a request of ``identity``: None if allowed, else (seconds to wait, its limit)."""
        if identity.method == "munge":
            limit = self._munge
        elif identity.rate is None and identity.burst is None:
            limit = self._token_default
        else:
            limit = resolve(identity.rate, identity.burst, *self._default)
        if limit is None:
            return None
        wait = self.callers.take(identity.name, now, limit)
        return None if wait is None else (wait, limit)

    def anonymous(self, remote: str | None, now: float) -> tuple[float, Rate] | None:
        """Count a request without valid credentials from ``remote``, like :meth:`caller`."""
        limit = self._anonymous
        if limit is None:
            return None
        wait = self.anonymous_buckets.take(address_key(remote), now, limit)
        return None if wait is None else (wait, limit)
