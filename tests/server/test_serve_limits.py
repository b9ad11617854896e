"""``slurmgate serve`` as a real process: graceful shutdown on SIGTERM (in front of a fake
slurmrestd that holds an answer), reload on SIGHUP (in front of the lab's Slurm)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.lab.env import Lab
from tests.server.fake_gateway import KEY, FakeSlurmrestd, V, free_port
from tests.server.gateway import create_token
from tests.server.served import served


@asynccontextmanager
async def fake_slurmrestd() -> AsyncIterator[tuple[FakeSlurmrestd, str]]:
    fake = FakeSlurmrestd()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        fake.release.set()
        await server.close()


def write_config(
    tmp_path: Path, upstream: str, jwt_key: Path, port: int, *, extra: str = "", listen: str = ""
) -> Path:
    config = tmp_path / "slurmgate.toml"
    config.write_text(
        f'[listen]\nport = {port}\n{listen}[upstream]\nurl = "{upstream}"\n'
        f'[slurm_user_token]\njwt_key = "{jwt_key}"\n[auth]\ntokens_file = "tokens.toml"\n' + extra,
        encoding="utf-8",
    )
    return config


async def refused(port: int) -> bool:
    """Whether a new connection to the port is refused now."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_sigterm_finishes_the_request_under_way_and_refuses_new_ones(tmp_path: Path) -> None:
    token = create_token(tmp_path / "tokens.toml", "alice", scopes=("slurm:read",))
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    port = free_port()
    async with fake_slurmrestd() as (fake, url):
        held = f"/slurm/{V}/job/42"
        fake.held.add(held)
        config = write_config(tmp_path, url, key, port, listen="shutdown_timeout = 30\n")
        async with served(config, port) as gateway, aiohttp.ClientSession() as session:
            await gateway.wait_ready()
            slow = asyncio.create_task(
                session.get(gateway.url + held, headers={"Authorization": f"Bearer {token}"})
            )
            await asyncio.wait_for(fake.arrived.wait(), 30)
            gateway.signal(signal.SIGTERM)
            await gateway.wait_for_line(r"stopping: no new connections")
            # the listening socket is closed at once...
            assert await refused(port)
            # ...while the request under way is still being served
            await asyncio.sleep(0.5)
            assert gateway.process.returncode is None
            assert not slow.done()
            fake.release.set()
            response = await asyncio.wait_for(slow, 30)
            assert response.status == 200
            assert await response.json() == {"nodes": [], "meta": {}, "errors": [], "warnings": []}
            assert await gateway.exit_status() == 0
        assert not any("Traceback" in line for line in gateway.lines), gateway.lines


async def test_sigterm_cuts_what_outlasts_the_shutdown_timeout(tmp_path: Path) -> None:
    token = create_token(tmp_path / "tokens.toml", "alice", scopes=("slurm:read",))
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    port = free_port()
    async with fake_slurmrestd() as (fake, url):
        held = f"/slurm/{V}/job/43"
        fake.held.add(held)
        config = write_config(tmp_path, url, key, port, listen="shutdown_timeout = 1.0\n")
        async with served(config, port) as gateway, aiohttp.ClientSession() as session:
            await gateway.wait_ready()
            slow = asyncio.create_task(
                session.get(gateway.url + held, headers={"Authorization": f"Bearer {token}"})
            )
            await asyncio.wait_for(fake.arrived.wait(), 30)
            loop = asyncio.get_running_loop()
            started = loop.time()
            gateway.signal(signal.SIGTERM)
            assert await gateway.exit_status(within=30) == 0
            # one shutdown_timeout to finish, one more for the cancelled handler at most
            assert loop.time() - started < 10
            with pytest.raises(aiohttp.ClientError):
                await slow


async def test_sighup_reloads_limits_and_tokens_and_keeps_them_on_a_bad_file(
    lab: Lab, tmp_path: Path
) -> None:
    suite = lab.suites["trixie"]
    tokens = tmp_path / "tokens.toml"
    alice = create_token(tokens, "alice", scopes=("slurm:read",))
    port = free_port()
    config = write_config(tmp_path, suite.url, suite.jwt_key, port)
    ping = "/slurm/latest/ping/"
    async with served(config, port) as gateway, aiohttp.ClientSession() as session:
        await gateway.wait_ready()

        async def statuses(secret: str, count: int) -> list[int]:
            result = []
            for _ in range(count):
                headers = {"Authorization": f"Bearer {secret}"}
                async with session.get(gateway.url + ping, headers=headers) as response:
                    await response.read()
                    result.append(response.status)
            return result

        async def reload() -> str:
            mark = len(gateway.lines)
            gateway.signal(signal.SIGHUP)
            return await gateway.wait_for_line(
                r"configuration .* (reloaded|not reloaded)", after=mark
            )

        assert await statuses(alice, 4) == [200] * 4
        # a rate limit, and a new token, by SIGHUP
        write_config(
            tmp_path, suite.url, suite.jwt_key, port, extra="[limits]\nrate = 0.05\nburst = 2\n"
        )
        bob = create_token(tokens, "bob", scopes=("slurm:read",))
        assert (await reload()).endswith("reloaded: limits.burst, limits.rate")
        assert await statuses(alice, 3) == [200, 200, 429]
        assert await statuses(bob, 1) == [200]
        # a file with a typo changes nothing: the limit stays, the gateway goes on
        config.write_text(config.read_text().replace("rate = 0.05", "rate = 'fast'"))
        assert "not reloaded, keeping the policies in force" in await reload()
        assert await statuses(alice, 1) == [429]
        # a broken tokens file keeps the tokens (bob still works), and logs why
        tokens.write_text(tokens.read_text() + "\n[[token]]\nname = 'x'\n")
        await reload()
        await gateway.wait_for_line(r"tokens file .* not reloaded, keeping the 2 entries")
        assert await statuses(bob, 1) == [200]
        # the port is no reloadable key: named, kept
        write_config(tmp_path, suite.url, suite.jwt_key, free_port())
        line = await reload()
        assert line.endswith("reloaded: limits.burst, limits.rate")
        await gateway.wait_for_line(r"applied only by a restart, old values kept: listen.port")
        assert await statuses(bob, 5) == [200] * 5
        gateway.signal(signal.SIGTERM)
        assert await gateway.exit_status() == 0
    assert alice not in "\n".join(gateway.lines)
