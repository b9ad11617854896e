"""The hit shortcut (server/pipeline/shortcut.py) in front of a fake slurmrestd: a repeated hit
is answered exactly as the full pipeline answers it, and every change that could alter the
decision (revocation, expiry, other headers, another address, the rate limit, a write, a
reload, the freshness running out) sends the request the long way at once.

Through the real slurmrestd: tests/server/test_cache_lab.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from slurmgate.server.cache.store import ResponseCache
from slurmgate.server.cli import main as cli
from slurmgate.server.identity.base import Identity
from slurmgate.server.identity.tokens import TokenStore
from slurmgate.server.keys import CACHE, METRICS, RELOADER, TOKENS
from slurmgate.server.pipeline import shortcut as shortcut_module
from tests.server.fake_gateway import OK_BODY, Gateway, V, start
from tests.server.gateway import create_token

NODES = f"/slurm/{V}/nodes/"
JOBS = f"/slurm/{V}/jobs/"
#: headers that differ between any two answers, whichever path made them
_PER_ANSWER = {"Date", "X-Request-ID", "Age"}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with start(tmp_path, cache={"shortcut_seconds": 30.0}) as gateway:
        yield gateway


def shortcuts(gw: Gateway) -> int:
    cache: ResponseCache | None = gw.client.app[CACHE]
    assert cache is not None
    return cache.stats.shortcuts


def tokens(gw: Gateway) -> TokenStore:
    store: TokenStore = gw.client.app[TOKENS]
    return store


def name_of(gw: Gateway, user: str) -> str:
    (name,) = [n for n, e in tokens(gw).entries.items() if e.user == user]
    return name


def token_cli(*args: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        assert cli(["token", *args]) == 0, out.getvalue()


def kept(response: ClientResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in _PER_ANSWER}


async def warm(gw: Gateway, path: str = NODES, user: str = "alice", **headers: str) -> None:
    """A miss, then a hit through the full pipeline, which the shortcut remembers."""
    assert (await gw.get(path, user, **headers)).headers["X-Cache"] == "MISS"
    assert (await gw.get(path, user, **headers)).headers["X-Cache"] == "HIT"


async def test_a_repeated_hit_is_the_full_pipelines_answer(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    first = await gw.get(NODES)
    full = await gw.get(NODES)
    assert shortcuts(gw) == 0
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    short = await gw.get(NODES)
    assert shortcuts(gw) == 1
    assert short.status == full.status == 200
    assert await short.read() == await full.read() == await first.read() == OK_BODY
    assert kept(short) == kept(full)
    assert short.headers["X-Cache"] == "HIT"
    assert list(short.headers) == list(full.headers)
    assert short.headers["X-Request-ID"] != full.headers["X-Request-ID"]
    assert gw.upstream.calls[NODES] == 1
    # logged and counted as a hit allowed for alice's token, like the one before it
    (line,) = [r.access for r in caplog.records if r.name == "slurmgate.access"]  # type: ignore[attr-defined]
    assert line["decision"] == "allow"
    assert line["cache"] == "HIT"
    assert line["user"] == "alice"
    assert line["operation"] == "slurm_v0045_get_nodes"
    assert line["request_id"] == short.headers["X-Request-ID"]
    registry = gw.client.app[METRICS].registry
    assert registry.get_sample_value("slurmgate_cache_shortcuts_total") == 1
    assert registry.get_sample_value("slurmgate_cache_requests_total", {"outcome": "hit"}) == 2


async def test_a_revoked_token_is_refused_as_soon_as_the_file_is_reloaded(gw: Gateway) -> None:
    await warm(gw)
    assert (await gw.get(NODES)).status == 200
    assert shortcuts(gw) == 1
    token_cli("revoke", "--tokens-file", str(tokens(gw).path), name_of(gw, "alice"))
    assert await tokens(gw).refresh()
    refused = await gw.get(NODES)
    assert refused.status == 401
    assert json.loads(await refused.read())["errors"][0]["description"] == "bearer token revoked"
    assert shortcuts(gw) == 1


async def test_a_token_past_its_expiry_is_refused_without_a_reload(gw: Gateway) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    secret = create_token(
        tokens(gw).path, "carol", scopes=("slurm:read",), extra=("--expires", expires.isoformat())
    )
    await tokens(gw).refresh()
    headers = {"Authorization": f"Bearer {secret}"}
    for expected in ("MISS", "HIT", "HIT"):
        response = await gw.client.get(NODES, headers=headers)
        assert response.headers["X-Cache"] == expected
    assert shortcuts(gw) == 1
    # the token store's clock jumps past the expiry; the file has not changed
    tokens(gw)._clock = lambda: expires + timedelta(seconds=1)
    response = await gw.client.get(NODES, headers=headers)
    assert response.status == 401
    assert "bearer token expired" in await response.text()
    assert shortcuts(gw) == 1


async def test_a_scheduled_revocation_is_refused_when_its_time_comes(gw: Gateway) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    path = tokens(gw).path
    token_cli("revoke", "--tokens-file", str(path), name_of(gw, "alice"))
    # the revocation moved an hour ahead: alice's token works until then
    text, count = re.subn(
        r"^revoked = .*$",
        f"revoked = {when.isoformat().replace('+00:00', 'Z')}",
        path.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    assert count == 1
    path.write_text(text, encoding="utf-8")
    assert await tokens(gw).refresh()
    assert tokens(gw).entries[name_of(gw, "alice")].revoked == when
    await warm(gw)
    assert (await gw.get(NODES)).status == 200
    assert shortcuts(gw) == 1
    tokens(gw)._clock = lambda: when + timedelta(seconds=1)
    refused = await gw.get(NODES)
    assert refused.status == 401
    assert "bearer token revoked" in await refused.text()
    assert shortcuts(gw) == 1


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"X-Request-ID": "another-id"}, "a header more"),
        ({"Cache-Control": "max-age=60"}, "a cache directive"),
        ({"Accept": "application/json"}, "another Accept"),
    ],
)
async def test_any_other_header_goes_the_long_way(
    gw: Gateway, headers: dict[str, str], why: str
) -> None:
    await warm(gw)
    assert (await gw.get(NODES, **headers)).headers["X-Cache"] == "HIT", why
    assert shortcuts(gw) == 0, why


async def test_a_repeated_authorization_header_is_refused_even_after_a_hit(gw: Gateway) -> None:
    await warm(gw)
    secret = gw.tokens["alice"]
    response = await gw.client.get(
        NODES, headers=[("Authorization", f"Bearer {secret}"), ("Authorization", "Bearer x")]
    )
    assert response.status == 401
    assert "Authorization given more than once" in await response.text()
    assert shortcuts(gw) == 0


async def test_another_token_or_path_is_decided_again(gw: Gateway) -> None:
    await warm(gw)
    # bob may read nodes: a hit of his own, decided by the full pipeline
    assert (await gw.get(NODES, "bob")).headers["X-Cache"] == "HIT"
    assert (await gw.get(f"{NODES}?update_time=5")).headers["X-Cache"] == "BYPASS"
    # the ops token has no slurm:read: 403 whatever alice's request taught the gateway
    assert (await gw.get(NODES, "ops")).status == 403
    assert shortcuts(gw) == 0


async def test_the_rate_limit_counts_shortcut_hits(tmp_path: Path) -> None:
    async with start(tmp_path, limits={"rate": 0.01, "burst": 4}) as gw:
        statuses = [(await gw.get(NODES)).status for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        assert shortcuts(gw) == 2
        refused = await gw.get(NODES)
        assert refused.status == 429
        assert "Retry-After" in refused.headers
        # each 429 counted once, though the shortcut tried the bucket first
        registry = gw.client.app[METRICS].registry
        assert registry.get_sample_value("slurmgate_rate_limited_total", {"kind": "caller"}) == 2


async def test_a_write_sends_the_next_read_upstream(gw: Gateway) -> None:
    await warm(gw, JOBS)
    assert (await gw.get(JOBS)).headers["X-Cache"] == "HIT"
    assert shortcuts(gw) == 1
    cancel = await gw.client.delete(
        f"/slurm/{V}/job/42", headers={"Authorization": f"Bearer {gw.tokens['alice']}"}
    )
    assert cancel.status == 200
    assert (await gw.get(JOBS)).headers["X-Cache"] == "MISS"
    assert gw.upstream.calls[JOBS] == 2
    assert shortcuts(gw) == 1


async def test_a_reload_ends_every_shortcut(gw: Gateway) -> None:
    await warm(gw)
    assert (await gw.get(NODES)).status == 200
    assert shortcuts(gw) == 1
    assert await gw.client.app[RELOADER].reload()
    assert (await gw.get(NODES)).headers["X-Cache"] == "HIT"
    assert shortcuts(gw) == 1  # that one went the long way, and is remembered again
    assert (await gw.get(NODES)).headers["X-Cache"] == "HIT"
    assert shortcuts(gw) == 2


async def test_an_entry_that_is_no_longer_fresh_goes_the_long_way(tmp_path: Path) -> None:
    short = {"min": 0.3, "max": 0.3, "buffer": 0.0}
    async with start(tmp_path, cache={"shortcut_seconds": 30.0, "short": short}) as gw:
        await warm(gw)
        await asyncio.sleep(0.4)
        assert (await gw.get(NODES)).headers["X-Cache"] == "MISS"
        assert gw.upstream.calls[NODES] == 2
        assert shortcuts(gw) == 0


async def test_it_forgets_after_shortcut_seconds(tmp_path: Path) -> None:
    async with start(tmp_path, cache={"shortcut_seconds": 0.2}) as gw:
        await warm(gw)
        await asyncio.sleep(0.3)
        assert (await gw.get(NODES)).headers["X-Cache"] == "HIT"
        assert shortcuts(gw) == 0
        assert (await gw.get(NODES)).headers["X-Cache"] == "HIT"
        assert shortcuts(gw) == 1


async def test_zero_turns_it_off(tmp_path: Path) -> None:
    async with start(tmp_path, cache={"shortcut_seconds": 0}) as gw:
        await warm(gw)
        assert [(await gw.get(NODES)).headers["X-Cache"] for _ in range(3)] == ["HIT"] * 3
        assert shortcuts(gw) == 0


async def test_remembered_requests_are_bounded(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shortcut_module, "MAX_REMEMBERED", 3)
    paths = [f"{NODES}?n={n}" for n in range(4)]
    for path in paths:
        await warm(gw, path)
    # the first one was forgotten when the fourth was remembered
    assert (await gw.get(paths[0])).headers["X-Cache"] == "HIT"
    assert shortcuts(gw) == 0
    for path in paths[2:]:
        assert (await gw.get(path)).headers["X-Cache"] == "HIT"
    assert shortcuts(gw) == 2


async def test_a_failure_in_the_shortcut_falls_back_to_the_full_pipeline(
    gw: Gateway, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await warm(gw)

    def broken(identity: Identity) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(tokens(gw), "still_active", broken)
    with caplog.at_level(logging.ERROR, logger="slurmgate.cache"):
        response = await gw.get(NODES)
    assert response.status == 200
    assert response.headers["X-Cache"] == "HIT"
    assert "hit shortcut failed" in caplog.text
    assert shortcuts(gw) == 0
