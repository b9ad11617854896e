"""The response cache with the memory backend and a backend that fails on demand.

Concurrency is forced with events, never with sleeps: the upstream call is held until every
request has arrived.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import pytest

from slurmgate.server.cache.backends import MemoryBackend
from slurmgate.server.cache.control import Directives
from slurmgate.server.cache.entry import Entry
from slurmgate.server.cache.settings import CacheSettings, FreshnessSettings
from slurmgate.server.cache.store import Answer, Filled, ResponseCache, cacheable
from tests.server.cache.fakes import FlakyBackend, until

JSON = (("Content-Type", "application/json"),)
OK = Answer(200, "OK", JSON, b'{"jobs": [], "errors": [], "warnings": []}')
BOUNDS = FreshnessSettings(min=5, max=10, buffer=1)


class Upstream:
    """Counts calls; holds each one until ``release`` is set."""

    def __init__(self, answer: Answer = OK, *, held: bool = False) -> None:
        self.answer = answer
        self.calls = 0
        self.users: list[str] = []
        self.release = asyncio.Event()
        if not held:
            self.release.set()
        self.failure: Exception | None = None

    def fetch_as(self, user: str) -> Callable[[], Awaitable[Answer]]:
        async def fetch() -> Answer:
            self.calls += 1
            self.users.append(user)
            await self.release.wait()
            if self.failure is not None:
                raise self.failure
            return self.answer

        return fetch


def make_cache(backend: MemoryBackend | None = None, **settings: object) -> ResponseCache:
    return ResponseCache(
        backend or MemoryBackend(1 << 20), CacheSettings.model_validate(settings), max_wait=5.0
    )


async def request(
    cache: ResponseCache,
    upstream: Upstream,
    *,
    user: str = "alice",
    path: str = "/p",
    refresh: bool = False,
) -> tuple[str, Filled | Entry]:
    lookup = await cache.lookup(path, "jobs")
    fresh = None if refresh else lookup.fresh(time.time())
    if fresh is not None:
        return "HIT", fresh
    filled = await cache.fill(
        lookup, upstream.fetch_as(user), bounds=BOUNDS, user=user, refresh=refresh
    )
    return "MISS", filled


async def test_miss_then_hit() -> None:
    cache, upstream = make_cache(), Upstream()
    outcome, filled = await request(cache, upstream)
    assert outcome == "MISS"
    assert isinstance(filled, Filled)
    assert filled.answer == OK
    assert filled.entry is not None
    outcome, entry = await request(cache, upstream)
    assert outcome == "HIT"
    assert isinstance(entry, Entry)
    assert entry.body == OK.body
    assert entry.headers == JSON
    assert upstream.calls == 1
    assert cache.stats.fetches == 1
    assert cache.stats.stores == 1


async def test_freshness_is_upstream_time_plus_buffer() -> None:
    cache = make_cache()
    bounds = FreshnessSettings(min=0, max=100, buffer=1)

    async def slow() -> Answer:
        await asyncio.sleep(0.05)
        return OK

    filled = await cache.fill(await cache.lookup("/p", "g"), slow, bounds=bounds, user="u")
    assert filled.entry is not None
    assert filled.entry.upstream_seconds >= 0.05
    assert filled.entry.lifetime == pytest.approx(filled.entry.upstream_seconds + 1)


async def test_500_concurrent_misses_make_one_upstream_call() -> None:
    cache, upstream = make_cache(), Upstream(held=True)
    calls = [asyncio.create_task(request(cache, upstream)) for _ in range(500)]
    await until(lambda: cache.flights.waiting == 500)
    upstream.release.set()
    results = await asyncio.gather(*calls)
    assert upstream.calls == 1
    assert all(isinstance(f, Filled) and f.answer == OK for _, f in results)
    assert cache.stats.shared == 499


@pytest.mark.parametrize(
    ("answer", "stored"),
    [
        (OK, True),
        (Answer(200, "OK", JSON, b'{"a": {"errors": [ ]}, "errors":[]}'), True),
        (Answer(200, "OK", (("Content-Type", "application/json; charset=utf-8"),), b"{}"), True),
        (Answer(500, "Internal", JSON, b'{"errors": []}'), False),
        (Answer(404, "Not Found", JSON, b'{"errors": []}'), False),
        (Answer(200, "OK", JSON, b'{"jobs": [], "errors": [{"error": "x"}]}'), False),
        (Answer(200, "OK", JSON, b'{"errors": [], "x": {"errors" : [1]}}'), False),
        (Answer(200, "OK", (("Content-Type", "application/yaml"),), b"errors: []"), False),
        (Answer(200, "OK", (), b"{}"), False),
    ],
    ids=[
        "ok",
        "nested-empty",
        "charset",
        "500",
        "404",
        "errors",
        "nested-errors",
        "yaml",
        "no-type",
    ],
)
async def test_only_clean_answers_are_stored(answer: Answer, stored: bool) -> None:
    assert cacheable(answer) is stored
    cache, upstream = make_cache(), Upstream(answer)
    await request(cache, upstream)
    outcome, _ = await request(cache, upstream)
    assert outcome == ("HIT" if stored else "MISS")
    assert upstream.calls == (1 if stored else 2)


def test_errors_inside_strings_are_not_keys() -> None:
    body = b'{"jobs": [{"comment": "\\"errors\\": [1]"}], "errors": []}'
    assert cacheable(Answer(200, "OK", JSON, body))


async def test_invalidation_retires_entries_but_keeps_them_for_stale() -> None:
    cache, upstream = make_cache(), Upstream()
    await request(cache, upstream)
    await cache.invalidate(["jobs"])
    lookup = await cache.lookup("/p", "jobs")
    assert lookup.entry is not None  # still there for stale-if-error
    assert lookup.fresh(time.time()) is None
    outcome, _ = await request(cache, upstream)
    assert outcome == "MISS"
    assert upstream.calls == 2
    other = await cache.lookup("/p", "nodes")  # same key in an untouched group stays fresh
    assert other.generation == ""


async def test_flight_started_before_invalidation_is_not_joined_after() -> None:
    cache, upstream = make_cache(), Upstream(held=True)
    before = asyncio.create_task(request(cache, upstream))
    await until(lambda: upstream.calls == 1)
    await cache.invalidate(["jobs"])  # e.g. the client's own job submission
    after = asyncio.create_task(request(cache, upstream))
    await until(lambda: upstream.calls == 2)
    upstream.release.set()
    await asyncio.gather(before, after)
    assert upstream.calls == 2
    # the answer fetched before the invalidation is not fresh after it
    assert (await request(cache, upstream))[0] == "HIT"  # the second one is


async def test_concurrent_lookups_share_one_read_but_not_across_an_invalidation() -> None:
    backend = FlakyBackend()
    backend.shared = True  # as Redis: reads take a round trip, so concurrent ones are merged
    cache, upstream = make_cache(backend), Upstream()
    await request(cache, upstream)
    backend.hold_reads = asyncio.Event()
    before = [asyncio.create_task(cache.lookup("/p", "jobs")) for _ in range(50)]
    await until(lambda: backend.reads == 2)  # the fill's read, then one for the 50
    await cache.invalidate(["jobs"])
    after = asyncio.create_task(cache.lookup("/p", "jobs"))
    await until(lambda: backend.reads == 3)  # not joined to the read started before
    backend.hold_reads.set()
    looked = await asyncio.gather(*before)
    assert len({id(lookup) for lookup in looked}) == 1  # one read answered all 50
    assert (await after).fresh(time.time()) is None


async def test_error_answers_are_shared_only_with_the_same_user() -> None:
    cache, upstream = (
        make_cache(),
        Upstream(Answer(500, "Internal", JSON, b'{"errors": [{}]}'), held=True),
    )
    alice = asyncio.create_task(request(cache, upstream, user="alice"))
    alice2 = asyncio.create_task(request(cache, upstream, user="alice"))
    bob = asyncio.create_task(request(cache, upstream, user="bob"))
    await until(lambda: cache.flights.waiting == 3)
    upstream.release.set()
    await asyncio.gather(alice, alice2, bob)
    assert sorted(upstream.users) == ["alice", "bob"]


async def test_upstream_failure_reaches_waiters_and_is_not_stored() -> None:
    cache, upstream = make_cache(), Upstream(held=True)
    upstream.failure = TimeoutError("upstream timed out")
    calls = [asyncio.create_task(request(cache, upstream)) for _ in range(5)]
    await until(lambda: cache.flights.waiting == 5)
    upstream.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results)
    assert upstream.calls == 1
    upstream.failure = None
    assert (await request(cache, upstream))[0] == "MISS"


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_failing_backend_degrades_to_no_cache_and_recovers(mode: str) -> None:
    backend = FlakyBackend()
    # Entry reads have their own bound (large answers); a real Redis also fails a stalled read
    # within ``timeout`` through its socket timeout (test_redis.py).
    cache = make_cache(backend, timeout=0.05, read_timeout=0.05, retry_interval=0.2)
    upstream = Upstream(held=True)
    backend.mode = mode
    calls = [asyncio.create_task(request(cache, upstream)) for _ in range(20)]
    await until(lambda: cache.flights.waiting == 20)
    upstream.release.set()
    results = await asyncio.gather(*calls)
    # no errors, still one upstream call (merged in this process), nothing stored
    assert all(isinstance(f, Filled) and f.answer == OK and f.entry is not None for _, f in results)
    assert upstream.calls == 1
    assert cache.stats.stores == 0
    assert cache.stats.backend_errors >= 1
    assert not cache.available
    tried = backend.calls
    await request(cache, upstream)  # within retry_interval: the backend is left alone
    assert backend.calls == tried
    assert upstream.calls == 2
    backend.mode = "ok"
    await until(lambda: cache.available)
    await request(cache, upstream)
    assert (await request(cache, upstream))[0] == "HIT"
    assert upstream.calls == 3


async def test_invalidation_while_down_is_applied_before_the_next_read() -> None:
    backend = FlakyBackend()
    cache = make_cache(backend, timeout=0.05, retry_interval=0.05)
    upstream = Upstream()
    await request(cache, upstream)
    backend.mode = "fail"
    await cache.invalidate(["jobs"])  # cannot reach the backend: postponed
    backend.mode = "ok"
    await until(lambda: cache.available)
    assert (await request(cache, upstream))[0] == "MISS"


async def test_memory_budget_evicts_least_recently_used() -> None:
    backend = MemoryBackend(max_bytes=1 << 20)
    body = b"x" * (300 << 10)

    def entry() -> Entry:
        return Entry("w", "", 0.0, 0.0, math.inf, 200, "OK", JSON, body)

    for key in ("a", "b", "c"):
        await backend.write(key, entry(), ttl=60)
    assert (await backend.read("a", "g"))[0] is not None  # a is now the most recent
    await backend.write("d", entry(), ttl=60)
    assert (await backend.read("b", "g"))[0] is None
    for key in ("a", "c", "d"):
        assert (await backend.read(key, "g"))[0] is not None
    assert backend.total_bytes <= 1 << 20
    await backend.write("huge", Entry("w", "", 0, 0, 1, 200, "", (), b"x" * (2 << 20)), ttl=60)
    assert (await backend.read("huge", "g"))[0] is None  # larger than the budget: not kept


async def test_memory_entries_expire_after_their_ttl() -> None:
    now = [1000.0]
    backend = MemoryBackend(max_bytes=1 << 20, clock=lambda: now[0])
    stored = Entry("w", "", 0.0, 0.0, math.inf, 200, "OK", JSON, b"{}")
    await backend.write("a", stored, ttl=60)
    now[0] += 59.9
    assert backend.peek("a", "g") == (stored, "")
    now[0] += 0.1
    assert backend.peek("a", "g") == (None, "")
    assert backend.total_bytes == 0  # dropped when found expired


async def test_a_memory_lookup_sees_invalidations() -> None:
    cache = make_cache()
    upstream = Upstream()
    await request(cache, upstream)
    found = await cache.lookup("/p", "jobs")
    assert found.fresh(time.time()) is not None
    await cache.invalidate(["jobs"])
    found = await cache.lookup("/p", "jobs")
    assert found.entry is not None
    assert found.fresh(time.time()) is None


# --- read: the one read path ---------------------------------------------------------------

BOUNDS = FreshnessSettings(min=30, max=60, buffer=1)


class UpstreamDown(Exception):
    """What the test's fetch raises for a failed upstream call."""


