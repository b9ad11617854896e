"""The Redis backend and the cross-replica fill lock against a real redis-server.

Each "replica" here is a ResponseCache with its own RedisBackend (its own connection pool), as
separate gateway processes would have; tests/server/test_cache_replicas_lab.py runs real
processes in front of the real slurmrestd.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from slurmgate.server.cache.backends import RedisBackend
from slurmgate.server.cache.entry import Entry
from slurmgate.server.cache.keys import KeySpace
from slurmgate.server.cache.settings import CacheSettings, FreshnessSettings
from slurmgate.server.cache.store import Answer, ResponseCache
from tests.redis_server import RedisServer
from tests.server.cache.fakes import until

JSON = (("Content-Type", "application/json"),)
OK = Answer(200, "OK", JSON, b'{"nodes": [], "errors": []}')
BOUNDS = FreshnessSettings(min=5, max=10, buffer=1)


def backend(server: RedisServer, timeout: float = 1.0) -> RedisBackend:
    return RedisBackend(server.url, username=None, password=None, timeout=timeout)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[list[ResponseCache]]:
    settings = CacheSettings.model_validate(
        {"backend": "redis", "redis_url": redis_server.url, "lock_lease": 1.0, "timeout": 1.0}
    )
    caches = [ResponseCache(backend(redis_server), settings, max_wait=30.0) for _ in range(3)]
    yield caches
    for cache in caches:
        await cache.close()


class Upstream:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def fetch(self) -> Answer:
        self.calls += 1
        await self.release.wait()
        return OK


async def through(cache: ResponseCache, fetch: Callable[[], Awaitable[Answer]]) -> Answer:
    lookup = await cache.lookup("/slurm/v0.0.45/nodes", "nodes")
    fresh = lookup.fresh(time.time())
    if fresh is not None:
        return Answer(fresh.status, fresh.reason, fresh.headers, bytes(fresh.body))
    return (await cache.fill(lookup, fetch, bounds=BOUNDS, user="alice")).answer


async def test_entries_round_trip_with_their_lifetime(redis_server: RedisServer) -> None:
    store = backend(redis_server)
    keys = KeySpace("test")
    entry = Entry("w", "", 1.0, 0.1, math.inf, 200, "OK", JSON, bytes(range(256)))
    await store.write(keys.entry("w"), entry, ttl=600)
    found, generation = await store.read(keys.entry("w"), keys.generation("nodes"))
    assert found == entry
    assert generation == ""
    ttl = int(redis_server.command("TTL", keys.entry("w")).strip(b":\r\n"))
    assert 590 <= ttl <= 600  # the fallback lifetime, not the freshness
    await store.bump([keys.generation("nodes")])
    _, bumped = await store.read(keys.entry("w"), keys.generation("nodes"))
    assert len(bumped) == 16
    await store.close()


async def test_a_foreign_value_reads_as_absent(redis_server: RedisServer) -> None:
    store = backend(redis_server)
    redis_server.command("SET", "test:1:entry:x", "not-an-entry")
    found, _ = await store.read("test:1:entry:x", "test:1:generation:g")
    assert found is None
    await store.close()


async def test_lock_is_exclusive_renewable_and_released_only_by_its_owner(
    redis_server: RedisServer,
) -> None:
    a, b = backend(redis_server), backend(redis_server)
    assert await a.try_lock("l", "token-a", 5.0)
    assert not await b.try_lock("l", "token-b", 5.0)
    assert await a.lock_held("l")
    assert not await b.extend_lock("l", "token-b", 5.0)
    await b.release_lock("l", "token-b")  # not b's: no effect
    assert await a.lock_held("l")
    assert await a.extend_lock("l", "token-a", 5.0)
    await a.release_lock("l", "token-a")
    assert not await a.lock_held("l")
    assert await b.try_lock("l", "token-b", 0.2)
    await until(lambda: not redis_server.command("EXISTS", "l").startswith(b":1"))
    assert await a.try_lock("l", "token-a", 5.0)  # the lease ended it
    await a.close()
    await b.close()


async def test_three_replicas_one_upstream_call(replicas: list[ResponseCache]) -> None:
    upstream = Upstream()
    requests = [asyncio.create_task(through(replicas[i % 3], upstream.fetch)) for i in range(300)]
    # one replica calls upstream; the other two wait on its lock, polling Redis
    await until(lambda: upstream.calls == 1 and sum(c.flights.waiting for c in replicas) == 300)
    upstream.release.set()
    answers = await asyncio.gather(*requests)
    assert answers == [OK] * 300
    assert upstream.calls == 1
    assert sum(c.stats.peer_fills for c in replicas) == 2


async def test_a_replica_that_dies_holding_the_lock_does_not_wedge_the_others(
    redis_server: RedisServer, replicas: list[ResponseCache]
) -> None:
    # The lock of a replica that died mid-fill: held, never renewed, never released.
    keys = KeySpace("slurmgate")
    dead = backend(redis_server)
    assert await dead.try_lock(keys.lock(keys.entry("/slurm/v0.0.45/nodes")), "dead", 1.0)
    await dead.close()
    upstream = Upstream()
    upstream.release.set()
    answer = await asyncio.wait_for(through(replicas[0], upstream.fetch), timeout=20)
    assert answer == OK
    assert upstream.calls == 1  # it took over once the lease ran out


async def test_redis_killed_and_restarted(redis_server: RedisServer) -> None:
    settings = CacheSettings.model_validate(
        {"backend": "redis", "redis_url": redis_server.url, "timeout": 0.5, "retry_interval": 0.2}
    )
    cache = ResponseCache(backend(redis_server, timeout=0.5), settings, max_wait=5.0)
    upstream = Upstream()
    upstream.release.set()
    await through(cache, upstream.fetch)
    await through(cache, upstream.fetch)
    assert upstream.calls == 1
    redis_server.kill()
    for _ in range(5):
        assert await through(cache, upstream.fetch) == OK  # no error, straight upstream
    assert cache.stats.backend_errors >= 1
    assert upstream.calls == 6
    await cache.invalidate(["nodes"])  # postponed: Redis is down
    redis_server.start()  # empty: no persistence
    await until(lambda: cache.available)
    await through(cache, upstream.fetch)
    await through(cache, upstream.fetch)
    assert upstream.calls == 7  # caching resumed
    await cache.close()


async def test_a_replica_reads_a_whole_entry_only_when_it_changed(
    redis_server: RedisServer,
) -> None:
    settings = CacheSettings.model_validate(
        {"backend": "redis", "redis_url": redis_server.url, "memory_file_min_bytes": 1 << 20}
    )
    writer = ResponseCache(backend(redis_server), settings, max_wait=5.0)
    reader_backend = backend(redis_server)
    reader = ResponseCache(reader_backend, settings, max_wait=5.0)
    big = Answer(
        200, "OK", JSON, b'{"jobs": [' + b'{"job_id": 1},' * 200_000 + b'{}], "errors": []}'
    )

    async def fetch() -> Answer:
        return big

    try:
        assert await through(writer, fetch) == big
        for _ in range(5):
            assert await through(reader, fetch) == big
        assert reader_backend.bulk_reads == 1  # then a stamp of a few dozen bytes per hit
        lookup = await reader.lookup("/slurm/v0.0.45/nodes", "nodes")
        assert lookup.entry is not None
        assert lookup.entry.file is not None  # a large local copy is sent with sendfile
        # Another replica refreshes the entry: the stamp changes, the next read takes it whole.
        stale = await writer.lookup("/slurm/v0.0.45/nodes", "nodes")
        await writer.fill(stale, fetch, bounds=BOUNDS, user="alice", refresh=True)
        again = await reader.lookup("/slurm/v0.0.45/nodes", "nodes")
        assert again.entry is not None
        assert again.entry.generated_at > lookup.entry.generated_at
        assert reader_backend.bulk_reads == 2
        # An invalidation by another replica is seen at once, local copy or not.
        await writer.invalidate(["nodes"])
        after = await reader.lookup("/slurm/v0.0.45/nodes", "nodes")
        assert after.fresh(time.time()) is None
    finally:
        await writer.close()
        await reader.close()


async def test_a_stalled_redis_fails_a_read_within_timeout_not_read_timeout() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def accept_and_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read(1 << 16)  # then never answers

    server = await asyncio.start_server(accept_and_stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    settings = CacheSettings.model_validate(
        {"backend": "redis", "redis_url": url, "timeout": 0.2, "read_timeout": 30}
    )
    cache = ResponseCache(
        RedisBackend(url, username=None, password=None, timeout=0.2), settings, max_wait=5.0
    )
    try:
        started = time.monotonic()
        lookup = await cache.lookup("/slurm/v0.0.45/nodes", "nodes")
        assert not lookup.backend_ok
        assert time.monotonic() - started < 5  # the socket timeout, far below read_timeout
        assert not cache.available
    finally:
        await cache.close()
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()
