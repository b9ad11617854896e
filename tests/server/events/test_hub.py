"""The hub: every subscriber gets its events in order, a slow one is ended alone, bounds hold,
Last-Event-ID replays or resyncs, shutdown ends every stream."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from slurmgate.server.events.changes import Change
from slurmgate.server.events.filters import JobFilter, View, Visibility
from slurmgate.server.events.hub import JobEvents, Subscription, TooManySubscribers, snapshot_frame
from slurmgate.server.events.records import JobRecord
from tests.server.events.fakes import record

EPOCH = "0123abcd"
ALL = View(Visibility(), JobFilter())
PHYSICS = View(Visibility(accounts=(re.compile("physics"),)), JobFilter())


def hub(**bounds: int) -> JobEvents:
    values = {"buffer_size": 64, "queue_size": 8, "max_subscribers": 10, "max_per_caller": 4}
    values.update(bounds)
    events = JobEvents(**values, clock=lambda: 1795000000.0, epoch=EPOCH)
    events.set_jobs({})
    return events


def parse(frames: list[bytes]) -> list[dict[str, Any]]:
    """Each frame's fields, its data decoded."""
    found = []
    for frame in frames:
        fields: dict[str, Any] = {}
        data: list[str] = []
        for line in frame.decode().strip("\n").split("\n"):
            name, _, value = line.partition(": ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if data:  # joined with newlines, as the SSE standard says
            fields["data"] = json.loads("\n".join(data))
        found.append(fields)
    return found


def appear(events: JobEvents, *jobs: JobRecord) -> None:
    known = dict(events.jobs)
    changes = []
    for job in jobs:
        changes.append(Change("appeared", None, job))
        known[job.job_id] = job
    events.publish(changes, known)


async def test_every_subscriber_gets_what_it_sees_in_order() -> None:
    events = hub()
    everyone, _ = events.subscribe(ALL, "a", None)
    physics, _ = events.subscribe(PHYSICS, "b", None)
    appear(events, record(1), record(2, account="chem"), record(3))
    events.publish([Change("changed", record(1), record(1, "RUNNING"))], events.jobs)
    got = parse(await everyone.take(1))
    assert [(f["event"], f["data"]["job"]["job_id"]) for f in got] == [
        ("appeared", 1),
        ("appeared", 2),
        ("appeared", 3),
        ("changed", 1),
    ]
    assert [f["id"] for f in got] == [f"{EPOCH}-{n}" for n in (1, 2, 3, 4)]
    assert got[3]["data"]["previous"]["state"] == ["PENDING"]
    assert got[3]["data"]["job"]["state"] == ["RUNNING"]
    seen = parse(await physics.take(1))
    assert [f["data"]["job"]["job_id"] for f in seen] == [1, 3, 1]
    assert "chem" not in json.dumps(seen)
    assert physics.delivered == f"{EPOCH}-4"


async def test_take_waits_for_an_event_and_times_out_empty() -> None:
    events = hub()
    subscription, _ = events.subscribe(ALL, "a", None)
    assert await subscription.take(0.01) == []
    waiting = asyncio.create_task(subscription.take(10))
    await asyncio.sleep(0)
    appear(events, record(1))
    assert len(await waiting) == 1


async def test_a_slow_subscriber_is_ended_and_the_others_go_on() -> None:
    events = hub(queue_size=2)
    slow, _ = events.subscribe(ALL, "slow", None)
    fast, _ = events.subscribe(ALL, "fast", None)
    received: list[bytes] = []
    for number in range(1, 6):
        appear(events, record(number))
        received += await fast.take(1)  # the fast one reads after every poll
    assert slow.ending is not None
    assert slow.ending.reason == "slow_consumer"
    assert slow.pending() == 0  # its queue is dropped at once: memory stays bounded
    assert await slow.take(1) == []
    (end,) = parse([slow.end_frame()])
    assert end["event"] == "end"
    assert "id" not in end  # the client keeps the id of the last event it really got
    assert end["data"]["reason"] == "slow_consumer"
    assert end["data"]["last_id"] == f"{EPOCH}-0"
    assert [f["data"]["job"]["job_id"] for f in parse(received)] == [1, 2, 3, 4, 5]
    assert fast.ending is None


async def test_subscribers_are_bounded_per_caller_and_in_total() -> None:
    events = hub(max_subscribers=3, max_per_caller=2)
    first, _ = events.subscribe(ALL, "alice", None)
    events.subscribe(ALL, "alice", None)
    with pytest.raises(TooManySubscribers) as caught:
        events.subscribe(ALL, "alice", None)
    assert caught.value.per_caller
    events.subscribe(ALL, "bob", None)
    with pytest.raises(TooManySubscribers) as caught:
        events.subscribe(ALL, "carol", None)
    assert not caught.value.per_caller
    events.unsubscribe(first)
    events.subscribe(ALL, "carol", None)
    assert events.subscribers == 3


async def test_last_event_id_replays_what_the_subscriber_sees() -> None:
    events = hub()
    appear(events, record(1))
    mark = events.last_id
    appear(events, record(2, account="chem"), record(3))
    _, start = events.subscribe(PHYSICS, "a", mark)
    assert start.kind == "replay"
    assert [f["data"]["job"]["job_id"] for f in parse(list(start.frames))] == [3]
    _, start = events.subscribe(ALL, "a", mark)
    assert [f["data"]["job"]["job_id"] for f in parse(list(start.frames))] == [2, 3]


async def test_an_id_no_longer_kept_gets_a_resync_with_the_jobs_now() -> None:
    events = hub(buffer_size=16)
    appear(events, record(1))
    mark = events.last_id
    for number in range(2, 40):
        appear(events, record(number, account="chem" if number % 2 else "physics"))
    subscription, start = events.subscribe(PHYSICS, "a", mark)
    assert (start.kind, start.reason) == ("resync", "too_old")
    (frame,) = parse([snapshot_frame(start, subscription.view)])
    assert frame["event"] == "resync"
    assert frame["id"] == frame["data"]["id"] == events.last_id
    jobs = frame["data"]["jobs"]
    assert [job["job_id"] for job in jobs] == [1, *range(2, 40, 2)]
    assert {job["account"] for job in jobs} == {"physics"}
    _, start = events.subscribe(PHYSICS, "a", "ffffffff-1")
    assert (start.kind, start.reason) == ("resync", "unknown_stream")
    _, start = events.subscribe(PHYSICS, "a", None)
    assert (start.kind, start.reason) == ("snapshot", None)


async def test_close_ends_every_stream_after_what_is_queued() -> None:
    events = hub()
    subscription, _ = events.subscribe(ALL, "a", None)
    appear(events, record(1))
    events.close("shutdown", "the gateway is stopping")
    assert len(await subscription.take(1)) == 1  # what was queued is still written
    assert await subscription.take(1) == []
    assert subscription.ending is not None
    assert subscription.ending.reason == "shutdown"
    with pytest.raises(TooManySubscribers):
        events.subscribe(ALL, "b", None)


async def test_the_poller_is_wanted_only_while_somebody_listens() -> None:
    events = JobEvents(buffer_size=16, queue_size=4, max_subscribers=4, max_per_caller=4)
    wanted = asyncio.create_task(events.wanted())
    waiting = asyncio.create_task(events.first_list(10))
    await asyncio.wait_for(wanted, 1)  # somebody waits for the first list: poll
    events.set_jobs({1: record(1)})
    assert await waiting
    assert not events._wanted.is_set()
    subscription, _ = events.subscribe(ALL, "a", None)
    assert events._wanted.is_set()
    events.unsubscribe(subscription)
    assert not events._wanted.is_set()
    assert await events.first_list(0.01)  # ready: no wait
    fresh = JobEvents(buffer_size=16, queue_size=4, max_subscribers=4, max_per_caller=4)
    assert not await fresh.first_list(0.01)


def test_subscription_without_ending_has_a_closing_frame() -> None:
    subscription = Subscription(ALL, "a", 1, f"{EPOCH}-3")
    (end,) = parse([subscription.end_frame()])
    assert end["data"]["last_id"] == f"{EPOCH}-3"
