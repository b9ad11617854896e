"""``GET /slurmgate/v1/events/jobs`` in the whole pipeline, in front of a fake slurmrestd that
honours update_time: snapshot, events, filters and account visibility, Last-Event-ID, slow
consumer, bounds, revoked tokens, shutdown and the access log."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.cli.commands import main as cli
from slurmgate.server.config import parse_settings
from slurmgate.server.keys import JOB_EVENTS, METRICS, TOKENS
from tests.server.events.fakes import FakeJobsRestd, job, serve
from tests.server.events.stream import Frame, SseReader
from tests.server.gateway import create_token

PATH = "/slurmgate/v1/events/jobs"
FAST = {"min_interval": 0.1, "max_interval": 0.2, "heartbeat": 0.3}


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    upstream: FakeJobsRestd
    tokens: dict[str, str]
    tokens_file: Path

    def open(self, token: str, query: str = "", **headers: str) -> Any:  # noqa: ANN401
        """A stream request (use with ``async with``)."""
        headers["Authorization"] = f"Bearer {self.tokens[token]}"
        return self.client.get(PATH + query, headers=headers)


@asynccontextmanager
async def gateway(
    tmp_path: Path, cache: dict[str, object] | None = None, **events: object
) -> AsyncIterator[Gateway]:
    """The gateway with fast polls in front of a FakeJobsRestd holding jobs 1 (alice, physics)
    and 2 (bob, chem, partition batch)."""
    upstream = FakeJobsRestd()
    upstream.put(job(1), job(2, "RUNNING", user="bob", account="chem", partition="batch"))
    tokens_file = tmp_path / "tokens.toml"
    scopes = ("slurmgate:events",)
    tokens = {
        "all": create_token(tokens_file, "alice", scopes=scopes),
        "physics": create_token(tokens_file, "alice", scopes=scopes, accounts=("physics",)),
        "bob": create_token(tokens_file, "bob", scopes=scopes),
        "reader": create_token(tokens_file, "carol", scopes=("slurm:read",)),
    }
    key = tmp_path / "jwt.key"
    key.write_bytes(b"k" * 64)
    async with serve(upstream) as url:
        settings = parse_settings(
            {
                "upstream": {"url": url, "timeout": 10.0},
                "slurm_user_token": {"jwt_key": str(key)},
                "auth": {"tokens_file": str(tokens_file)},
                "events": FAST | events,
                "cache": cache or {},
            },
            origin="test",
        )
        client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
        await client.start_server()
        try:
            yield Gateway(client, upstream, tokens, tokens_file)
        finally:
            await client.close()


async def snapshot(response: ClientResponse) -> tuple[SseReader, Frame]:
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-ID"]
    reader = SseReader(response)
    first = await reader.frame()
    assert first is not None
    assert first.retry == 3000
    frame = await reader.event()
    assert frame.event in {"snapshot", "resync"}
    return reader, frame


async def test_snapshot_then_each_change(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.open("all") as response:
        reader, first = await snapshot(response)
        assert first.data["reason"] is None
        assert [j["job_id"] for j in first.data["jobs"]] == [1, 2]
        assert first.event_id == first.data["id"]
        gw.upstream.put(job(1, "RUNNING"))
        changed = await reader.event()
        assert changed.event == "changed"
        assert changed.data["job"]["state"] == ["RUNNING"]
        assert changed.data["previous"]["state"] == ["PENDING"]
        gw.upstream.put(job(3))
        appeared = await reader.event()
        assert (appeared.event, appeared.data["job"]["job_id"]) == ("appeared", 3)
        gw.upstream.remove(2)
        left = await reader.event()
        assert (left.event, left.data["why"], left.data["job"]["job_id"]) == ("left", "gone", 2)
        ids = [changed.event_id, appeared.event_id, left.event_id]
        numbers = [int(str(i).rsplit("-", 1)[1]) for i in ids]
        assert numbers == sorted(numbers) == list(range(numbers[0], numbers[0] + 3))


async def test_a_physics_token_never_sees_chem(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.open("physics") as response:
        reader, first = await snapshot(response)
        assert [j["job_id"] for j in first.data["jobs"]] == [1]
        gw.upstream.put(job(5, account="chem"))
        gw.upstream.put(job(2, "COMPLETED", user="bob", account="chem", partition="batch"))
        await gw.upstream.wait_polls(2)
        gw.upstream.put(job(6))  # physics: the next event it gets
        frame = await reader.event()
        assert (frame.event, frame.data["job"]["job_id"]) == ("appeared", 6)
        # a physics job moved to chem leaves, without telling where to
        gw.upstream.put(job(6, account="chem"))
        frame = await reader.event()
        assert (frame.event, frame.data["why"]) == ("left", "no_longer_matches")
        assert frame.data["job"]["account"] == "physics"


@pytest.mark.parametrize(
    ("events", "cache"),
    [({"per_user": True}, None), ({}, {"per_user": True})],
    ids=["events.per_user", "cache.per_user"],
)
async def test_per_user_shows_only_the_callers_jobs(
    tmp_path: Path, events: dict[str, object], cache: dict[str, object] | None
) -> None:
    async with (
        gateway(tmp_path, cache, **events) as gw,
        gw.open("bob", "?user=alice,bob") as response,
    ):
        reader, first = await snapshot(response)
        assert [(j["job_id"], j["user"]) for j in first.data["jobs"]] == [(2, "bob")]
        gw.upstream.put(job(1, "RUNNING"))  # alice's
        await gw.upstream.wait_polls(2)
        gw.upstream.put(job(2, "COMPLETED", user="bob", account="chem", partition="batch"))
        frame = await reader.event()
        assert (frame.event, frame.data["job"]["job_id"]) == ("changed", 2)


async def test_query_filters(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.open("all", "?user=bob&partition=batch") as response:
        reader, first = await snapshot(response)
        assert [j["job_id"] for j in first.data["jobs"]] == [2]
        gw.upstream.put(job(7, user="bob", partition="debug"), job(8, user="alice"))
        await gw.upstream.wait_polls(2)
        gw.upstream.put(job(9, user="bob", partition="debug,batch"))
        frame = await reader.event()
        assert frame.data["job"]["job_id"] == 9


@pytest.mark.parametrize(
    ("token", "query", "headers", "status", "source"),
    [
        (None, "", {}, 401, None),
        ("reader", "", {}, 403, "scope:slurmgate:events"),
        ("all", "?state=RUNNING", {}, 400, "query:state"),
        ("all", "?job_id=abc", {}, 400, "query:job_id"),
        ("all", "", {"Accept": "application/json"}, 406, "Accept"),
    ],
)
async def test_refusals_are_answered_in_the_envelope(
    tmp_path: Path,
    *,
    token: str | None,
    query: str,
    headers: dict[str, str],
    status: int,
    source: str | None,
) -> None:
    async with gateway(tmp_path) as gw:
        if token is not None:
            headers = headers | {"Authorization": f"Bearer {gw.tokens[token]}"}
        async with gw.client.get(PATH + query, headers=headers) as response:
            assert response.status == status
            body = json.loads(await response.read())
        if source is not None:
            assert body["errors"][0]["source"] == source
        assert gw.client.app[JOB_EVENTS].subscribers == 0


async def test_streams_outlive_a_failing_slurmrestd(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.open("all") as response:
        reader, _ = await snapshot(response)
        gw.upstream.failing = 502
        await gw.upstream.wait_polls(2)
        gw.upstream.put(job(1, "RUNNING"))
        frame = await reader.frame()  # a heartbeat: the stream stays open meanwhile
        assert frame is not None
        assert frame.comments == ["heartbeat"]
        gw.upstream.failing = None
        frame = await reader.event()  # the change made while it failed, once it answers
        assert (frame.event, frame.data["job"]["state"]) == ("changed", ["RUNNING"])
        registry = gw.client.app[METRICS].registry
        failed = registry.get_sample_value("slurmgate_events_polls_total", {"outcome": "failed"})
        assert failed is not None
        assert failed >= 2


async def test_no_first_list_is_a_502(tmp_path: Path) -> None:
    upstream = FakeJobsRestd(failing=502)
    async with serve(upstream) as url:
        tokens_file = tmp_path / "tokens.toml"
        token = create_token(tokens_file, "alice", scopes=("slurmgate:events",))
        key = tmp_path / "jwt.key"
        key.write_bytes(b"k" * 64)
        settings = parse_settings(
            {
                "upstream": {"url": url, "timeout": 1.0},
                "slurm_user_token": {"jwt_key": str(key)},
                "auth": {"tokens_file": str(tokens_file)},
                "events": FAST,
            },
            origin="test",
        )
        async with TestClient(TestServer(build_app(settings), host="127.0.0.1")) as client:
            headers = {"Authorization": f"Bearer {token}"}
            async with client.get(PATH, headers=headers) as response:
                assert response.status == 502
                body = json.loads(await response.read())
            assert body["errors"][0]["source"] == "slurmgate events"
            assert client.app[JOB_EVENTS].subscribers == 0
    assert upstream.asked  # it tried


async def test_head_answers_the_headers_without_a_stream(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        headers = {"Authorization": f"Bearer {gw.tokens['all']}"}
        async with gw.client.head(PATH, headers=headers) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert gw.client.app[JOB_EVENTS].subscribers == 0
        assert gw.upstream.asked == []  # nobody listens: no poll


async def test_last_event_id_gets_what_was_missed_or_a_resync(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.open("bob") as keeper:
        await snapshot(keeper)  # keeps the poller going while the other client is away
        async with gw.open("all") as response:
            reader, _ = await snapshot(response)
            gw.upstream.put(job(1, "RUNNING"))
            seen = await reader.event()
        gw.upstream.put(job(1, "COMPLETED"))
        gw.upstream.put(job(3, account="chem"))
        await gw.upstream.wait_polls(3)
        assert seen.event_id is not None
        async with gw.open("all", **{"Last-Event-ID": seen.event_id}) as response:
            reader = SseReader(response)
            replayed = [await reader.event(), await reader.event()]
            assert [(f.event, f.data["job"]["job_id"]) for f in replayed] == [
                ("changed", 1),
                ("appeared", 3),
            ]
        async with gw.open("all", **{"Last-Event-ID": "ffffffff-1"}) as response:
            _, frame = await snapshot(response)
            assert (frame.event, frame.data["reason"]) == ("resync", "unknown_stream")
            assert [j["job_id"] for j in frame.data["jobs"]] == [1, 2, 3]


async def test_a_slow_consumer_is_told_and_disconnected(tmp_path: Path) -> None:
    async with gateway(tmp_path, queue=1) as gw, gw.open("all") as response:
        reader, _ = await snapshot(response)
        gw.upstream.put(job(10), job(11), job(12))  # one poll, three events: one is room
        frame = await reader.event()
        assert frame.event == "end"
        assert frame.event_id is None
        assert frame.data["reason"] == "slow_consumer"
        assert await reader.frame() is None
        app = gw.client.app
        assert app[JOB_EVENTS].subscribers == 0
        registry = app[METRICS].registry
        ended = registry.get_sample_value(
            "slurmgate_events_streams_ended_total", {"reason": "slow_consumer"}
        )
        assert ended == 1
        assert registry.get_sample_value("slurmgate_events_published_total") == 3
        assert registry.get_sample_value("slurmgate_events_subscribers") == 0


async def test_streams_are_bounded_per_caller_and_in_total(tmp_path: Path) -> None:
    async with (
        gateway(tmp_path, max_subscribers=2, max_subscribers_per_caller=1) as gw,
        gw.open("all") as first,
    ):
        await snapshot(first)
        async with gw.open("all") as second:
            assert second.status == 429
            assert second.headers["Retry-After"] == "3"
        async with gw.open("bob") as third:
            await snapshot(third)
            async with gw.open("physics") as fourth:
                assert fourth.status == 503
                assert fourth.headers["Retry-After"] == "3"


async def test_a_revoked_token_ends_its_stream(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.open("physics") as response:
        reader, _ = await snapshot(response)
        store = gw.client.app[TOKENS]
        (name,) = [n for n, e in store.entries.items() if e.accounts]  # the physics token
        # a reload that leaves the token as it was changes nothing for its stream
        create_token(gw.tokens_file, "dora", scopes=("slurmgate:events",))
        assert await store.refresh(force=True)
        gw.upstream.put(job(1, "RUNNING"))
        frame = await reader.event()
        assert (frame.event, frame.data["job"]["job_id"]) == ("changed", 1)
        assert cli(["token", "revoke", "--tokens-file", str(gw.tokens_file), name]) == 0
        await store.refresh(force=True)
        frame = await reader.event()
        assert (frame.event, frame.data["reason"]) == ("end", "credentials")


async def test_shutdown_ends_streams_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    async with gateway(tmp_path) as gw:
        response = await gw.open("all")
        try:
            reader, _ = await snapshot(response)
            runner = gw.client.server.runner
            assert runner is not None
            closing = asyncio.create_task(runner.cleanup())
            frame = await reader.event()
            assert (frame.event, frame.data["reason"]) == ("end", "shutdown")
            assert await reader.frame() is None
            await asyncio.wait_for(closing, 10)
        finally:
            response.release()
    (line,) = [r.access for r in caplog.records if hasattr(r, "access")]
    assert line["operation"] == "slurmgate_get_events_jobs"
    assert line["status"] == 200
    assert line["bytes"] > 0
    assert line["decision"] == "allow"
