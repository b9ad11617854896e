"""Job events against the real lab: 200 concurrent subscribers while jobs of alice (physics) and
bob (chem) are submitted, started, finished and cancelled. Every subscriber gets every transition
it may see, in order; account-limited and filtered subscribers get only theirs; and the
slurmrestd of the test's own logs one jobs poll per interval, not one per subscriber."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from slurmgate.server.app import build_app
from slurmgate.server.keys import METRICS
from tests.lab.env import Lab, LabSuite
from tests.lab.private_restd import PrivateRestd, free_port
from tests.server.events.stream import SseReader
from tests.server.gateway import create_token, gateway_settings, logged_requests

pytestmark = pytest.mark.lab

PATH = "/slurmgate/v1/events/jobs"
MIN_INTERVAL = 0.5
EVENTS: dict[str, object] = {
    "min_interval": MIN_INTERVAL,
    "max_interval": 1.0,
    "heartbeat": 5.0,
    "queue": 2000,
    "max_subscribers": 400,
    "max_subscribers_per_caller": 400,
}
#: (token, query, how many): 200 subscribers in all
SUBSCRIBERS = (("all", "", 130), ("physics", "", 30), ("chem", "", 25), ("all", "?user=bob", 15))
#: seconds the whole scenario may take once the jobs are submitted
DEADLINE = 120.0
#: frames one subscriber may read (the scenario makes a few dozen, other tests' jobs included)
MAX_FRAMES = 100_000
FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


@dataclass
class Subscriber:
    #: which token it streams with: "all", "physics" or "chem"
    who: str
    query: str
    #: every event received (snapshot, resync and heartbeats aside)
    events: list[dict[str, Any]] = field(default_factory=list)
    snapshot: list[dict[str, Any]] = field(default_factory=list)
    ended: str | None = None


async def listen(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    subscriber: Subscriber,
    ready: Callable[[], None],
) -> None:
    """Read one stream until it ends (or the task is cancelled)."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with session.get(url + PATH + subscriber.query, headers=headers) as response:
        assert response.status == 200, await response.text()
        reader = SseReader(response, within=DEADLINE)
        first = await reader.event()
        assert first.event == "snapshot"
        subscriber.snapshot = first.data["jobs"]
        ready()
        # bounded: each read by DEADLINE, and the test cancels the task when it is done
        for _ in range(MAX_FRAMES):
            frame = await reader.frame()
            if frame is None:
                return
            if frame.event == "end":
                subscriber.ended = frame.data["reason"]
                return
            if frame.event is not None:
                subscriber.events.append(frame.data)
        raise AssertionError(f"more than {MAX_FRAMES} frames")


@asynccontextmanager
async def events_gateway(
    suite: LabSuite, tmp_path: Path
) -> AsyncIterator[tuple[TestServer, PrivateRestd, dict[str, str]]]:
    """A gateway (on a real port) in front of a slurmrestd of our own; tokens with the scope."""
    restd = PrivateRestd(suite.root, tmp_path / "slurmrestd.log")
    await asyncio.to_thread(restd.start)
    try:
        tokens_file = tmp_path / "tokens.toml"
        scopes = ("slurmgate:events",)
        tokens = {
            "all": create_token(tokens_file, "dora", scopes=scopes),
            "physics": create_token(tokens_file, "alice", scopes=scopes, accounts=("physics",)),
            "chem": create_token(tokens_file, "bob", scopes=scopes, accounts=("chem",)),
        }
        settings = gateway_settings(
            suite, "http", tokens_file, upstream={"url": restd.url}, events=EVENTS
        )
        server = TestServer(build_app(settings), host="127.0.0.1")
        await server.start_server()
        try:
            yield server, restd, tokens
        finally:
            await server.close()
    finally:
        await asyncio.to_thread(restd.stop)


def sbatch(suite: LabSuite, user: str, account: str, name: str) -> int:
    """A held job of ``user`` in ``account`` that sleeps 5 s once released: its id."""
    out = suite.run(
        "sbatch", "--parsable", "--hold", "-J", name, "-A", account, "-p", "debug",
        "--chdir=/tmp", "-o", "/dev/null", "--wrap", "sleep 5",
        user=user,
    ).stdout  # fmt: skip
    return int(out.strip().split(";")[0])


