"""The cache step: serve reads from the response cache, refill it once per key, retire it on writes.

Between ``authorize`` and ``forward``: only authorized requests see cached answers, and a miss is
filled by the next step (the upstream call as the requesting user). Reads whose route has a cache
policy (``slurmgate routes``) go through :class:`~slurmgate.server.cache.ResponseCache`; a
mutating request invalidates the cache groups its route names once it has been sent, whatever
the outcome (a timed-out submit may still have created a job). Headers added to cached routes:
``X-Cache`` (HIT, MISS, STALE, BYPASS), and for stored answers ``Age``, ``Cache-Control:
max-age``, ``X-Cache-Generated-At`` and ``X-Cache-Upstream-Seconds``. docs/caching.md has the
details.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from slurmgate.policies.routing import Namespace, Route
from slurmgate.server.cache.backends import make_backend
from slurmgate.server.cache.bodyfile import BodyFile
from slurmgate.server.cache.control import Directives, parse_directives
from slurmgate.server.cache.entry import Entry
from slurmgate.server.cache.freshness import bounds
from slurmgate.server.cache.keys import has_update_time, key_material
from slurmgate.server.cache.settings import FreshnessSettings
from slurmgate.server.cache.store import Answer, Lookup, ResponseCache
from slurmgate.server.errors import BadRequest, ConfigError, UpstreamError
from slurmgate.server.identity.base import Identity
from slurmgate.server.keys import (
    CACHE,
    CACHE_REPLAY,
    CACHE_STATE,
    IDENTITY,
    ROUTE,
    SETTINGS,
    TARGET,
)

__all__ = ["HitReplay", "cache", "cache_ctx"]

log = logging.getLogger("slurmgate.cache")

#: A request without cache directives: only its hits are replayed.
_NONE = Directives()
#: Headers of the next step's answer that are about this connection, not the content.
_NOT_STORED = frozenset({"server", "date", "content-length", "transfer-encoding", "connection"})


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[CACHE]`` from ``app[SETTINGS].cache`` (None when off), closed at
    shutdown."""
    settings = app[SETTINGS]
    try:
        backend = make_backend(settings.cache)
    except OSError as error:
        raise ConfigError([f"cache.redis_password_file: cannot read: {error.strerror}"]) from None
    if backend is None:
        app[CACHE] = None
        log.info("cache: off")
        yield
        return
    # A replica waiting for another to fill an entry waits at most as long as that one's
    # upstream call may take (its wait for a slot included), plus one lease for noticing that
    # it died.
    up = settings.upstream
    max_wait = up.queue_timeout + up.timeout + settings.cache.lock_lease
    store = ResponseCache(backend, settings.cache, max_wait=max_wait)
    app[CACHE] = store
    log.info("cache: %s backend", settings.cache.backend)
    try:
        yield
    finally:
        await store.close()


def cache() -> Middleware:
    """The cache step (see the module docstring)."""

    @web.middleware
    async def impl(request: web.Request, handler: Handler) -> web.StreamResponse:
        store = request.app[CACHE]
        route = request.get(ROUTE)
        if store is None or route is None:
            # No cache, or the gateway's own endpoints and requests that matched nothing.
            return await handler(request)
        if route.mutating:
            if not route.invalidates:
                return await handler(request)
            try:
                return await handler(request)
            finally:
                await store.invalidate(route.invalidates)
        policy = bounds(request.app[SETTINGS].cache, route.cache)
        if policy is None:
            return await handler(request)
        response = await _read(request, handler, store, policy)
        request[CACHE_STATE] = response.headers["X-Cache"]
        return response

    return impl


