"""The one place that puts the gateway's credentials on a request to slurmrestd."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from slurmgate.server.keys import SLURM_USER_TOKEN, TRANSPORT
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
) -> UpstreamResponse:
    """Send to slurmrestd with the SlurmUser token, acting as ``user`` (None: as SlurmUser).

    ``headers`` are the caller's own (never credentials): ``X-SLURM-USER-NAME`` and
    ``X-SLURM-USER-TOKEN`` are set here and nowhere else.
    """
    token = await app[SLURM_USER_TOKEN].get()
    sent = [*headers]
    if user is not None:
        sent.append(("X-SLURM-USER-NAME", user))
    sent.append(("X-SLURM-USER-TOKEN", token))
    return await app[TRANSPORT].send(UpstreamRequest(method, target, tuple(sent), body))
