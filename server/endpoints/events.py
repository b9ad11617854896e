"""``GET /slurmgate/v1/events/jobs``: the cluster's job events as Server-Sent Events.

One poller per gateway process feeds every stream (server/events/). A stream starts with a
``retry`` line and either a ``snapshot`` of the jobs the caller may see (no ``Last-Event-ID``),
the events missed since ``Last-Event-ID`` (when they are still kept), or a ``resync`` (a
snapshot saying why the missed events cannot be told). Then ``appeared``, ``changed`` and
``left`` events, a heartbeat comment (with the stream's current id) after ``events.heartbeat``
quiet seconds, and at the end an ``end`` event giving the reason: ``slow_consumer``,
``shutdown``, ``max_duration`` or ``credentials`` (the token was revoked, expired or changed).

It goes through the whole pipeline like any request (scope ``slurmgate:events``, rate limits),
and is never cached. The access log's line is written when the stream ends, with its duration
and the bytes sent. docs/events.md describes the format.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from aiohttp import web

from slurmgate.server.errors import (
    BadRequest,
    GatewayBusy,
    NotAcceptable,
    TooManyRequests,
    UpstreamUnavailable,
)
from slurmgate.server.events import sse
from slurmgate.server.events.filters import FilterError, View, Visibility, parse_filter
from slurmgate.server.events.hub import Start, Subscription, TooManySubscribers, snapshot_frame
from slurmgate.server.identity.base import Identity
from slurmgate.server.keys import IDENTITY, JOB_EVENTS, REQUEST_ID, SETTINGS, TOKENS
from slurmgate.server.pipeline.observe import REQUEST_ID_HEADER

__all__ = ["MAX_LAST_EVENT_ID", "jobs"]

log = logging.getLogger("slurmgate.events")

#: Longer Last-Event-ID values are not ids of this gateway: such a client gets a resync.
MAX_LAST_EVENT_ID = 64
_STREAM_TYPES = frozenset({"", "*/*", "text/*", "text/event-stream"})


class _Gone(Exception):
    """The client went away, or stopped reading for longer than events.write_timeout."""


def _check_accept(request: web.Request) -> None:
    accept = ",".join(request.headers.getall("Accept", []))
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if not types & _STREAM_TYPES:
        raise NotAcceptable(
            "the job events are a text/event-stream; send Accept: text/event-stream or none",
            source="Accept",
        )


def _last_event_id(request: web.Request) -> str | None:
    values = request.headers.getall("Last-Event-ID", [])
    if len(values) > 1:
        raise BadRequest("Last-Event-ID given more than once", source="Last-Event-ID")
    if not values or not values[0].strip():
        return None
    value = values[0]
    # Too long to be ours: resync (buffer.since answers unknown_id for it).
    return value if len(value) <= MAX_LAST_EVENT_ID else "-"


def _still_valid(app: web.Application, identity: Identity) -> bool:
    """Whether the token the stream was opened with is still in force, unchanged."""
    if identity.method != "token":
        return True  # a MUNGE credential is used once; max_duration bounds its stream
    entry = app[TOKENS].entries.get(identity.name)
    return (
        entry is not None
        and entry.status(datetime.now(UTC)) == "active"
        and entry.identity == identity
    )


async def _write(response: web.StreamResponse, data: bytes, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            await response.write(data)
    except (ConnectionError, TimeoutError) as error:
        raise _Gone(type(error).__name__) from None


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    subscription: Subscription,
    start: Start,
) -> None:
    app = request.app
    settings = app[SETTINGS].events
    events = app[JOB_EVENTS]
    identity = request[IDENTITY]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.max_duration
    first = [sse.retry(settings.retry)]
    if start.kind == "replay":
        first.extend(start.frames)
    else:
        first.append(await asyncio.to_thread(snapshot_frame, start, subscription.view))
    await _write(response, b"".join(first), settings.write_timeout)
    while True:
        left = deadline - loop.time()
        if left <= 0:
            subscription.end(
                "max_duration",
                f"streams last at most {settings.max_duration:g} s (events.max_duration); "
                "reconnect with Last-Event-ID",
            )
        elif not _still_valid(app, identity):
            subscription.end("credentials", "the token was revoked, expired or changed")
        frames = await subscription.take(min(settings.heartbeat, max(left, 0.0)))
        if frames:
            await _write(response, b"".join(frames), settings.write_timeout)
        elif subscription.ending is not None:
            break
        else:
            # Nothing queued: this subscriber has had every event it sees up to the newest, so
            # the newest id is its position (an id line alone moves a client's Last-Event-ID).
            subscription.delivered = events.last_id
            heartbeat = b": heartbeat\nid: " + subscription.delivered.encode() + b"\n\n"
            await _write(response, heartbeat, settings.write_timeout)
    await _write(response, subscription.end_frame(), settings.write_timeout)
    try:
        async with asyncio.timeout(settings.write_timeout):
            await response.write_eof()
    except (ConnectionError, TimeoutError) as error:
        raise _Gone(type(error).__name__) from None


async def jobs(request: web.Request) -> web.StreamResponse:
    """The job events the caller may see, filtered by its query (see the module docstring)."""
    app = request.app
    settings = app[SETTINGS]
    events = app[JOB_EVENTS]
    _check_accept(request)
    try:
        job_filter = parse_filter(request.rel_url.query.items())
    except FilterError as error:
        raise BadRequest(f"{error.key}: {error.why}", source=f"query:{error.key}") from None
    last_event_id = _last_event_id(request)
    identity = request[IDENTITY]
    per_user = settings.events.per_user
    if per_user is None:
        per_user = settings.cache.per_user
    view = View(Visibility(identity.accounts, identity.user if per_user else None), job_filter)
    headers = {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-store",
        # nginx would otherwise buffer the stream
        "X-Accel-Buffering": "no",
        "Server": "slurmgate",
    }
    if request.method == "HEAD":
        return web.Response(headers=headers)  # the headers a GET would get; no stream, no slot
    if not await events.first_list(settings.upstream.timeout):
        raise UpstreamUnavailable(
            "the job events have no list of jobs from slurmrestd yet", source="slurmgate events"
        )
    try:
        subscription, start = events.subscribe(view, identity.name, last_event_id)
    except TooManySubscribers as error:
        if error.per_caller:
            raise TooManyRequests(error.description, retry_after=settings.events.retry) from None
        raise GatewayBusy(error.description, retry_after=settings.events.retry) from None
    # observe adds X-Request-ID only to answers not yet sent: a stream is sent before it ends.
    response = web.StreamResponse(headers={**headers, REQUEST_ID_HEADER: request[REQUEST_ID]})
    try:
        await response.prepare(request)
        await _stream(request, response, subscription, start)
    except _Gone as error:
        log.debug("job events: %s gone (%s)", identity.name, error)
        transport = request.transport
        if transport is not None:
            transport.abort()
    except ConnectionError as error:
        log.debug("job events: %s gone (%s)", identity.name, error)
    finally:
        events.unsubscribe(subscription)
    return response
