"""The job events of the gateway's cluster as a long-lived resource: ``events_ctx`` starts the
stream and its poller, ``events_shutdown`` ends every stream when the gateway stops.

The poller reads as the SlurmUser (``send_as`` with no user), with the newest API version the
upstream serves, through the same cap on upstream calls as everything else (purpose ``events``);
what each subscriber sees is decided by server/events/filters.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from slurmgate.server.errors import UpstreamUnavailable
from slurmgate.server.events.hub import JobEvents
from slurmgate.server.events.poller import Interval, Poller
from slurmgate.server.keys import JOB_EVENTS, SETTINGS, UPSTREAM_VERSIONS
from slurmgate.server.upstream.acting import send_as

__all__ = ["events_ctx", "events_shutdown", "fetch_jobs"]

log = logging.getLogger("slurmgate.events")


async def fetch_jobs(app: web.Application, update_time: int) -> bytes:
    """``GET /slurm/<newest>/jobs[?update_time=T]`` as the SlurmUser: the answer's body."""
    served = app[UPSTREAM_VERSIONS].served
    if not served:
        raise UpstreamUnavailable("slurmrestd serves no API version slurmgate knows")
    target = f"/slurm/{served[-1]}/jobs"
    if update_time:
        target += f"?update_time={update_time}"
    answer = await send_as(
        app, "GET", target, user=None, headers=(("Accept", "application/json"),), purpose="events"
    )
    if answer.status != 200:
        raise UpstreamUnavailable(f"slurmrestd answered GET {target} with {answer.status}")
    return answer.body


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """Make ``app[JOB_EVENTS]`` and run its poller (idle until somebody subscribes)."""
    settings = app[SETTINGS].events
    events = JobEvents(
        buffer_size=settings.buffer,
        queue_size=settings.queue,
        max_subscribers=settings.max_subscribers,
        max_per_caller=settings.max_subscribers_per_caller,
    )
    app[JOB_EVENTS] = events
    bounds = Interval(settings.min_interval, settings.max_interval, settings.load_factor)

    async def fetch(update_time: int) -> bytes:
        return await fetch_jobs(app, update_time)

    poller = Poller(events, fetch, bounds)
    task = asyncio.create_task(poller.run(), name="slurmgate job events poller")
    try:
        yield
    finally:
        events.close("shutdown", "the gateway is stopping")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def events_shutdown(app: web.Application) -> None:
    """On SIGTERM: end every stream cleanly (a final ``end`` event), so that aiohttp need not
    wait ``listen.shutdown_timeout`` for them nor cut them."""
    events = app.get(JOB_EVENTS)
    if events is None:
        return
    if events.subscribers:
        log.info("ending %d job event streams: the gateway is stopping", events.subscribers)
    # Also refuses streams asked for from now on (503): the gateway is going away.
    events.close("shutdown", "the gateway is stopping; reconnect with Last-Event-ID")
