"""The handlers' side of the cache: read through it around a fetch, retire it after writes, and
turn an answer into a web response, in exactly one place (:func:`respond`).

Not a step of the chain (server/pipeline/chain.py): the handlers call it. ``forward`` reads
through it around the upstream call and invalidates after a write; the gateway's own cached
endpoints (``/hardware/*``, ``/slurmgate/v1/usage``) read through it around their own fetch.
Which requests are cached, how the key is made and what the headers mean: docs/caching.md.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

from slurmgate.policies.routing import Namespace, Route
from slurmgate.server.cache.backends import make_backend
from slurmgate.server.cache.bodyfile import BodyFile
from slurmgate.server.cache.control import Directives, parse_directives
from slurmgate.server.cache.entry import Entry
from slurmgate.server.cache.freshness import bounds
from slurmgate.server.cache.keys import has_update_time, key_material
from slurmgate.server.cache.store import Answer, ResponseCache
from slurmgate.server.errors import BadRequest, ConfigError, UpstreamError
from slurmgate.server.identity.base import Identity
from slurmgate.server.keys import CACHE, CACHE_STATE, IDENTITY, ROUTE, SETTINGS, TARGET

__all__ = [
    "Fetch",
    "cache_ctx",
    "encode_json",
    "invalidate",
    "json_answer",
    "read_through",
    "respond",
]

log = logging.getLogger("slurmgate.cache")

#: A request that says nothing of the cache.
_NONE = Directives()

#: Makes the answer a cached request would get without the cache (the upstream call).
Fetch = Callable[[], Awaitable[Answer]]


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
    store = ResponseCache(
        backend, settings.cache, max_wait=max_wait, upstream_errors=(UpstreamError,)
    )
    app[CACHE] = store
    log.info("cache: %s backend", settings.cache.backend)
    try:
        yield
    finally:
        await store.close()


async def read_through(request: web.Request, fetch: Fetch) -> web.StreamResponse:
    """The answer to ``request``: from the cache when its route is cached, else ``fetch()``'s.

    Sets ``request[CACHE_STATE]`` (as in ``X-Cache``) on cached routes.
    """
    app = request.app
    store = app[CACHE]
    route = request.get(ROUTE)
    if store is None or route is None:
        return respond(await fetch())
    settings = app[SETTINGS].cache
    policy = bounds(settings, route.cache)
    if policy is None:
        return respond(await fetch())
    headers = request.headers
    directives = _NONE
    if "Cache-Control" in headers or "Pragma" in headers:
        try:
            directives = parse_directives(
                _joined(request, "Cache-Control"), _joined(request, "Pragma")
            )
        except ValueError as error:
            raise BadRequest(f"Cache-Control: {error}", source="Cache-Control") from None
    target = request[TARGET]
    if has_update_time(target.partition("?")[2]):
        # update_time answers mean "nothing changed since then" only to that client.
        directives = replace(directives, no_store=True)
    identity = request[IDENTITY]
    material = key_material(
        target,
        headers.get("Accept", ""),
        identity.user if settings.per_user else None,
        _restriction(route, identity),
    )
    try:
        served = await store.read(
            material,
            route.cache_group,
            fetch,
            bounds=policy,
            user=identity.user,
            directives=directives,
        )
    except BaseException as error:
        request[CACHE_STATE] = "MISS"  # what a fill that fails leaves in the access log
        if isinstance(error, UpstreamError):
            error.headers["X-Cache"] = "MISS"  # the 502/504 of a cached route says so too
        raise
    request[CACHE_STATE] = served.outcome
    return respond(served.answer, served.entry, served.outcome, private=settings.per_user)


async def invalidate(request: web.Request, groups: Sequence[str]) -> None:
    """Retire the cache groups a write makes stale (sent or not: a timed-out submit may still
    have created a job)."""
    store = request.app[CACHE]
    if store is not None and groups:
        await store.invalidate(groups)


def encode_json(body: Mapping[str, object]) -> bytes:
    """``body`` as the gateway's own endpoints send JSON: indented as slurmrestd does."""
    return json.dumps(body, indent=2).encode() + b"\n"


def json_answer(data: bytes) -> Answer:
    """A 200 answer the gateway makes itself, of JSON bytes (from :func:`encode_json`)."""
    return Answer(200, "OK", (("Content-Type", "application/json"),), data)


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


@functools.lru_cache(maxsize=1024)
def _timestamp(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds; formatted once per stored answer, not per hit."""
    generated = datetime.fromtimestamp(seconds, UTC)
    return generated.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _headers(
    answer: Answer | Entry, entry: Entry | None, outcome: str | None, private: bool
) -> CIMultiDict[str]:
    """The answer's headers, all but ``Age`` (the one that changes from second to second)."""
    headers = CIMultiDict(answer.headers)
    # Without this aiohttp announces its own and Python's versions.
    headers["Server"] = "slurmgate"
    if outcome is not None:
        headers["X-Cache"] = outcome
    if entry is not None:
        max_age = f"max-age={int(entry.lifetime)}"
        headers["Cache-Control"] = f"private, {max_age}" if private else max_age
        headers["X-Cache-Generated-At"] = _timestamp(entry.generated_at)
        headers["X-Cache-Upstream-Seconds"] = f"{entry.upstream_seconds:.3f}"
    return headers


def respond(
    answer: Answer | Entry,
    entry: Entry | None = None,
    outcome: str | None = None,
    *,
    private: bool = False,
) -> web.StreamResponse:
    """The web response for ``answer``: the only place an answer becomes one.

    ``entry``: the stored entry it is (adds the cache headers and ``Age``; its headers are made
    once per entry and outcome); ``outcome``: the ``X-Cache`` value (None: an uncached route).
    Status, headers and bytes are the answer's, hop-by-hop headers having been left out when it
    was made (server/pipeline/upstream.py).
    """
    if entry is None:
        return web.Response(
            status=answer.status,
            reason=answer.reason or None,
            body=answer.body,
            headers=_headers(answer, None, outcome, private),
        )
    key = (outcome or "", private)
    made = entry.headers_made.get(key)
    if made is None:
        made = entry.headers_made[key] = _headers(answer, entry, outcome, private)
    # Each response copies ``made`` into headers of its own, so the made ones never change.
    response: web.StreamResponse
    if entry.file is not None:
        response = _FileAnswer(entry.file, entry.status, entry.reason, made)
    else:
        response = web.Response(
            status=entry.status, reason=entry.reason or None, body=entry.body, headers=made
        )
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