def base_states(events: list[dict[str, Any]], job_id: int) -> list[str]:
    """The job's base states through its events, repeats (flag changes) removed."""
    states: list[str] = []
    for event in events:
        if event["job"]["job_id"] == job_id and event["event"] != "left":
            state = event["job"]["state"][0]
            if not states or states[-1] != state:
                states.append(state)
    return states


def ours(events: list[dict[str, Any]], job_ids: set[int]) -> list[tuple[str, str, int]]:
    return [
        (e["id"], e["event"], e["job"]["job_id"]) for e in events if e["job"]["job_id"] in job_ids
    ]


async def until(condition: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("suite_name", ["forky", "trixie"])
async def test_200_subscribers_share_one_poller(lab: Lab, tmp_path: Path, suite_name: str) -> None:
    suite = lab.suites[suite_name]
    jobs_path = f"/slurm/{suite.versions[-1]}/jobs"
    name = f"sg-events-{secrets.token_hex(4)}"
    subscribers = [
        Subscriber(who, query) for who, query, count in SUBSCRIBERS for _ in range(count)
    ]
    assert len(subscribers) == 200
    connected = 0

    def ready() -> None:
        nonlocal connected
        connected += 1

    async with (
        events_gateway(suite, tmp_path) as (server, restd, tokens),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        url = str(server.make_url("")).rstrip("/")
        tasks = [
            asyncio.create_task(listen(session, url, tokens[s.who], s, ready)) for s in subscribers
        ]
        try:
            await until(lambda: connected == 200 or any(t.done() for t in tasks), "200 streams")
            assert connected == 200, [t.exception() for t in tasks if t.done()]
            polls_before = logged_requests(restd.log, "GET", jobs_path)
            started = time.monotonic()
            reference = subscribers[0]
            submitted = await run_jobs(suite, name, reference)
            ids = set(submitted.values())
            expected = ours(reference.events, ids)
            all_subscribers = [s for s in subscribers if s.who == "all" and not s.query]
            await until(
                lambda: all(ours(s.events, ids) == expected for s in all_subscribers),
                "every unfiltered subscriber has the reference's events",
                within=15,
            )
            elapsed = time.monotonic() - started
            polls = logged_requests(restd.log, "GET", jobs_path) - polls_before
            # the gateway's own count of its polls is what slurmrestd logged, all of them
            registry = server.app[METRICS].registry
            counted = sum(
                registry.get_sample_value("slurmgate_events_polls_total", {"outcome": o}) or 0
                for o in ("ok", "failed")
            )
            assert counted == logged_requests(restd.log, "GET", jobs_path)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    check(subscribers, submitted)
    print(f"{suite_name}: {polls} jobs polls in {elapsed:.1f} s for 200 subscribers")
    # one poll per interval at most, for 200 subscribers: not 200 per interval
    assert 1 <= polls <= elapsed / MIN_INTERVAL + 3, (polls, elapsed)


async def run_jobs(suite: LabSuite, name: str, reference: Subscriber) -> dict[str, int]:
    """Submit held jobs of alice (physics) and bob (chem); once the poller has seen them pending,
    release two (they run 5 s and complete) and cancel two; wait until all four are final."""
    submitted: dict[str, int] = {}
    for key, user, account in (
        ("alice_done", "alice", "physics"),
        ("bob_done", "bob", "chem"),
        ("alice_cancelled", "alice", "physics"),
        ("bob_cancelled", "bob", "chem"),
    ):
        submitted[key] = await asyncio.to_thread(sbatch, suite, user, account, name)
    ids = set(submitted.values())
    await until(lambda: {e["job"]["job_id"] for e in reference.events} >= ids, "the 4 jobs appear")
    for key, job_id in submitted.items():
        user, _, outcome = key.partition("_")
        command = ("scontrol", "release") if outcome == "done" else ("scancel",)
        await asyncio.to_thread(suite.run, *command, str(job_id), user=user)

    def finished() -> bool:
        return all((base_states(reference.events, i) or ["?"])[-1] in FINAL for i in ids)

    await until(finished, "every job reaches a final state")
    return submitted


def check(subscribers: list[Subscriber], submitted: dict[str, int]) -> None:
    """The reference saw every transition in order; every subscriber saw exactly its share."""
    reference = subscribers[0]
    ids = set(submitted.values())
    done = ["PENDING", "RUNNING", "COMPLETED"]
    assert base_states(reference.events, submitted["alice_done"]) == done
    assert base_states(reference.events, submitted["bob_done"]) == done
    assert base_states(reference.events, submitted["alice_cancelled"]) == ["PENDING", "CANCELLED"]
    assert base_states(reference.events, submitted["bob_cancelled"]) == ["PENDING", "CANCELLED"]
    physics_ids = {submitted["alice_done"], submitted["alice_cancelled"]}
    chem_ids = ids - physics_ids
    expected = ours(reference.events, ids)
    for subscriber in subscribers:
        assert subscriber.ended is None, subscriber.ended  # nobody was dropped
        numbers = [int(e["id"].rsplit("-", 1)[1]) for e in subscriber.events]
        assert numbers == sorted(set(numbers)), "event ids increase"
        seen = subscriber.snapshot + [e["job"] for e in subscriber.events]
        if subscriber.who == "physics":
            assert {job["account"] for job in seen} <= {"physics"}
            assert ours(subscriber.events, ids) == ours(reference.events, physics_ids)
        elif subscriber.who == "chem":
            assert {job["account"] for job in seen} <= {"chem"}
            assert ours(subscriber.events, ids) == ours(reference.events, chem_ids)
        elif subscriber.query:
            assert {job["user"] for job in seen} <= {"bob"}
            assert ours(subscriber.events, ids) == ours(reference.events, chem_ids)
        else:
            assert ours(subscriber.events, ids) == expected


async def open_stream(
    session: aiohttp.ClientSession, url: str, token: str
) -> aiohttp.ClientResponse:
    """GET the stream; retried (bounded) while the gateway is not yet accepting connections."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await session.get(url, headers={"Authorization": f"Bearer {token}"})
        except aiohttp.ClientConnectorError:
            assert time.monotonic() < deadline, "the gateway did not start listening"
            await asyncio.sleep(0.1)


async def test_sigterm_ends_every_stream_at_once(lab: Lab, tmp_path: Path) -> None:
    """``slurmgate serve`` stopped with SIGTERM: each stream gets its ``end`` event (reason
    shutdown) and the process exits long before ``listen.shutdown_timeout``."""
    suite = lab.suites["forky"]
    port = free_port()
    token = create_token(tmp_path / "tokens.toml", "alice", scopes=("slurmgate:events",))
    config = tmp_path / "slurmgate.toml"
    config.write_text(
        f'[listen]\nport = {port}\nshutdown_timeout = 60.0\n[upstream]\nurl = "{suite.url}"\n'
        f'[slurm_user_token]\njwt_key = "{suite.jwt_key}"\n[auth]\ntokens_file = "tokens.toml"\n'
    )
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "slurmgate"),
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}{PATH}"
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.decode().strip() == f"slurmgate: listening on http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            one = await open_stream(session, url, token)
            two = await open_stream(session, url + "?user=bob", token)
            try:
                readers = [SseReader(one, within=30), SseReader(two, within=30)]
                for reader in readers:
                    assert (await reader.event()).event == "snapshot"
                stopped = time.monotonic()
                process.send_signal(signal.SIGTERM)
                for reader in readers:
                    frame = await reader.event()
                    assert (frame.event, frame.data["reason"]) == ("end", "shutdown")
                    assert await reader.frame() is None
            finally:
                one.release()
                two.release()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert time.monotonic() - stopped < 30  # not the 60 s of shutdown_timeout
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    stderr = (await process.stderr.read()).decode()
    access = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [line["operation"] for line in access] == ["slurmgate_get_events_jobs"] * 2
    assert {line["status"] for line in access} == {200}
    assert all(line["bytes"] > 0 for line in access)
