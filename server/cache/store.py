"""The response cache: lookups, single-flight fills, invalidation, and surviving its backend.

Nothing here knows HTTP frameworks: :meth:`ResponseCache.read` takes a key, the client's
directives and a ``fetch`` that makes the upstream call, and returns what to answer with
(:class:`Served`); server/pipeline/respond.py turns that into a web response. What this module
guarantees:

- identical misses share one upstream call: in a process through :class:`.flight.SingleFlight`,
  across replicas sharing Redis through a lock with a lease that the filling replica renews, so
  a replica that dies stops blocking the others within one lease;
- only answers worth reusing are stored (:func:`cacheable`), each with its group's generation,
  so bumping a generation (:meth:`ResponseCache.invalidate`) retires every entry of the group;
- a backend that fails or is slow never fails a request: the call is abandoned after
  ``timeout``, the backend is left alone for ``retry_interval`` (requests go upstream, still
  merged in-process), and invalidations made meanwhile are applied before it is read again;
- a failed upstream call is answered from a stale entry when the client accepts one
  (``stale-if-error``), and a 5xx answer likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from slurmgate.server.cache.backends import Backend, MemoryBackend
from slurmgate.server.cache.control import Directives
from slurmgate.server.cache.entry import Entry
from slurmgate.server.cache.flight import SingleFlight
from slurmgate.server.cache.freshness import freshness
from slurmgate.server.cache.keys import KeySpace
from slurmgate.server.cache.settings import CacheSettings, FreshnessSettings
from slurmgate.server.upstream.transport import UpstreamResponse

__all__ = [
    "Answer",
    "CacheStats",
    "Filled",
    "Lookup",
    "ResponseCache",
    "Served",
    "cacheable",
]

log = logging.getLogger("slurmgate.cache")

T = TypeVar("T")

#: A non-empty ``errors`` array anywhere in a JSON body. ``"errors"`` with its quotes cannot occur
#: inside a JSON string (quotes there are escaped), so every match is a key.
_ERRORS_KEY = re.compile(rb'"errors"\s*:\s*(\[\s*\])?')
#: Keys whose backend names are remembered at most (then forgotten all at once).
_MAX_NAMES = 4096
_POLL_FIRST = 0.01
_POLL_MAX = 0.2


#: An answer as the gateway passes it on: status, headers without hop-by-hop ones, exact bytes.
Answer = UpstreamResponse


def cacheable(answer: Answer) -> bool:
    """Whether ``answer`` may be reused: a 2xx JSON answer whose ``errors`` arrays are all empty.

    Error answers, and 200 answers reporting errors (slurmrestd does both), are never stored.
    Non-JSON answers (YAML) are not either, since their errors cannot be checked the same way.
    """
    if not 200 <= answer.status < 300:
        return False
    content_type = (answer.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return False
    return all(match[1] is not None for match in _ERRORS_KEY.finditer(answer.body))


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics and tests; each is only ever incremented."""

    hits: int = 0
    misses: int = 0
    stale: int = 0
    bypasses: int = 0
    #: misses answered by another request's upstream call in this process
    shared: int = 0
    #: misses answered by an entry another replica stored while this one waited
    peer_fills: int = 0
    #: upstream calls made to fill the cache
    fetches: int = 0
    stores: int = 0
    #: answers not stored because they are errors (see :func:`cacheable`)
    not_stored: int = 0
    invalidations: int = 0
    #: failed or timed-out backend operations
    backend_errors: int = 0


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the cache holds for a request's key when the request arrived."""

    material: str
    group: str
    entry_key: str
    #: the stored entry, fresh or not (a stale one still serves stale-if-error); None if none
    entry: Entry | None
    #: the group's current generation; an entry of another generation is not fresh
    generation: str
    #: whether the backend answered; if not, nothing will be stored for this request
    backend_ok: bool

    def fresh(self, now: float, max_age: int | None = None) -> Entry | None:
        """The entry if it is fresh now (and no older than the client's ``max_age``)."""
        return _fresh(self.entry, self.generation, now, max_age)


def _stale(lookup: Lookup, directives: Directives) -> Entry | None:
    """The stored entry if the client accepts it in place of a failed upstream call."""
    entry = lookup.entry
    if entry is None or directives.stale_if_error is None:
        return None
    if time.time() - entry.stale_at > directives.stale_if_error:
        return None
    return entry


def _fresh(entry: Entry | None, generation: str, now: float, max_age: int | None) -> Entry | None:
    if entry is None or entry.generation != generation or now >= entry.stale_at:
        return None
    if max_age is not None and entry.age(now) > max_age:
        return None
    return entry


