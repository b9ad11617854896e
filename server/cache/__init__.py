"""The response cache, without HTTP: backends (aiocache memory or Redis), keys, freshness,
single-flight and the store that ties them together. The pipeline step is server/pipeline/cache.py.
"""

from __future__ import annotations

from slurmgate.server.cache.backends import Backend, MemoryBackend, RedisBackend, make_backend
from slurmgate.server.cache.control import Directives, parse_directives
from slurmgate.server.cache.entry import Entry
from slurmgate.server.cache.freshness import bounds, freshness
from slurmgate.server.cache.keys import KeySpace, has_update_time, key_material
from slurmgate.server.cache.settings import CacheSettings, FreshnessSettings
from slurmgate.server.cache.store import Answer, CacheStats, Filled, Lookup, ResponseCache

__all__ = [
    "Answer",
    "Backend",
    "CacheSettings",
    "CacheStats",
    "Directives",
    "Entry",
    "Filled",
    "FreshnessSettings",
    "KeySpace",
    "Lookup",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "bounds",
    "freshness",
    "has_update_time",
    "key_material",
    "make_backend",
    "parse_directives",
]
