"""Which API versions the gateway serves: the generated ones slurmrestd serves too.

``app[UPSTREAM_VERSIONS]`` is one :class:`UpstreamVersions`, registered in ``build_app`` before
the app starts; :func:`versions_ctx` asks slurmrestd's ``/openapi/v3`` and changes what that
holder holds, and nothing writes to the app after start (aiohttp deprecates changing a started
application, and its development branch refuses it). Until slurmrestd answers, the configured
versions are served (``versions``; none configured: every generated one). The first attempt is
awaited up to ``upstream.timeout`` before the gateway serves, so a healthy upstream's list applies
from the first request; while slurmrestd cannot answer, the discovery retries in the background
every :attr:`UpstreamVersions.retry_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial

from aiohttp import web

from slurmgate.generated import VERSIONS
from slurmgate.server.errors import SlurmgateError, UpstreamUnavailable
from slurmgate.server.keys import SETTINGS, UPSTREAM_VERSIONS
from slurmgate.server.upstream.acting import send_as

__all__ = ["RETRY_SECONDS", "UpstreamVersions", "ask_upstream", "versions_ctx"]

log = logging.getLogger("slurmgate.upstream")

#: seconds between attempts to learn the upstream's API versions while it cannot answer
RETRY_SECONDS = 30.0
#: the first segment of the paths that name an API version (/slurm/v0.0.45/...)
_NAMESPACES = frozenset({"slurm", "slurmdb", "util"})


class UpstreamVersions:
    """The API versions served, oldest first: one object for the app's life, its contents learnt.

    ``wanted``: the configured versions (empty: every generated one); one the gateway was not
    generated for is never served.
    """

    def __init__(self, wanted: Iterable[str] = (), *, retry_seconds: float = RETRY_SECONDS) -> None:
        wanted = frozenset(wanted)
        #: the generated versions configured, oldest first (VERSIONS is oldest first)
        self._wanted = tuple(api.version for api in VERSIONS if not wanted or api.version in wanted)
        #: seconds between attempts while slurmrestd cannot answer (tests shorten it before start)
        self.retry_seconds = retry_seconds
        #: replaced whole by learn(), never changed in place, so a reader's tuple stays as it was
        self._served = self._wanted
        #: set by learn(): slurmrestd has said which versions it serves
        self._learnt = asyncio.Event()

    @property
    def served(self) -> tuple[str, ...]:
        """The versions served now, oldest first."""
        return self._served

    @property
    def learnt(self) -> bool:
        """Whether slurmrestd has answered (False: the configured versions are assumed)."""
        return self._learnt.is_set()

    def learn(self, upstream: Iterable[str]) -> tuple[str, ...]:
        """Serve the configured versions that ``upstream`` (slurmrestd's list) has; those."""
        offered = frozenset(upstream)
        self._served = tuple(version for version in self._wanted if version in offered)
        self._learnt.set()
        return self._served

    async def wait_learnt(self) -> None:
        """Return once slurmrestd has said which versions it serves."""
        await self._learnt.wait()


async def ask_upstream(app: web.Application) -> frozenset[str]:
    """The API versions slurmrestd's own ``/openapi/v3`` lists."""
    answer = await send_as(
        app,
        "GET",
        "/openapi/v3",
        user=None,
        headers=(("Accept", "application/json"),),
        purpose="versions",
    )
    if answer.status != 200:
        raise UpstreamUnavailable(f"GET /openapi/v3 answered {answer.status}")
    paths = json.loads(answer.body).get("paths", {})
    return frozenset(
        p.split("/")[2] for p in paths if p.count("/") > 2 and p.split("/")[1] in _NAMESPACES
    )


async def _discover(
    versions: UpstreamVersions,
    ask: Callable[[], Awaitable[Iterable[str]]],
    attempted: asyncio.Event,
) -> None:
    """Ask until slurmrestd answers; ``attempted`` is set after the first attempt."""
    while True:
        try:
            served = versions.learn(await ask())
        except (SlurmgateError, ValueError, AttributeError) as error:
            log.warning("cannot ask slurmrestd for its API versions (%s); retrying", error)
            attempted.set()
            await asyncio.sleep(versions.retry_seconds)
        else:
            log.info("serving API versions %s", ", ".join(served))
            attempted.set()
            return


async def versions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: learn into ``app[UPSTREAM_VERSIONS]`` which versions slurmrestd serves."""
    attempted = asyncio.Event()
    task = asyncio.create_task(
        _discover(app[UPSTREAM_VERSIONS], partial(ask_upstream, app), attempted),
        name="slurmgate API version discovery",
    )
    # Serve once the first attempt is over, so a healthy upstream's versions apply at once.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(attempted.wait(), app[SETTINGS].upstream.timeout)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
