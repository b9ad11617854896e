"""The one place that puts the gateway's credentials on a request to slurmrestd.

Every upstream call passes here, so its duration and failures are counted here too
(``app[METRICS]``, by purpose: ``forward``, ``lookup``, ``versions``, ``health``), and here it
takes its slot of ``upstream.max_concurrency`` (``app[UPSTREAM_GATE]``, server/upstream/gate.py;
the health pings excepted).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiohttp import web

from slurmgate.server.errors import UpstreamError, UpstreamTimeout
from slurmgate.server.keys import METRICS, SLURM_USER_TOKEN, TRANSPORT, UPSTREAM_GATE
from slurmgate.server.upstream.transport import UpstreamRequest, UpstreamResponse

__all__ = ["send_as"]


async def send_as(
    app: web.Application,
    method: str,
    target: str,
    *,
    user: str | None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    purpose: str = "forward",
) -> UpstreamResponse:
    """Send to slurmrestd with the SlurmUser token, acting as ``user`` (None: as SlurmUser).

    ``headers`` are the caller's own (never credentials): ``X-SLURM-USER-NAME`` and
    ``X-SLURM-USER-TOKEN`` are set here and nowhere else. ``purpose`` labels the call's metrics
    (a fixed word, never anything from a request).
    """
    gate = app.get(UPSTREAM_GATE)
    if gate is None or purpose == "health":
        return await _send(
            app, method, target, user=user, headers=headers, body=body, purpose=purpose
        )
    # Slots are shared out per Slurm user; the gateway's own calls (user None) are one caller.
    # The SlurmUser token is taken once the slot is held: a wait in the queue must not age it.
    async with gate.slot(user or ""):
        return await _send(
            app, method, target, user=user, headers=headers, body=body, purpose=purpose
        )


async def _send(
    app: web.Application,
    method: str,
    target: str,
    *,
    user: str | None,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    purpose: str,
) -> UpstreamResponse:
    metrics = app.get(METRICS)
    try:
        token = await app[SLURM_USER_TOKEN].get()
    except UpstreamError:
        if metrics is not None:
            metrics.upstream_errors.labels("token").inc()
        raise
    sent = [*headers]
    if user is not None:
        sent.append(("X-SLURM-USER-NAME", user))
    sent.append(("X-SLURM-USER-TOKEN", token))
    request = UpstreamRequest(method, target, tuple(sent), body)
    if metrics is None:
        return await app[TRANSPORT].send(request)
    started = time.perf_counter()
    try:
        answer = await app[TRANSPORT].send(request)
    except UpstreamError as error:
        kind = "timeout" if isinstance(error, UpstreamTimeout) else "unavailable"
        metrics.upstream_errors.labels(kind).inc()
        metrics.upstream_seconds.labels(purpose).observe(time.perf_counter() - started)
        raise
    metrics.upstream_seconds.labels(purpose).observe(time.perf_counter() - started)
    return answer
