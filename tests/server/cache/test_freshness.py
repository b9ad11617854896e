"""Freshness: upstream time plus buffer, within the policy's bounds."""

from __future__ import annotations

import pytest

from slurmgate.policies.routing import CachePolicy
from slurmgate.server.cache.freshness import bounds, freshness
from slurmgate.server.cache.settings import CacheSettings, FreshnessSettings


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [(0.0, 2.0), (0.5, 2.0), (3.0, 4.0), (8.0, 9.0), (50.0, 10.0)],
)
def test_clamped(upstream: float, expected: float) -> None:
    assert freshness(FreshnessSettings(min=2, max=10, buffer=1), upstream) == expected


def test_defaults_per_policy() -> None:
    settings = CacheSettings()
    assert bounds(settings, CachePolicy.NONE) is None
    short, normal, long = (
        bounds(settings, p) for p in (CachePolicy.SHORT, CachePolicy.NORMAL, CachePolicy.LONG)
    )
    assert short is not None
    assert normal is not None
    assert long is not None
    assert (short.min, short.max) == (1, 10)
    assert (normal.min, normal.max) == (10, 30)
    assert (long.min, long.max) == (30, 60)
    assert 1 <= short.buffer <= normal.buffer <= long.buffer <= 5
    # a slow answer from a loaded cluster stays fresh longer
    assert freshness(short, 4.0) > freshness(short, 0.05)