async def _read(
    request: web.Request, handler: Handler, store: ResponseCache, policy: FreshnessSettings
) -> web.StreamResponse:
    try:
        directives = parse_directives(_joined(request, "Cache-Control"), _joined(request, "Pragma"))
    except ValueError as error:
        raise BadRequest(f"Cache-Control: {error}", source="Cache-Control") from None
    target = request[TARGET]
    if directives.no_store or has_update_time(target.partition("?")[2]):
        # update_time answers mean "nothing changed since then" only to that client.
        store.stats.bypasses += 1
        response = await handler(request)
        response.headers["X-Cache"] = "BYPASS"
        return response
    settings = request.app[SETTINGS].cache
    identity = request[IDENTITY]
    user = identity.user
    material = key_material(
        target,
        request.headers.get("Accept", ""),
        user if settings.per_user else None,
        _restriction(request[ROUTE], identity),
    )
    group = request[ROUTE].cache_group
    lookup = store.lookup_now(material, group)
    if lookup is None:
        lookup = await store.lookup(material, group)
    private = settings.per_user
    now = time.time()
    fresh = None if directives.refresh else lookup.fresh(now, directives.max_age)
    if fresh is not None:
        store.stats.hits += 1
        if directives == _NONE:
            request[CACHE_REPLAY] = HitReplay(store, material, group, private=private)
        return _respond(fresh, fresh, "HIT", private=private)
    request[CACHE_STATE] = "MISS"  # what a fill that fails leaves in the access log
    try:
        filled = await store.fill(
            lookup,
            partial(_fetch, request, handler),
            bounds=policy,
            user=user,
            refresh=directives.refresh,
        )
    except UpstreamError as error:
        stale = _stale(lookup, directives)
        if stale is None:
            error.headers["X-Cache"] = "MISS"  # the 502/504 of a cached route says so too
            raise
        store.stats.stale += 1
        return _respond(stale, stale, "STALE", private=private)
    if filled.answer.status >= 500:
        stale = _stale(lookup, directives)
        if stale is not None:
            store.stats.stale += 1
            return _respond(stale, stale, "STALE", private=private)
    if filled.from_peer:
        store.stats.hits += 1
        outcome = "HIT"
    elif lookup.backend_ok:
        store.stats.misses += 1
        outcome = "MISS"
    else:
        store.stats.bypasses += 1
        outcome = "BYPASS"
    return _respond(filled.answer, filled.entry, outcome, private=private)


class HitReplay:
    """How this step answered a request from the cache, to answer the same request again
    without the steps before it (server/pipeline/shortcut.py)."""

    __slots__ = ("_keys", "_made", "group", "material", "private", "store")

    def __init__(self, store: ResponseCache, material: str, group: str, *, private: bool) -> None:
        self.store = store
        self.material = material
        self.group = group
        self.private = private
        self._keys = store.keys(material, group) if store.reads_now else None
        #: (id, generated_at) of the last entry answered and its headers but Age: the entries
        #: of one key differ by their fill, and a fill by its time (the entry is not held, so
        #: that an evicted body is not kept alive by a remembered request)
        self._made: tuple[int, float, CIMultiDict[str]] | None = None

    async def fresh(self) -> Entry | None:
        """The stored entry if it is fresh now, read as :func:`_read` reads it."""
        if self._keys is not None:
            return self.store.fresh_now(self._keys, time.time())
        lookup = await self.store.lookup(self.material, self.group)
        return lookup.fresh(time.time())

    def respond(self, entry: Entry) -> web.StreamResponse:
        """The answer of a hit on ``entry`` (from :meth:`fresh`), counted as one."""
        self.store.stats.hits += 1
        self.store.stats.shortcuts += 1
        made = self._made
        if made is None or made[0] != id(entry) or made[1] != entry.generated_at:
            made = (id(entry), entry.generated_at, _headers(entry, entry, "HIT", self.private))
            self._made = made
        return _respond(entry, entry, "HIT", private=self.private, headers=made[2])


def _restriction(route: Route, identity: Identity) -> str:
    """The token's account patterns when the gateway computes the answer itself.

    The gateway's own endpoints may filter by them (``/slurmgate/v1/usage`` does), so an answer
    made for one set of patterns must never be served to a token with another; slurmrestd's reads
    do not depend on them (tokens' patterns are checked on writes only).
    """
    if route.namespace is not Namespace.SLURMGATE or not identity.accounts:
        return ""
    return "\n".join(f"{pattern.flags}:{pattern.pattern}" for pattern in identity.accounts)


