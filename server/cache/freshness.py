"""How long an answer stays fresh: the upstream's generation time plus a buffer, within bounds."""

from __future__ import annotations

from slurmgate.policies.routing import CachePolicy
from slurmgate.server.cache.settings import CacheSettings, FreshnessSettings

__all__ = ["bounds", "freshness"]


def bounds(settings: CacheSettings, policy: CachePolicy) -> FreshnessSettings | None:
    """The configured bounds of ``policy``; None for policy none (never cached)."""
    if policy is CachePolicy.SHORT:
        return settings.short
    if policy is CachePolicy.NORMAL:
        return settings.normal
    if policy is CachePolicy.LONG:
        return settings.long
    return None


def freshness(bounds: FreshnessSettings, upstream_seconds: float) -> float:
    """Seconds an answer that took ``upstream_seconds`` to generate stays fresh.

    A slow answer comes from a loaded slurmctld; keeping it longer sheds load when it matters most.
    """
    return min(bounds.max, max(bounds.min, upstream_seconds + bounds.buffer))
