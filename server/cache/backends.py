"""Where entries live: one process's memory, or a Redis server shared by replicas (aiocache).

A backend stores :class:`~.entry.Entry` values, the generation token of each cache group, and
(Redis only) the short locks that let one replica fill a missing entry while the others wait.
Backends raise whatever their client raises; :class:`~.store.ResponseCache` turns every failure
into "no cache" for a while.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from aiocache import RedisCache
from aiocache.serializers import NullSerializer
from redis.asyncio import BlockingConnectionPool
from yarl import URL

from slurmgate.server.cache.bodyfile import MIN_BYTES, body_file
from slurmgate.server.cache.entry import Entry, decode, encode
from slurmgate.server.cache.settings import CacheSettings

__all__ = ["Backend", "MemoryBackend", "RedisBackend", "make_backend", "new_generation"]

#: Generation of a group never invalidated (no key yet).
_INITIAL = ""
#: Longest a local copy of a Redis entry is kept, whatever its freshness.
_LOCAL_MAX_SECONDS = 86400.0


def new_generation() -> str:
    """A fresh generation token: random, so a lost counter can never repeat an old value."""
    return secrets.token_hex(8)


class Backend(Protocol):
    """Storage for entries, generation tokens and fill locks."""

    #: whether other gateway processes see the same data (and so need the fill lock)
    shared: bool
    #: whether operations go over a network and so may be slow: only those get a timeout
    remote: bool

    async def read(self, entry_key: str, generation_key: str) -> tuple[Entry | None, str]:
        """The entry stored under ``entry_key`` (None if absent or unreadable) and the current
        generation token of its group, in one round trip."""
        ...

    async def write(self, entry_key: str, entry: Entry, ttl: int) -> None:
        """Store ``entry`` for ``ttl`` seconds."""
        ...

    async def bump(self, generation_keys: Sequence[str]) -> None:
        """Give each group a new generation token: their stored entries stop being fresh."""
        ...

    async def try_lock(self, key: str, token: str, lease: float) -> bool:
        """Take the lock ``key`` for ``lease`` seconds unless someone holds it."""
        ...

    async def extend_lock(self, key: str, token: str, lease: float) -> bool:
        """Renew the lock if ``token`` still holds it."""
        ...

    async def release_lock(self, key: str, token: str) -> None:
        """Drop the lock if ``token`` still holds it."""
        ...

    async def lock_held(self, key: str) -> bool:
        """Whether anyone holds the lock ``key``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryBackend:
    """Entries in this process: a dict in least-recently-used order, within a byte budget.

    Not aiocache's SimpleMemoryCache: it has no size limit (so the order had to be kept here
    anyway) and its every call goes through decorators, a timeout and an environment lookup,
    which were a tenth of a cache hit. Here a read is a synchronous :meth:`peek`, so a hit
    never waits. Expired entries are dropped when read or when the budget needs room. Bodies of
    ``file_min_bytes`` and more are kept in sealed memory files, so hits on them are sent with
    sendfile (:mod:`.bodyfile`).
    """

    shared = False
    remote = False

    def __init__(
        self,
        max_bytes: int,
        *,
        file_min_bytes: int = MIN_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        #: bodies of this size and more go to memory files (0: none)
        self._file_min_bytes = file_min_bytes
        self._clock = clock
        # Guarded by the event loop: no method awaits between reading and writing them.
        #: entry key -> (entry, monotonic expiry, size), least recently used first
        self._entries: OrderedDict[str, tuple[Entry, float, int]] = OrderedDict()
        #: generation key -> token (absent: never invalidated)
        self._generations: dict[str, str] = {}
        self._total = 0

    @property
    def total_bytes(self) -> int:
        """Bytes of entries currently counted against the budget."""
        return self._total

    @property
    def count(self) -> int:
        """Entries held (expired ones not yet dropped included)."""
        return len(self._entries)

    def holds(self, entry_key: str) -> bool:
        """Whether an entry is held under ``entry_key`` (expired or not)."""
        return entry_key in self._entries

    def peek(self, entry_key: str, generation_key: str) -> tuple[Entry | None, str]:
        """:meth:`read` without awaiting."""
        generation = self._generations.get(generation_key, _INITIAL)
        stored = self._entries.get(entry_key)
        if stored is None:
            return None, generation
        if self._clock() >= stored[1]:
            self._drop(entry_key)
            return None, generation
        self._entries.move_to_end(entry_key)
        return stored[0], generation

    async def read(self, entry_key: str, generation_key: str) -> tuple[Entry | None, str]:
        """See :meth:`Backend.read`."""
        return self.peek(entry_key, generation_key)

    async def write(self, entry_key: str, entry: Entry, ttl: int) -> None:
        """See :meth:`Backend.write`."""
        size = entry.size
        if size > self._max_bytes:
            return
        if self._file_min_bytes and len(entry.body) >= self._file_min_bytes and entry.file is None:
            file = body_file(entry.body)
            if file is not None:
                entry = dataclasses.replace(entry, body=file.view, file=file, headers_made={})
        self._drop(entry_key)
        self._entries[entry_key] = (entry, self._clock() + ttl, size)
        self._total += size
        while self._total > self._max_bytes:
            self._drop(next(iter(self._entries)))

    async def bump(self, generation_keys: Sequence[str]) -> None:
        """See :meth:`Backend.bump`."""
        for key in generation_keys:
            self._generations[key] = new_generation()

    async def try_lock(self, key: str, token: str, lease: float) -> bool:
        """One process needs no lock: its own single-flight merges identical misses."""
        return True

    async def extend_lock(self, key: str, token: str, lease: float) -> bool:
        """See :meth:`try_lock`."""
        return True

    async def release_lock(self, key: str, token: str) -> None:
        """See :meth:`try_lock`."""

    async def lock_held(self, key: str) -> bool:
        """See :meth:`try_lock`."""
        return False

    async def close(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._generations.clear()
        self._total = 0

    def _drop(self, key: str) -> None:
        stored = self._entries.pop(key, None)
        if stored is not None:
            self._total -= stored[2]


# Compare-and-act on a lock's token, so a replica never renews or drops another's lock.
_EXTEND = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)


class RedisBackend:
    """Entries in Redis (aiocache's RedisCache), in the envelope of :mod:`.entry`.

    Each entry has a small stamp key beside it (its generation and times). A process keeps
    copies of the entries it read or wrote last, within ``local_max_bytes``; a read fetches the
    stamp and the group's generation, and the whole entry only when the stamp differs from the
    local copy's. A hit on a megabyte jobs list is then a round trip of a hundred bytes, and
    copies of ``file_min_bytes`` and more are sent with sendfile as in memory (:mod:`.bodyfile`).
    """

    shared = True
    remote = True

    def __init__(
        self,
        url: str,
        *,
        username: str | None,
        password: str | None,
        timeout: float,
        max_connections: int = 32,
        local_max_bytes: int = 64 << 20,
        file_min_bytes: int = MIN_BYTES,
    ) -> None:
        parsed = URL(url)
        db = int(parsed.path.strip("/") or 0)
        # A blocking pool: over max_connections an operation waits for a free connection
        # (within the store's timeout) instead of failing, as redis-py's default pool does.
        # socket_timeout bounds every socket read, so a stalled Redis fails within ``timeout``
        # even during a long read of a large entry.
        pool: dict[str, object] = {"socket_timeout": timeout, "timeout": timeout}
        if username is not None:
            pool["username"] = username
        self._cache = RedisCache(
            serializer=NullSerializer(encoding=None),
            endpoint=parsed.host,
            port=parsed.port,
            db=db,
            password=password,
            ssl=parsed.scheme == "rediss",
            create_connection_timeout=timeout,
            pool_max_size=max_connections,
            connection_pool_class=BlockingConnectionPool,
            connection_pool_kwargs=pool,
            timeout=None,
        )
        #: copies of entries read or written last
        self._local = MemoryBackend(local_max_bytes, file_min_bytes=file_min_bytes)
        self._local_on = local_max_bytes > 0
        #: stamp of each local copy (guarded by the event loop, updated with _local)
        self._stamps: dict[str, str] = {}
        #: whole entries read from Redis (for tests and metrics)
        self.bulk_reads = 0

    async def read(self, entry_key: str, generation_key: str) -> tuple[Entry | None, str]:
        """See :meth:`Backend.read`."""
        if not self._local_on:
            data, generation = await self._cache.multi_get([entry_key, generation_key])
            self.bulk_reads += data is not None
            return _decoded(data), _text(generation)
        stamp, generation = await self._cache.multi_get([_stamp_key(entry_key), generation_key])
        if stamp is None:
            return None, _text(generation)  # no entry (or one written before stamps existed)
        stamp = _text(stamp)
        if self._stamps.get(entry_key) == stamp:
            local, _ = self._local.peek(entry_key, generation_key)
            if local is not None:
                return local, _text(generation)
        data = await self._cache.raw("get", entry_key)
        self.bulk_reads += data is not None
        entry = _decoded(data)
        if entry is not None and _stamp(entry) == stamp:
            await self._keep(entry_key, entry, stamp)
            # the copy, not the decoded bytes: a large body is then in a memory file
            entry = self._local.peek(entry_key, generation_key)[0] or entry
        return entry, _text(generation)

    async def write(self, entry_key: str, entry: Entry, ttl: int) -> None:
        """See :meth:`Backend.write`."""
        stamp = _stamp(entry)
        # Not aiocache's set(): it calls SETEX, which redis-py 8 deprecates in favour of SET EX.
        # One transaction, so a reader never sees a stamp without its entry.
        async with self._cache.client.pipeline(transaction=True) as pipe:
            pipe.set(entry_key, encode(entry), ex=ttl)
            pipe.set(_stamp_key(entry_key), stamp, ex=ttl)
            await pipe.execute()
        if self._local_on:
            await self._keep(entry_key, entry, stamp)

    async def _keep(self, entry_key: str, entry: Entry, stamp: str) -> None:
        # The copy lives as long as the entry may be fresh; stale answers are read from Redis.
        lifetime = max(1, int(min(entry.stale_at - time.time(), _LOCAL_MAX_SECONDS)) + 1)
        await self._local.write(entry_key, entry, lifetime)
        self._stamps[entry_key] = stamp
        if len(self._stamps) > 4 * self._local.count:
            self._stamps = {k: v for k, v in self._stamps.items() if self._local.holds(k)}

    async def bump(self, generation_keys: Sequence[str]) -> None:
        """See :meth:`Backend.bump`."""
        if generation_keys:
            await self._cache.multi_set([(key, new_generation()) for key in generation_keys])

    async def try_lock(self, key: str, token: str, lease: float) -> bool:
        """See :meth:`Backend.try_lock`."""
        try:
            return bool(await self._cache.add(key, token, ttl=float(lease)))
        except ValueError:  # aiocache's "key already exists"
            return False

    async def extend_lock(self, key: str, token: str, lease: float) -> bool:
        """See :meth:`Backend.extend_lock`."""
        done = await self._cache.raw("eval", _EXTEND, 1, key, token, int(lease * 1000))
        return bool(done)

    async def release_lock(self, key: str, token: str) -> None:
        """See :meth:`Backend.release_lock`."""
        await self._cache.raw("eval", _RELEASE, 1, key, token)

    async def lock_held(self, key: str) -> bool:
        """See :meth:`Backend.lock_held`."""
        return bool(await self._cache.exists(key))

    async def close(self) -> None:
        """Close the connection pool."""
        # aiocache's close() calls redis-py's deprecated close(); aclose() is its replacement.
        await self._cache.client.aclose()


def make_backend(settings: CacheSettings) -> Backend | None:
    """The backend ``settings`` ask for; None when the cache is off."""
    if settings.backend == "memory":
        return MemoryBackend(
            settings.memory_max_bytes, file_min_bytes=settings.memory_file_min_bytes
        )
    if settings.backend == "redis":
        password = None
        if settings.redis_password_file is not None:
            password = _first_line(settings.redis_password_file)
        return RedisBackend(
            settings.redis_url,
            username=settings.redis_username,
            password=password,
            timeout=settings.timeout,
            max_connections=settings.redis_max_connections,
            local_max_bytes=settings.redis_local_max_bytes,
            file_min_bytes=settings.memory_file_min_bytes,
        )
    return None


def _stamp_key(entry_key: str) -> str:
    return entry_key.replace(":entry:", ":stamp:", 1)


def _stamp(entry: Entry) -> str:
    """What tells two stored versions of one entry apart, in a few dozen bytes."""
    return f"{entry.generation} {entry.generated_at!r} {entry.stale_at!r}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else _INITIAL


def _decoded(data: object) -> Entry | None:
    if not isinstance(data, bytes):
        return None
    try:
        return decode(data)
    except ValueError:
        return None  # another format or a stray value: as if absent


def _first_line(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text.splitlines()[0] if text else ""