@dataclass(frozen=True, slots=True)
class Filled:
    """The outcome of a fill: the answer and, when it was stored (or found), its entry."""

    answer: Answer
    #: the stored entry (its times give Age and max-age); None if not stored
    entry: Entry | None
    #: who the upstream call was made for (None: the entry came from another replica)
    user: str | None
    #: the answer came from an entry another replica stored while this one waited
    from_peer: bool = False


class Served(NamedTuple):
    """What :meth:`ResponseCache.read` answers a request with (a tuple: made on every hit)."""

    #: status, headers and body to send: a stored entry, or an answer that was not stored
    answer: Answer | Entry
    #: the stored entry the answer is (its times give Age and max-age); None if not stored
    entry: Entry | None
    #: as in ``X-Cache``: HIT (fresh, or filled by another request or replica), MISS (this
    #: request's upstream call), STALE (an old entry in place of a failed call), BYPASS (not
    #: read from or stored in the cache: ``no-store``, or the backend is failing)
    outcome: str


#: A request without directives: it uses the cache normally.
_NONE = Directives()


class _BackendDown(Exception):
    """The backend failed just now or is being left alone after a failure."""


class ResponseCache:
    """The cache of one gateway process; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        settings: CacheSettings,
        *,
        max_wait: float,
        upstream_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self._backend = backend
        #: what ``fetch`` raises when the upstream failed: answered stale-if-error
        self._upstream_errors = upstream_errors
        #: the synchronous read of the memory backend (not of test doubles that play Redis)
        self._peek = (
            backend.peek if isinstance(backend, MemoryBackend) and not backend.remote else None
        )
        self._settings = settings
        self._keys = KeySpace(settings.key_prefix)
        #: reads of whole entries may take longer than other operations (large answers)
        self._read_timeout = max(settings.read_timeout, settings.timeout)
        #: longest a replica waits for another to fill an entry before calling upstream itself
        self._max_wait = max_wait
        self.stats = CacheStats()
        # All of the below are guarded by the event loop (no await between read and write).
        self._flights: SingleFlight[tuple[str, ...], Filled] = SingleFlight()
        self._reads: SingleFlight[tuple[str, ...], Lookup] = SingleFlight()
        #: monotonic time before which the backend is not tried again (0: healthy)
        self._down_until = 0.0
        #: monotonic time of the last failure: only an operation started after it proves the
        #: backend is back (one that was already under way may succeed late)
        self._failed_at = 0.0
        #: (material, group) -> their backend keys (see :meth:`_names`), at most _MAX_NAMES
        self._name_memo: dict[tuple[str, str], tuple[str, str]] = {}
        #: groups invalidated while the backend was failing; bumped before it is read again
        self._pending: set[str] = set()
        #: per-group counter bumped by every invalidation, so that in-process flights started
        #: before an invalidation are never joined after it, even while the backend is down
        self._local_generation: dict[str, int] = {}

    @property
    def flights(self) -> SingleFlight[tuple[str, ...], Filled]:
        """The in-process single-flight (for tests and metrics)."""
        return self._flights

    @property
    def available(self) -> bool:
        """Whether the backend is currently used (not left alone after a failure)."""
        return time.monotonic() >= self._down_until

    async def read(
        self,
        material: str,
        group: str,
        fetch: Callable[[], Awaitable[Answer]],
        *,
        bounds: FreshnessSettings,
        user: str,
        directives: Directives = _NONE,
    ) -> Served:
        """The answer for ``material``: stored and fresh, or from one shared upstream call.

        ``fetch`` makes the upstream call as ``user``. Its exceptions of the types in
        ``upstream_errors`` (given at construction) are answered from a stale entry when
        ``directives.stale_if_error`` allows one, and otherwise reach the caller, as do all
        others. ``directives.no_store`` neither reads nor stores (outcome BYPASS).
        """
        if directives.no_store:
            self.stats.bypasses += 1
            return Served(await fetch(), None, "BYPASS")
        peek = self._peek
        lookup: Lookup | None = None
        if peek is not None:
            # This process's memory: a read that cannot fail or wait, and a hit made of as
            # little as possible (most requests are hits): no Lookup, no task.
            entry_key, generation_key = self._names(material, group)
            entry, generation = peek(entry_key, generation_key)
        else:
            lookup = await self.lookup(material, group)
            entry_key, entry, generation = lookup.entry_key, lookup.entry, lookup.generation
        if not directives.refresh:
            fresh = _fresh(entry, generation, time.time(), directives.max_age)
            if fresh is not None:
                self.stats.hits += 1
                return Served(fresh, fresh, "HIT")
        if lookup is None:
            lookup = Lookup(material, group, entry_key, entry, generation, backend_ok=True)
        return await self._miss(lookup, fetch, bounds=bounds, user=user, directives=directives)

    async def _miss(
        self,
        lookup: Lookup,
        fetch: Callable[[], Awaitable[Answer]],
        *,
        bounds: FreshnessSettings,
        user: str,
        directives: Directives,
    ) -> Served:
        """:meth:`read` of a key without a fresh entry: the shared fill, or stale-if-error."""
        try:
            filled = await self.fill(
                lookup, fetch, bounds=bounds, user=user, refresh=directives.refresh
            )
        except self._upstream_errors:
            stale = _stale(lookup, directives)
            if stale is None:
                raise
            self.stats.stale += 1
            return Served(stale, stale, "STALE")
        if filled.answer.status >= 500:
            stale = _stale(lookup, directives)
            if stale is not None:
                self.stats.stale += 1
                return Served(stale, stale, "STALE")
        if filled.from_peer:
            self.stats.hits += 1
            outcome = "HIT"
        elif lookup.backend_ok:
            self.stats.misses += 1
            outcome = "MISS"
        else:
            self.stats.bypasses += 1
            outcome = "BYPASS"
        return Served(filled.answer, filled.entry, outcome)

    def _peek_lookup(self, material: str, group: str) -> Lookup | None:
        """:meth:`lookup` without awaiting, when the backend is this process's memory; else None.

        A memory read cannot fail or wait, so it skips the circuit and the shared reads.
        """
        if self._peek is None:
            return None
        entry_key, generation_key = self._names(material, group)
        entry, generation = self._peek(entry_key, generation_key)
        return Lookup(material, group, entry_key, entry, generation, backend_ok=True)

    def _names(self, material: str, group: str) -> tuple[str, str]:
        """The backend keys of ``material``'s entry and of ``group``'s generation, made once
        per key (clients ask for the same few over and over)."""
        names = self._name_memo.get((material, group))
        if names is None:
            if len(self._name_memo) >= _MAX_NAMES:
                self._name_memo.clear()
            names = (self._keys.entry(material), self._keys.generation(group))
            self._name_memo[(material, group)] = names
        return names

    async def lookup(self, material: str, group: str) -> Lookup:
        """What is stored for ``material``; a failing backend reads as "nothing stored".

        With a shared backend (Redis), concurrent lookups of one key share one read (a burst of
        500 identical requests is one round trip, not 500 competing for connections). The read
        is keyed by the group's local generation, so a lookup made after an invalidation by this
        process never joins a read started before it.
        """
        now = self._peek_lookup(material, group)
        if now is not None:
            return now
        entry_key = self._keys.entry(material)
        local = str(self._local_generation.get(group, 0))

        async def read() -> Lookup:
            try:
                await self._flush_pending()
                entry, generation = await self._call(
                    lambda: self._backend.read(entry_key, self._keys.generation(group)),
                    seconds=self._read_timeout,
                )
            except _BackendDown:
                return Lookup(material, group, entry_key, None, "", backend_ok=False)
            return Lookup(material, group, entry_key, entry, generation, backend_ok=True)

        if not self._backend.shared:
            return await read()  # nothing to share between requests, no task
        found, _ = await self._reads.do((entry_key, group, local), read)
        return found

    async def fill(
        self,
        lookup: Lookup,
        fetch: Callable[[], Awaitable[Answer]],
        *,
        bounds: FreshnessSettings,
        user: str,
        refresh: bool = False,
    ) -> Filled:
        """The answer for ``lookup``'s key from one upstream call shared by everyone asking now.

        ``fetch`` makes the upstream call as ``user``; its exceptions reach every waiter and
        nothing is stored. An answer that is not stored (an error) is shared only with waiters
        acting as the same user; the others make their own call, merged per user.
        """
        base = (
            lookup.entry_key,
            lookup.generation,
            str(self._local_generation.get(lookup.group, 0)),
        )

        async def lead() -> Filled:
            return await self._lead(lookup, fetch, bounds, user, refresh=refresh)

        filled, leader = await self._flights.do(base, lead)
        if not leader:
            self.stats.shared += 1
        if filled.entry is None and filled.user is not None and filled.user != user:
            filled, _ = await self._flights.do((*base, user), lead)
        return filled

    async def invalidate(self, groups: Sequence[str]) -> None:
        """Retire every entry of ``groups`` (after a mutation), here and in the backend."""
        if not groups:
            return
        for group in groups:
            self._local_generation[group] = self._local_generation.get(group, 0) + 1
        self.stats.invalidations += 1
        self._pending.update(groups)
        try:
            await self._flush_pending()
        except _BackendDown:
            log.warning("cache: invalidation of %s postponed until the backend is back", groups)

    async def close(self) -> None:
        """Close the backend."""
        await self._backend.close()

    # --- filling ---------------------------------------------------------------------------

    async def _lead(
        self,
        lookup: Lookup,
        fetch: Callable[[], Awaitable[Answer]],
        bounds: FreshnessSettings,
        user: str,
        *,
        refresh: bool,
    ) -> Filled:
        started = time.time()
        lock_key = self._keys.lock(lookup.entry_key)
        token = secrets.token_hex(8)
        locked = False
        if lookup.backend_ok:
            try:
                found, locked = await self._wait_turn(lookup, lock_key, token, started, refresh)
            except _BackendDown:
                found, locked = None, False
            if found is not None:
                return found
        heartbeat = self._renew(lock_key, token) if locked else None
        try:
            generated_at = time.time()
            clock = time.monotonic()
            self.stats.fetches += 1
            answer = await fetch()
            upstream_seconds = time.monotonic() - clock
            entry = None
            if cacheable(answer):
                entry = Entry(
                    what=lookup.material,
                    generation=lookup.generation,
                    generated_at=generated_at,
                    upstream_seconds=upstream_seconds,
                    stale_at=generated_at + freshness(bounds, upstream_seconds),
                    status=answer.status,
                    reason=answer.reason,
                    headers=answer.headers,
                    body=answer.body,
                )
                if lookup.backend_ok and await self._store(lookup.entry_key, entry):
                    self.stats.stores += 1
            else:
                self.stats.not_stored += 1
            return Filled(answer, entry, user)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            if locked:
                with contextlib.suppress(_BackendDown):  # if not released, its lease ends it
                    await self._call(lambda: self._backend.release_lock(lock_key, token))

    async def _wait_turn(
        self, lookup: Lookup, lock_key: str, token: str, started: float, refresh: bool
    ) -> tuple[Filled | None, bool]:
        """Take the fill lock, or wait for whoever holds it to store the entry.

        Returns (an entry someone else stored, False) or (None, whether the lock is ours). After
        ``max_wait`` without either, the caller goes upstream unlocked rather than wait longer.
        """
        deadline = time.monotonic() + self._max_wait
        delay = _POLL_FIRST
        while True:
            locked = await self._call(
                lambda: self._backend.try_lock(lock_key, token, self._settings.lock_lease)
            )
            # Whether we hold the lock or not, someone may have stored the entry since lookup.
            entry, generation = await self._call(
                lambda: self._backend.read(lookup.entry_key, self._keys.generation(lookup.group)),
                seconds=self._read_timeout,
            )
            now = time.time()
            usable = (
                entry is not None
                and entry.generation == generation
                and now < entry.stale_at
                and (not refresh or entry.generated_at >= started)
            )
            if usable and entry is not None:
                if locked:
                    await self._call(lambda: self._backend.release_lock(lock_key, token))
                if self._backend.shared:
                    self.stats.peer_fills += 1
                answer = Answer(entry.status, entry.reason, entry.headers, bytes(entry.body))
                return Filled(answer, entry, None, from_peer=True), False
            if locked:
                return None, True
            if time.monotonic() >= deadline:
                log.warning(
                    "cache: gave up waiting for another replica to fill %s", lookup.material
                )
                return None, False
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)

    def _renew(self, lock_key: str, token: str) -> asyncio.Task[None]:
        lease = self._settings.lock_lease

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease / 3)
                try:
                    await self._call(lambda: self._backend.extend_lock(lock_key, token, lease))
                except _BackendDown:
                    return

        return asyncio.create_task(renew())

    async def _store(self, entry_key: str, entry: Entry) -> bool:
        try:
            await self._call(
                lambda: self._backend.write(entry_key, entry, self._settings.fallback_lifetime)
            )
        except _BackendDown:
            return False
        return True

    # --- backend health --------------------------------------------------------------------

    async def _flush_pending(self) -> None:
        if self._pending:
            groups = sorted(self._pending)
            await self._call(lambda: self._backend.bump([self._keys.generation(g) for g in groups]))
            self._pending.difference_update(groups)

    async def _call(
        self, operation: Callable[[], Coroutine[Any, Any, T]], *, seconds: float | None = None
    ) -> T:
        """Run one backend operation within ``seconds`` (default: the settings' ``timeout``);
        any failure marks the backend down."""
        started = time.monotonic()
        if self._down_until and started < self._down_until:
            raise _BackendDown
        try:
            if self._backend.remote:
                async with asyncio.timeout(seconds or self._settings.timeout):
                    result = await operation()
            else:  # memory: never waits, and a timeout per call is a tenth of a cache hit
                result = await operation()
        except Exception as error:  # any backend failure means "no cache", never an error
            self.stats.backend_errors += 1
            if not self._down_until:
                log.warning(
                    "cache: backend failed (%s: %s); requests go upstream uncached for %.0f s",
                    type(error).__name__,
                    error,
                    self._settings.retry_interval,
                )
            self._failed_at = time.monotonic()
            self._down_until = self._failed_at + self._settings.retry_interval
            raise _BackendDown from error
        if self._down_until and started > self._failed_at:
            self._down_until = 0.0
            log.warning("cache: backend is back; caching resumes")
        return result