def _joined(request: web.Request, name: str) -> str | None:
    """Every value of a list header, as one (RFC 9110 5.3: repeated fields are one list)."""
    values = request.headers.getall(name, [])
    return ", ".join(values) if values else None


async def _fetch(request: web.Request, handler: Handler) -> Answer:
    """The next step's answer for ``request`` as an :class:`Answer`."""
    response = await handler(request)
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        raise TypeError(f"the cache needs a web.Response with bytes, got {type(response)}")
    headers = tuple(
        (name, value) for name, value in response.headers.items() if name.lower() not in _NOT_STORED
    )
    return Answer(response.status, response.reason, headers, response.body)


def _stale(lookup: Lookup, directives: Directives) -> Entry | None:
    """The stored entry if the client accepts it in place of a failed upstream call."""
    entry = lookup.entry
    if entry is None or directives.stale_if_error is None:
        return None
    if time.time() - entry.stale_at > directives.stale_if_error:
        return None
    return entry


@functools.lru_cache(maxsize=1024)
def _timestamp(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds; formatted once per stored answer, not per hit."""
    generated = datetime.fromtimestamp(seconds, UTC)
    return generated.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _headers(
    answer: Answer | Entry, entry: Entry | None, outcome: str, private: bool
) -> CIMultiDict[str]:
    """The answer's headers, all but ``Age`` (the one that changes from second to second)."""
    headers = CIMultiDict(answer.headers)
    headers["Server"] = "slurmgate"
    headers["X-Cache"] = outcome
    if entry is not None:
        max_age = f"max-age={int(entry.lifetime)}"
        headers["Cache-Control"] = f"private, {max_age}" if private else max_age
        headers["X-Cache-Generated-At"] = _timestamp(entry.generated_at)
        headers["X-Cache-Upstream-Seconds"] = f"{entry.upstream_seconds:.3f}"
    return headers


def _respond(
    answer: Answer | Entry,
    entry: Entry | None,
    outcome: str,
    *,
    private: bool,
    headers: CIMultiDict[str] | None = None,
) -> web.StreamResponse:
    """The answer to send; ``headers``: made by :func:`_headers` for these arguments already
    (copied, never changed: the response gets a copy of its own)."""
    if headers is None:
        headers = _headers(answer, entry, outcome, private)
    response: web.StreamResponse
    if entry is not None and entry.file is not None:
        response = _FileAnswer(entry.file, entry.status, entry.reason, headers)
    else:
        response = web.Response(
            status=answer.status, reason=answer.reason or None, body=answer.body, headers=headers
        )
    if entry is not None:
        response.headers["Age"] = str(int(entry.age(time.time())))
    return response


class _FileAnswer(web.StreamResponse):
    """A stored body sent from its memory file with sendfile(2) (server/cache/bodyfile.py).

    What aiohttp's FileResponse does for files on disk, without its Range, ETag and
    Last-Modified handling: the answer stays exactly slurmrestd's.
    """

    def __init__(self, file: BodyFile, status: int, reason: str, headers: CIMultiDict[str]) -> None:
        super().__init__(status=status, reason=reason or None, headers=headers)
        self.content_length = file.size
        #: held until the answer is sent, which keeps the descriptor open if the entry is evicted
        self._file = file

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        writer = await super().prepare(request)  # sends the status line and headers
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost before the body was sent")
        loop = asyncio.get_running_loop()
        try:
            with self._file.reader() as body:
                await loop.sendfile(transport, body, 0, self._file.size, fallback=False)
        except asyncio.SendfileNotAvailableError:  # TLS: written from the mapping instead
            await super().write(self._file.view)
        await super().write_eof()
        return writer
