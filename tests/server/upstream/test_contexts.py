"""The cleanup contexts app.py lists: the transport and the SlurmUser token, for the app's life."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from slurmgate.server.config import Settings
from slurmgate.server.errors import UpstreamUnavailable
from slurmgate.server.keys import SETTINGS, SLURM_USER_TOKEN, TRANSPORT
from slurmgate.server.upstream import slurm_user_token_ctx, transport_ctx
from slurmgate.server.upstream.transport import UpstreamRequest
from tests.server.upstream.fakes import FAKE_INETD, raw_upstream

KEY = bytes(range(64))
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
PING = UpstreamRequest("GET", "/slurm/v0.0.45/ping/", ())


def settings(tmp_path: Path, upstream: dict[str, Any], **token: float) -> Settings:
    return Settings.model_validate(
        {
            "upstream": upstream,
            "slurm_user_token": {"jwt_key": str(tmp_path / "jwt_hs256.key"), **token},
            "auth": {"tokens_file": str(tmp_path / "tokens.toml")},
        }
    )


async def started(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts up to their yield
    return runner


async def test_transport_ctx_serves_the_app_and_closes_at_shutdown(tmp_path: Path) -> None:
    async with raw_upstream(answer=OK) as fake:
        app = web.Application()
        app[SETTINGS] = settings(tmp_path, {"transport": "http", "url": fake.url})
        app.cleanup_ctx.append(transport_ctx)
        runner = await started(app)
        try:
            transport = app[TRANSPORT]
            assert (await transport.send(PING)).body == b"{}"
        finally:
            await runner.cleanup()
        with pytest.raises(UpstreamUnavailable, match="shutting down"):
            await transport.send(PING)


async def test_inetd_transport_ctx(tmp_path: Path) -> None:
    (tmp_path / "answer.bin").write_bytes(OK)
    app = web.Application()
    command = [*FAKE_INETD, "answer", str(tmp_path)]
    app[SETTINGS] = settings(tmp_path, {"transport": "inetd", "command": command})
    app.cleanup_ctx.append(transport_ctx)
    runner = await started(app)
    try:
        assert (await app[TRANSPORT].send(PING)).body == b"{}"
    finally:
        await runner.cleanup()


async def test_token_ctx_fetches_the_first_token_at_start(tmp_path: Path) -> None:
    (tmp_path / "jwt_hs256.key").write_bytes(KEY)
    app = web.Application()
    app[SETTINGS] = settings(tmp_path, {"transport": "http", "url": "http://127.0.0.1:1"})
    app.cleanup_ctx.append(slurm_user_token_ctx)
    runner = await started(app)
    try:
        token = app[SLURM_USER_TOKEN]
        assert token.expires_at is not None  # before any request asked
        assert jwt.decode(await token.get(), KEY, algorithms=["HS256"])["sun"] == "slurm"
    finally:
        await runner.cleanup()


async def test_token_ctx_starts_without_a_token_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application()
    app[SETTINGS] = settings(
        tmp_path, {"transport": "http", "url": "http://127.0.0.1:1"}, retry_interval=60
    )
    app.cleanup_ctx.append(slurm_user_token_ctx)
    runner = await started(app)  # the key is missing: the gateway starts all the same
    try:
        token = app[SLURM_USER_TOKEN]
        with pytest.raises(UpstreamUnavailable) as caught:
            await token.get()
        assert caught.value.status == 502
        (tmp_path / "jwt_hs256.key").write_bytes(KEY)
        assert await token.get()  # no waiting for the retry: a request renews when it must
    finally:
        await runner.cleanup()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("starting without a SlurmUser token" in message for message in errors)
    assert any("cannot read the key: No such file or directory" in m for m in errors)
