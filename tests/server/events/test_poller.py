"""The poller with a fake slurmrestd answer sequence, a fake clock and a fake sleep: update_time,
diffs published once, the adaptive interval, failures, and no polls while nobody listens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from slurmgate.server.errors import UpstreamUnavailable
from slurmgate.server.events.filters import JobFilter, View, Visibility
from slurmgate.server.events.hub import JobEvents
from slurmgate.server.events.poller import Interval, Poller, next_interval
from tests.server.events.fakes import job

BOUNDS = Interval(min=1.0, max=8.0, load_factor=10.0)
ALL = View(Visibility(), JobFilter())


def listing(*jobs: dict[str, Any], at: int) -> bytes:
    return json.dumps(
        {"jobs": list(jobs), "last_update": {"set": True, "number": at}, "errors": []}
    ).encode()


UNCHANGED = json.dumps({"jobs": [], "last_update": {"set": True, "number": 0}, "errors": []})


class Script:
    """Answers in order; records each update_time asked."""

    def __init__(self, *answers: bytes | Exception) -> None:
        self.answers: Iterator[bytes | Exception] = iter(answers)
        self.asked: list[int] = []
        self.called = asyncio.Event()

    async def __call__(self, update_time: int) -> bytes:
        self.asked.append(update_time)
        self.called.set()
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    """A monotonic clock a poll advances by ``step`` seconds."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def events() -> JobEvents:
    return JobEvents(
        buffer_size=64, queue_size=64, max_subscribers=4, max_per_caller=4, epoch="0123abcd"
    )


async def test_first_list_is_the_state_then_changes_are_events() -> None:
    hub = events()
    script = Script(
        listing(job(1), job(2, "RUNNING"), at=100),
        UNCHANGED.encode(),
        listing(job(2, "COMPLETED"), job(3), at=105),
    )
    poller = Poller(hub, script, BOUNDS)
    subscription, _ = hub.subscribe(ALL, "a", None)
    assert await poller.poll() == 0
    assert hub.ready.is_set()
    assert sorted(hub.jobs) == [1, 2]
    assert await poller.poll() == 0
    assert await poller.poll() == 3
    assert script.asked == [0, 100, 100]  # update_time: the last list's time
    assert poller.update_time == 105
    frames = b"".join(await subscription.take(1)).decode()
    assert [line for line in frames.split("\n") if line.startswith("event:")] == [
        "event: left",
        "event: changed",
        "event: appeared",
    ]
    assert sorted(hub.jobs) == [2, 3]


def test_the_interval_adapts_to_activity_and_load() -> None:
    assert next_interval(4.0, changed=True, took=0.01, bounds=BOUNDS) == 1.0
    assert next_interval(1.0, changed=False, took=0.01, bounds=BOUNDS) == 2.0
    assert next_interval(4.0, changed=False, took=0.01, bounds=BOUNDS) == 8.0
    assert next_interval(8.0, changed=False, took=0.01, bounds=BOUNDS) == 8.0
    # a slow slurmctld: at least load_factor times the poll's duration, even past max
    assert next_interval(1.0, changed=True, took=0.5, bounds=BOUNDS) == 5.0
    assert next_interval(8.0, changed=False, took=2.0, bounds=BOUNDS) == 20.0


async def test_run_polls_while_wanted_with_the_adapted_interval() -> None:
    hub = events()
    script = Script(
        listing(job(1), at=100),
        UNCHANGED.encode(),
        UNCHANGED.encode(),
        listing(job(1, "RUNNING"), at=110),
        UpstreamUnavailable("down"),
        listing(job(1, "COMPLETED"), at=120),
    )
    slept: list[float] = []
    done = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 6:
            done.set()
            await asyncio.Event().wait()  # parked until cancelled

    poller = Poller(hub, script, BOUNDS, clock=Clock(step=0.05), sleep=sleep)
    task = asyncio.create_task(poller.run())
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert script.asked == []  # nobody listens: no poll at all
        subscription, _ = hub.subscribe(ALL, "a", None)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # first list; idle doubles; a change resets; a failure backs off; a change resets
    assert slept == [2.0, 4.0, 8.0, 1.0, 2.0, 1.0]
    assert script.asked == [0, 100, 100, 100, 110, 110]
    assert poller.failures == 1
    frames = b"".join(await subscription.take(1)).decode()
    assert frames.count("event: changed") == 2  # PENDING -> RUNNING -> COMPLETED, none lost


async def test_a_slow_poll_stretches_the_interval() -> None:
    hub = events()
    hub.subscribe(ALL, "a", None)
    script = Script(listing(job(1), at=100), listing(job(1, "RUNNING"), at=101))
    slept: list[float] = []
    done = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            done.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(Poller(hub, script, BOUNDS, clock=Clock(1.5), sleep=sleep).run())
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert slept == [15.0, 15.0]  # each poll "took" 1.5 s: 10 times that


async def test_an_unreadable_answer_changes_nothing() -> None:
    hub = events()
    script = Script(
        listing(job(1), at=100),
        b"not json",
        json.dumps({"jobs": [], "errors": [{"error": "boom"}]}).encode(),
        listing(job(1) | {"account": None}, at=101),
    )
    poller = Poller(hub, script, BOUNDS)
    await poller.poll()
    for _ in range(3):
        with pytest.raises(ValueError, match=r"JSON|errors|account"):
            await poller.poll()
    assert sorted(hub.jobs) == [1]
    assert poller.update_time == 100


async def test_an_unexpected_error_is_logged_and_the_poller_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = events()
    subscription, _ = hub.subscribe(ALL, "a", None)
    script = Script(
        listing(job(1), at=100), RuntimeError("a bug"), listing(job(1, "RUNNING"), at=101)
    )
    slept: list[float] = []
    done = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            done.set()
            await asyncio.Event().wait()

    poller = Poller(hub, script, BOUNDS, clock=Clock(), sleep=sleep)
    task = asyncio.create_task(poller.run())
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert poller.failures == 1
    assert "the poll failed unexpectedly" in caplog.text
    assert b"event: changed" in b"".join(await subscription.take(1))
