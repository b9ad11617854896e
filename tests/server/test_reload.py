"""Reloading (server/ops/reload.py) in process, in front of a fake slurmrestd: what a reload
applies, what it keeps, and that a bad file changes nothing. SIGHUP itself: test_serve_limits.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.config import load_settings
from slurmgate.server.keys import RATE_LIMITS, RELOADER, REQUIREMENTS, TOKENS, UPSTREAM_GATE
from slurmgate.server.ops.reload import changed_keys
from tests.server.fake_gateway import KEY, FakeSlurmrestd, V
from tests.server.gateway import create_token

NODES = f"/slurm/{V}/nodes/"


class Site:
    """A configuration file, a tokens file and a gateway started from them."""

    def __init__(self, tmp_path: Path, upstream: str) -> None:
        self.config = tmp_path / "slurmgate.toml"
        self.tokens_file = tmp_path / "tokens.toml"
        (tmp_path / "jwt.key").write_bytes(KEY)
        self.upstream = upstream
        self.alice = create_token(self.tokens_file, "alice", scopes=("slurm:read",))
        self.client: TestClient[Any, Any] | None = None

    def write(self, extra: str = "", *, port: int = 8080, upstream: str = "") -> None:
        self.config.write_text(
            f'[listen]\nport = {port}\n[upstream]\nurl = "{self.upstream}"\n{upstream}'
            '[slurm_user_token]\njwt_key = "jwt.key"\n[auth]\ntokens_file = "tokens.toml"\n'
            + extra,
            encoding="utf-8",
        )

    @property
    def app(self) -> web.Application:
        assert self.client is not None
        app: web.Application = self.client.app
        return app

    async def status(self, path: str = NODES) -> int:
        assert self.client is not None
        response = await self.client.get(path, headers={"Authorization": f"Bearer {self.alice}"})
        await response.read()
        return response.status


@asynccontextmanager
async def site(tmp_path: Path, extra: str = "") -> AsyncIterator[Site]:
    fake = FakeSlurmrestd()
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(upstream_app, host="127.0.0.1")
    await server.start_server()
    try:
        gateway = Site(tmp_path, str(server.make_url("")).rstrip("/"))
        gateway.write(extra)
        app = build_app(load_settings(gateway.config), config_file=gateway.config)
        gateway.client = TestClient(TestServer(app, host="127.0.0.1"))
        await gateway.client.start_server()
        try:
            yield gateway
        finally:
            await gateway.client.close()
    finally:
        await server.close()


async def test_a_reload_applies_rate_limits_rules_and_the_upstream_cap(tmp_path: Path) -> None:
    async with site(tmp_path) as gw:
        assert [await gw.status() for _ in range(3)] == [200] * 3
        gw.write(
            "[limits]\nrate = 0.1\nburst = 2\n", upstream="max_concurrency = 3\nmax_queue = 7\n"
        )
        assert await gw.app[RELOADER].reload()
        assert [await gw.status() for _ in range(3)] == [200, 200, 429]
        gate = gw.app[UPSTREAM_GATE]
        assert (gate.max_concurrency, gate.max_queue) == (3, 7)
        # a group and network rule picks slurm:read: alice's address is not in it
        gw.write('[[authorization.require]]\nscopes = ["slurm:read"]\nnetworks = ["10.9.9.0/24"]\n')
        assert await gw.app[RELOADER].reload()
        assert len(gw.app[REQUIREMENTS]) == 1
        assert await gw.status() == 403
        # and without the limit again (the reload removed [limits]): no 429 any more
        assert (
            gw.app[RATE_LIMITS].limit_of(next(iter(gw.app[TOKENS].entries.values())).identity)
            is None
        )


async def test_a_bad_file_changes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with site(tmp_path, "[limits]\nrate = 0.1\nburst = 1\n") as gw:
        assert [await gw.status() for _ in range(2)] == [200, 429]
        gw.write("[limits]\nrate = -1\nbogus = 2\n")
        with caplog.at_level(logging.ERROR, logger="slurmgate.reload"):
            assert not await gw.app[RELOADER].reload()
        (record,) = [r for r in caplog.records if r.name == "slurmgate.reload"]
        assert "not reloaded, keeping the policies in force; 2 problem(s)" in record.getMessage()
        assert "limits.rate: Input should be greater than 0" in record.getMessage()
        assert "limits.bogus: Extra inputs are not permitted" in record.getMessage()
        assert await gw.status() == 429  # the limit in force is kept
        gw.config.write_text("[upstream\n")
        assert not await gw.app[RELOADER].reload()
        gw.config.unlink()
        assert not await gw.app[RELOADER].reload()
        assert await gw.status() == 429


async def test_a_bad_tokens_file_keeps_the_tokens(tmp_path: Path) -> None:
    async with site(tmp_path) as gw:
        gw.tokens_file.write_text(gw.tokens_file.read_text() + "\n[[token]]\nname = 3\n")
        # the tokens file fails, the configuration (unchanged) reloads
        assert await gw.app[RELOADER].reload()
        assert await gw.status() == 200
        assert len(gw.app[TOKENS].entries) == 1


async def test_keys_that_need_a_restart_are_named_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with site(tmp_path) as gw:
        gw.write("[limits]\nrate = 5.0\nmax_body_bytes = 2048\n[cache]\nbackend = 'off'\n", port=9)
        with caplog.at_level(logging.INFO, logger="slurmgate.reload"):
            assert await gw.app[RELOADER].reload()
        messages = [r.getMessage() for r in caplog.records if r.name == "slurmgate.reload"]
        assert messages[0].endswith("reloaded: limits.rate")
        assert messages[1].endswith(
            "changed but applied only by a restart, old values kept: "
            "cache.backend, limits.max_body_bytes, listen.port"
        )
        # the cache stays on
        assert gw.client is not None
        response = await gw.client.get(NODES, headers={"Authorization": f"Bearer {gw.alice}"})
        assert response.headers["X-Cache"] == "MISS"


def test_changed_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    base = (
        '[upstream]\nurl = "http://127.0.0.1:1"\n[slurm_user_token]\njwt_key = "k"\n'
        '[auth]\ntokens_file = "t"\n'
    )
    config.write_text(base)
    old = load_settings(config)
    config.write_text(
        base.replace("[slurm_user_token]", "max_queue = 3\ntimeout = 5\n[slurm_user_token]")
        + "[auth.munge]\nrate = 2.0\nscopes = ['slurm:read']\n"
        + "[[authorization.require]]\nscopes = ['slurm:read']\ngroups = ['g']\n"
    )
    new = load_settings(config)
    assert changed_keys(old, new) == (
        ["auth.munge.rate", "authorization.require", "upstream.max_queue"],
        ["auth.munge.scopes", "upstream.timeout"],
    )
