"""The ``[cache]`` section of the settings: backend, keys, freshness bounds per policy."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from slurmgate.server.cache.bodyfile import MIN_BYTES
from slurmgate.server.config_types import ConfigPath, PositiveSeconds, Section, Text, parse_url

__all__ = [
    "CacheSettings",
    "FreshnessSettings",
    "LongFreshness",
    "NormalFreshness",
    "ShortFreshness",
]

#: Characters a key prefix may use: it is the start of every Redis key the gateway writes.
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_redis_url(value: str) -> str:
    """redis://host:port/db or rediss://...; credentials go in their own keys, never the URL."""
    url = parse_url(value)
    port = url.port
    if url.scheme not in ("redis", "rediss") or not url.host:
        raise ValueError(
            "must be redis:// or rediss:// followed by a host, e.g. redis://127.0.0.1:6379/0"
        )
    if url.user or url.password:
        raise ValueError(
            "must not hold credentials; use cache.redis_username and cache.redis_password_file"
        )
    if url.query_string or url.fragment or port is None:
        raise ValueError(
            "must be scheme, host, port and optionally /db, e.g. redis://127.0.0.1:6379/0"
        )
    if url.path not in ("", "/") and not re.fullmatch(r"/[0-9]{1,2}", url.path):
        raise ValueError(f"the path must be a database number, e.g. /0, not {url.path!r}")
    return value


def _check_prefix(value: str) -> str:
    if _PREFIX.fullmatch(value) is None:
        raise ValueError(f"must match {_PREFIX.pattern}")
    return value


class FreshnessSettings(Section):
    """How long an answer stays fresh under one cache policy.

    Fresh for (time slurmrestd took to answer + ``buffer``), held between ``min`` and ``max``: an
    answer a loaded cluster was slow to produce stays fresh longer. The subclasses give each
    policy its defaults.
    """

    #: shortest freshness, in seconds
    min: float = Field(ge=0, le=86400)
    #: longest freshness, in seconds
    max: float = Field(gt=0, le=86400)
    #: seconds added to the upstream's generation time
    buffer: float = Field(ge=0, le=3600)

    @model_validator(mode="after")
    def _ordered(self) -> FreshnessSettings:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


class ShortFreshness(FreshnessSettings):
    """Policy short: job and node state, which change by the second."""

    min: float = Field(1.0, ge=0, le=86400)
    max: float = Field(10.0, gt=0, le=86400)
    # 2 s, not 1: clients polling single jobs were 84% of the upstream calls in the benchmark's
    # mixed workload, and a job's state 2 s old is as useful to a poller as one 1 s old.
    buffer: float = Field(2.0, ge=0, le=3600)


class NormalFreshness(FreshnessSettings):
    """Policy normal: partitions, reservations, associations, which change by the minute."""

    min: float = Field(10.0, ge=0, le=86400)
    max: float = Field(30.0, gt=0, le=86400)
    buffer: float = Field(3.0, ge=0, le=3600)


class LongFreshness(FreshnessSettings):
    """Policy long: accounts, QOS, TRES, configuration, which change when an administrator acts."""

    min: float = Field(30.0, ge=0, le=86400)
    max: float = Field(60.0, gt=0, le=86400)
    buffer: float = Field(5.0, ge=0, le=3600)


class CacheSettings(Section):
    """The response cache (docs/caching.md)."""

    #: memory: one process's memory; redis: shared by replicas; off: no cache at all
    backend: Literal["memory", "redis", "off"] = "memory"
    #: redis: where the server is, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS)
    redis_url: Annotated[str, AfterValidator(_check_redis_url)] = "redis://127.0.0.1:6379/0"
    #: redis: ACL user name (Redis 6+); None = the default user
    redis_username: Text | None = None
    #: redis: file holding the password (first line); None = no password
    redis_password_file: ConfigPath | None = None
    #: redis: connections to Redis at most; more operations wait for one (within timeout)
    redis_max_connections: int = Field(32, ge=1, le=4096)
    #: first part of every key; gateways of different clusters sharing a Redis need different ones
    key_prefix: Annotated[str, AfterValidator(_check_prefix)] = "slurmgate"
    #: true when Slurm hides data per user (PrivateData): answers are then kept per user
    per_user: bool = False
    #: seconds an answer is kept after it was generated (for stale-if-error), whatever its freshness
    fallback_lifetime: int = Field(3 * 86400, ge=60, le=30 * 86400)
    #: memory: bytes of answers kept; the least recently used go first
    memory_max_bytes: int = Field(256 << 20, ge=1 << 20, le=1 << 40)
    #: memory: answers from this size up are kept in sealed memory files and sent with sendfile
    #: (one file descriptor each); 0 never does
    memory_file_min_bytes: int = Field(MIN_BYTES, ge=0, le=1 << 40)
    #: redis: bytes of recently read answers each process keeps a copy of, checked against a
    #: small stamp in Redis on every hit instead of reading the whole answer again; 0: none
    redis_local_max_bytes: int = Field(64 << 20, ge=0, le=1 << 40)
    #: seconds one cache operation may take before the cache counts as failing
    timeout: PositiveSeconds = 0.25
    #: redis: seconds reading a whole answer may take (a large jobs list is megabytes); a stalled
    #: connection still fails within ``timeout``, which bounds every socket read
    read_timeout: PositiveSeconds = 10.0
    #: seconds a failing cache is left alone (requests go straight upstream) before a new try
    retry_interval: PositiveSeconds = 5.0
    #: redis: seconds a replica's lock on a miss lasts unless renewed; bounds the wait when the
    #: replica filling the entry dies
    lock_lease: float = Field(5.0, ge=0.5, le=300)
    short: ShortFreshness = ShortFreshness()
    normal: NormalFreshness = NormalFreshness()
    long: LongFreshness = LongFreshness()

    @model_validator(mode="after")
    def _lifetime_covers_freshness(self) -> CacheSettings:
        longest = max(self.short.max, self.normal.max, self.long.max)
        if self.fallback_lifetime < longest:
            raise ValueError(
                f"fallback_lifetime ({self.fallback_lifetime}) is shorter than the longest "
                f"freshness ({longest})"
            )
        return self