def reading_cache(backend: MemoryBackend | None = None) -> ResponseCache:
    return ResponseCache(
        backend or MemoryBackend(1 << 20),
        CacheSettings(),
        max_wait=5.0,
        upstream_errors=(UpstreamDown,),
    )


async def test_read_misses_once_then_hits_the_same_entry() -> None:
    cache = reading_cache()
    upstream = Upstream()
    first = await cache.read("/p", "jobs", upstream.fetch_as("alice"), bounds=BOUNDS, user="alice")
    second = await cache.read("/p", "jobs", upstream.fetch_as("bob"), bounds=BOUNDS, user="bob")
    assert (first.outcome, second.outcome) == ("MISS", "HIT")
    assert first.entry is not None
    assert second.entry is not None
    assert second.answer is second.entry
    assert bytes(second.entry.body) == OK.body
    assert upstream.calls == 1
    assert (cache.stats.misses, cache.stats.hits) == (1, 1)


async def test_read_refresh_max_age_and_no_store() -> None:
    cache = reading_cache()
    upstream = Upstream()
    fetch = upstream.fetch_as("alice")
    await cache.read("/p", "jobs", fetch, bounds=BOUNDS, user="alice")
    refreshed = await cache.read(
        "/p", "jobs", fetch, bounds=BOUNDS, user="alice", directives=Directives(refresh=True)
    )
    assert refreshed.outcome == "MISS"
    assert upstream.calls == 2
    young = await cache.read(
        "/p", "jobs", fetch, bounds=BOUNDS, user="alice", directives=Directives(max_age=30)
    )
    assert young.outcome == "HIT"
    bypassed = await cache.read(
        "/p", "jobs", fetch, bounds=BOUNDS, user="alice", directives=Directives(no_store=True)
    )
    assert (bypassed.outcome, bypassed.entry) == ("BYPASS", None)
    assert upstream.calls == 3
    assert cache.stats.bypasses == 1


