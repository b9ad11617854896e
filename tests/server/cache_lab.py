"""What the response cache's lab tests share: the suites they run on, an in-process gateway in
front of a real slurmrestd, concurrent bursts, and upstream calls counted in slurmrestd's log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, TCPConnector
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from slurmgate.server.app import build_app
from slurmgate.server.cache.store import ResponseCache
from slurmgate.server.keys import CACHE
from tests.lab.env import LabSuite
from tests.server.gateway import create_token, gateway_settings, logged_requests

__all__ = [
    "SUITES",
    "Gateway",
    "Reply",
    "burst",
    "by_suite",
    "restd_log",
    "running",
    "upstream_calls",
]

#: One API version per suite: Slurm 24.11 and Slurm 26.05.
SUITES = [("trixie", "v0.0.42"), ("forky", "v0.0.45")]
#: Seconds a burst may take in all.
BURST_TIMEOUT = 120
by_suite = pytest.mark.parametrize(
    ("suite_name", "version"), SUITES, ids=[f"{s}-{v}" for s, v in SUITES]
)


@dataclass(frozen=True)
class Reply:
    """One answer of the gateway, read to the end."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def cache(self) -> str:
        """Its X-Cache header ("" when absent)."""
        return self.headers.get("X-Cache", "")

    def json(self) -> dict[str, Any]:
        """The body as JSON (slurmrestd's answers are objects)."""
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass(frozen=True)
class Gateway:
    """An in-process gateway acting for alice (account physics)."""

    client: TestClient[Any, Any]
    version: str
    token: str

    @property
    def store(self) -> ResponseCache:
        """Its response cache."""
        store: ResponseCache | None = self.client.app[CACHE]
        assert store is not None, "the cache is off"
        return store

    def path(self, tail: str) -> str:
        """``/slurm/<version>/<tail>``."""
        return f"/slurm/{self.version}/{tail}"

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        cache_control: str | None = None,
    ) -> Reply:
        """Send one request as alice."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if cache_control is not None:
            headers["Cache-Control"] = cache_control
        async with self.client.request(method, path, json=body, headers=headers) as response:
            return Reply(response.status, response.headers, await response.read())

    async def get(self, path: str, cache_control: str | None = None) -> Reply:
        """GET ``path`` as alice."""
        return await self.call("GET", path, cache_control=cache_control)


@asynccontextmanager
async def running(
    suite: LabSuite,
    version: str,
    tmp_path: Path,
    cache: dict[str, object],
    **sections: dict[str, object],
) -> AsyncIterator[Gateway]:
    """A gateway in front of ``suite``'s slurmrestd over HTTP with the ``cache`` section."""
    tokens_file = tmp_path / "tokens.toml"
    token = create_token(tokens_file, "alice")
    settings = gateway_settings(suite, "http", tokens_file, cache=cache, **sections)
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
    try:
        await client.start_server()
        yield Gateway(client, version, token)
    finally:
        await client.close()


async def burst(urls: Sequence[str], token: str, count: int) -> list[Reply]:
    """``count`` GETs at once, round-robin over ``urls``, with no limit on connections; all
    within :data:`BURST_TIMEOUT`."""
    headers = {"Authorization": f"Bearer {token}"}
    async with ClientSession(connector=TCPConnector(limit=0)) as session:

        async def one(url: str) -> Reply:
            async with session.get(url, headers=headers) as response:
                return Reply(response.status, response.headers, await response.read())

        async with asyncio.timeout(BURST_TIMEOUT):
            return await asyncio.gather(*(one(urls[i % len(urls)]) for i in range(count)))


def restd_log(suite: LabSuite) -> Path:
    """The log of the suite's shared slurmrestd."""
    return suite.root.parent / "logs" / "slurmrestd.log"


def upstream_calls(log: Path, method: str, path: str) -> Callable[[], int]:
    """A function giving how many ``method path`` requests ``log`` gained since this call."""
    start = logged_requests(log, method, path)
    return lambda: logged_requests(log, method, path) - start
