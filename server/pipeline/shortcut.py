"""The hit shortcut: a request identical to one just answered from the cache skips the steps
that would decide the same again.

A client polling ``GET /slurm/v0.0.4x/nodes`` sends the same bytes every few seconds, and each
time routing, authentication, the rate limit, authorization and the cache key come to the same
conclusions. This step, right after ``observe``, remembers those conclusions for a
request the full pipeline answered with a plain cache ``HIT``, for ``cache.shortcut_seconds``
(1 s by default; 0 turns the shortcut off). A request then takes the shortcut only if all of
this holds, and otherwise goes through the whole pipeline, which decides (and refuses) as always:

- same method, raw path and query, every header (names, values, order, repeats) and source
  address as the request remembered: nothing any step reads can differ, whatever steps are
  added later; a client that sends a new ``X-Request-ID`` each time never takes it;
- a bearer token, still the very entry of the tokens file that was checked (a reload of the
  file makes new entries, so a revoked or edited token is refused at once) and still active now
  (``expires`` and a scheduled ``revoked`` are checked on every request); MUNGE credentials are
  single-use and always go through authentication;
- no SIGHUP reload and no change of the API versions slurmrestd serves since it was remembered;
- the answer is still fresh in the cache, read as the cache step reads it (``Replay``);
- the caller's rate-limit bucket has room: the request counts against it like any other, and
  when it is empty the full pipeline answers 429.

The answer, the access-log line and the metrics are those of the full pipeline's hit
(``DECISION`` allow, ``CACHE_STATE`` HIT); ``slurmgate_cache_shortcuts_total`` counts them.
What is remembered is bounded (:data:`MAX_REMEMBERED` requests, oldest forgotten first) and
holds credentials only as the tokens file's own memo does, in this process's memory: a lookup
compares a request's bytes with a remembered one's only once their hashes match, and bytes
hashes are keyed per process, so the time a lookup takes tells an attacker nothing usable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from slurmgate.policies.routing import Route
from slurmgate.server.identity.base import Identity
from slurmgate.server.keys import (
    CACHE_REPLAY,
    CACHE_STATE,
    DECISION,
    IDENTITY,
    RATE_LIMITS,
    RELOADER,
    ROUTE,
    SETTINGS,
    TOKENS,
    UPSTREAM_VERSIONS,
    Replay,
)

__all__ = ["MAX_REMEMBERED", "shortcut"]

log = logging.getLogger("slurmgate.cache")

#: Requests remembered at most; clients polling the same URLs need a few each.
MAX_REMEMBERED = 4096

#: (method, raw path and query, raw headers, source address)
_Key = tuple[str, str, tuple[tuple[bytes, bytes], ...], str | None]


@dataclass(frozen=True, slots=True)
class _Pass:
    """The conclusions of the full pipeline for one request, and what they depended on."""

    route: Route
    identity: Identity
    replay: Replay
    #: time.monotonic() after which the full pipeline decides again
    until: float
    #: reloads completed (server/reload.py) and API versions served when it was remembered
    reloads: int
    versions: tuple[str, ...]


def shortcut() -> Middleware:
    """The shortcut step (see the module docstring); goes right after ``observe``."""
    remembered: dict[_Key, _Pass] = {}

    @web.middleware
    async def impl(request: web.Request, handler: Handler) -> web.StreamResponse:
        app = request.app
        seconds = app[SETTINGS].cache.shortcut_seconds
        if seconds <= 0 or request.method != "GET":
            return await handler(request)
        key: _Key = (request.method, request.raw_path, request.raw_headers, request.remote)
        known = remembered.get(key)
        if known is not None:
            try:
                response = await _take(request, app, known)
            except Exception:
                # Outside error_middleware: a failure here must not become an answer of its own.
                log.exception("hit shortcut failed; the full pipeline answers instead")
                response = None
            if response is not None:
                return response
            if remembered.get(key) is known:
                del remembered[key]
        response = await handler(request)
        if (
            request.get(CACHE_STATE) == "HIT"
            and request.get(DECISION) == "allow"
            and CACHE_REPLAY in request
        ):
            identity = request[IDENTITY]
            if identity.method == "token":
                if len(remembered) >= MAX_REMEMBERED:
                    del remembered[next(iter(remembered))]
                remembered[key] = _Pass(
                    route=request[ROUTE],
                    identity=identity,
                    replay=request[CACHE_REPLAY],
                    until=time.monotonic() + seconds,
                    reloads=_reloads(app),
                    versions=app[UPSTREAM_VERSIONS],
                )
        return response

    return impl


def _reloads(app: web.Application) -> int:
    reloader = app.get(RELOADER)
    return -1 if reloader is None else reloader.completed


async def _take(
    request: web.Request, app: web.Application, known: _Pass
) -> web.StreamResponse | None:
    """The answer by the shortcut, or None when the full pipeline must decide."""
    now = time.monotonic()
    if (
        now >= known.until
        or app[UPSTREAM_VERSIONS] is not known.versions
        or _reloads(app) != known.reloads
    ):
        return None
    tokens = app.get(TOKENS)
    identity = known.identity
    if tokens is None or not tokens.still_active(identity):
        return None
    entry = await known.replay.fresh()
    # The bucket last: a request that goes the long way must not have been counted already.
    if entry is None or app[RATE_LIMITS].caller(identity, now, tally=False) is not None:
        return None
    # What observe reads; nothing after this step runs.
    request[ROUTE] = known.route
    request[IDENTITY] = identity
    request[DECISION] = "allow"
    request[CACHE_STATE] = "HIT"
    return known.replay.respond(entry)
