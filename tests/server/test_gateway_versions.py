"""Version discovery in a running gateway (server/upstream/versions.py): the holder registered
before start, the versions served until and after slurmrestd answers, the retry while it cannot,
and no write to the started app on the way."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from pathlib import Path

import pytest
from aiohttp import web

from slurmgate.generated import ROUTES
from slurmgate.server.keys import UPSTREAM_VERSIONS
from slurmgate.server.upstream.versions import UpstreamVersions
from tests.server.fake_gateway import FakeSlurmrestd, Gateway, V, start

OLDER = "v0.0.44"  # generated, but not among the versions the fake slurmrestd lists


async def listed(gw: Gateway) -> list[str]:
    """The versions ``GET /meta/versions`` lists."""
    response = await gw.get("/meta/versions", user=None)
    assert response.status == 200
    return [entry["version"] for entry in json.loads(await response.read())["versions"]]


async def older_ping(gw: Gateway) -> tuple[int, str]:
    response = await gw.get(f"/slurm/{OLDER}/ping/")
    body = json.loads(await response.read())
    return response.status, body["errors"][0]["description"] if response.status != 200 else ""


async def test_a_healthy_upstream_s_versions_apply_from_the_first_request(tmp_path: Path) -> None:
    async with start(tmp_path) as gw:
        versions = gw.client.app[UPSTREAM_VERSIONS]
        assert (versions.learnt, versions.served) == (True, (V,))
        assert await listed(gw) == [V]
        assert gw.upstream.openapi_calls == 1


async def test_discovery_retries_until_slurmrestd_answers_and_never_writes_to_the_app(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.upstream")
    gate = asyncio.Event()

    def refuse_first(app: web.Application, upstream: FakeSlurmrestd) -> None:
        app[UPSTREAM_VERSIONS].retry_seconds = 0.01  # before start: the app is not frozen yet
        upstream.openapi_refusals = 2
        upstream.openapi_gate = gate  # the attempt after the refusals waits for the test

    # aiohttp warns about every change to a started app; record every warning, expect none.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with start(tmp_path, before=refuse_first) as gw:
            versions = gw.client.app[UPSTREAM_VERSIONS]
            # The first attempt was refused: serving started with every generated version.
            assert not versions.learnt
            assert versions.served == tuple(ROUTES)
            assert await listed(gw) == list(ROUTES)
            assert (await older_ping(gw))[0] == 200
            gate.set()
            async with asyncio.timeout(10):
                await versions.wait_learnt()
            assert versions.served == (V,)
            assert gw.upstream.openapi_calls == 3
            assert gw.client.app[UPSTREAM_VERSIONS] is versions  # the same holder, new contents
            assert await listed(gw) == [V]
            assert await older_ping(gw) == (
                404,
                f"API version {OLDER} is not served here; supported: {V}",
            )
    assert [str(warning.message) for warning in caught] == []
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        retries
        == ["cannot ask slurmrestd for its API versions (GET /openapi/v3 answered 503); retrying"]
        * 2
    )
    assert f"serving API versions {V}" in caplog.text


async def test_a_first_attempt_without_answer_delays_serving_by_upstream_timeout_at_most(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()

    def hang(app: web.Application, upstream: FakeSlurmrestd) -> None:
        app[UPSTREAM_VERSIONS].retry_seconds = 0.01
        upstream.openapi_gate = gate  # every attempt waits until the test opens it

    async with asyncio.timeout(10), start(tmp_path, before=hang, upstream={"timeout": 0.2}) as gw:
        versions = gw.client.app[UPSTREAM_VERSIONS]
        assert not versions.learnt
        assert await listed(gw) == list(ROUTES)
        gate.set()
        await versions.wait_learnt()
        assert await listed(gw) == [V]


async def test_a_write_to_the_started_app_would_be_caught(tmp_path: Path) -> None:
    # What the test above relies on: aiohttp does warn, so recording no warning means no write.
    async with start(tmp_path) as gw:
        with pytest.warns(DeprecationWarning, match="Changing state of started"):
            gw.client.app[UPSTREAM_VERSIONS] = UpstreamVersions()