async def test_read_answers_stale_if_error_only_when_the_client_accepts_it() -> None:
    cache = reading_cache()
    upstream = Upstream()
    fetch = upstream.fetch_as("alice")
    await cache.read("/p", "jobs", fetch, bounds=BOUNDS, user="alice")
    await cache.invalidate(["jobs"])  # the entry is kept, but no longer fresh
    upstream.failure = UpstreamDown("refused")
    with pytest.raises(UpstreamDown):
        await cache.read("/p", "jobs", fetch, bounds=BOUNDS, user="alice")
    accepting = Directives(stale_if_error=float("inf"))
    stale = await cache.read("/p", "jobs", fetch, bounds=BOUNDS, user="alice", directives=accepting)
    assert stale.outcome == "STALE"
    assert stale.entry is not None
    assert bytes(stale.entry.body) == OK.body
    # A failure of another kind (a bug) is never hidden behind a stale answer.
    upstream.failure = RuntimeError("bug")
    with pytest.raises(RuntimeError):
        await cache.read("/p", "jobs", fetch, bounds=BOUNDS, user="alice", directives=accepting)
    # A 5xx answer is replaced by the stale entry too, and not stored.
    upstream.failure = None
    upstream.answer = Answer(502, "Bad Gateway", JSON, b'{"errors": [{"error": "down"}]}')
    replaced = await cache.read(
        "/p", "jobs", fetch, bounds=BOUNDS, user="alice", directives=accepting
    )
    assert replaced.outcome == "STALE"
    assert cache.stats.stale == 2


async def test_read_with_a_failing_backend_is_a_bypass_that_still_answers() -> None:
    backend = FlakyBackend()
    backend.mode = "fail"
    cache = reading_cache(backend)
    upstream = Upstream()
    served = await cache.read("/p", "jobs", upstream.fetch_as("alice"), bounds=BOUNDS, user="alice")
    assert served.outcome == "BYPASS"
    assert served.answer.body == OK.body
    assert upstream.calls == 1
