"""Single-flight: one run per key at a time, shared results, failures not remembered."""

from __future__ import annotations

import asyncio

import pytest

from slurmgate.server.cache.flight import SingleFlight


async def test_concurrent_calls_share_one_run() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 42

    calls = [asyncio.create_task(flight.do("k", work)) for _ in range(100)]
    await asyncio.sleep(0)  # every call is now waiting on the one task
    assert flight.running("k")
    assert len(flight) == 1
    release.set()
    results = await asyncio.gather(*calls)
    assert runs == 1
    assert [value for value, _ in results] == [42] * 100
    assert sum(leader for _, leader in results) == 1
    assert not flight.running("k")


async def test_other_keys_run_separately() -> None:
    flight: SingleFlight[str, str] = SingleFlight()

    async def work(key: str) -> str:
        await asyncio.sleep(0)
        return key

    a, b = await asyncio.gather(
        flight.do("a", lambda: work("a")), flight.do("b", lambda: work("b"))
    )
    assert (a[0], b[0]) == ("a", "b")


async def test_failure_reaches_every_waiter_and_is_forgotten() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise ConnectionError("upstream down")

    calls = [asyncio.create_task(flight.do("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert not flight.running("k")

    async def working() -> int:
        return 7

    assert await flight.do("k", working) == (7, True)  # the failure was not kept


async def test_cancelled_waiter_does_not_cancel_the_work() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 1

    first = asyncio.create_task(flight.do("k", work))
    second = asyncio.create_task(flight.do("k", work))
    await asyncio.sleep(0)
    first.cancel()  # the leader's client went away
    await asyncio.sleep(0)
    release.set()
    assert await second == (1, False)
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_call_in_the_moment_after_a_failure_starts_anew() -> None:
    # Between the task's end and its done-callback the key is still there: a call in that
    # moment must not be handed the failure that just happened.
    flight: SingleFlight[str, int] = SingleFlight()
    finished = asyncio.Event()

    async def failing() -> int:
        finished.set()  # wakes the test before the task ends, so it runs before the callback
        raise ConnectionError("upstream down")

    async def working() -> int:
        return 7

    leader = asyncio.create_task(flight.do("k", failing))
    await finished.wait()  # the task has ended by now; its done-callback is still queued
    assert not flight.running("k")
    assert await flight.do("k", working) == (7, True)
    with pytest.raises(ConnectionError):
        await leader
    assert len(flight) == 0  # the old task's callback did not remove the new entry early


async def test_cancel_ends_the_work_under_way_and_its_waiters() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    started = asyncio.Event()
    never = asyncio.Event()
    cancelled = False

    async def hanging() -> int:
        nonlocal cancelled
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        return 1

    waiter = asyncio.create_task(flight.do("k", hanging))
    await started.wait()
    await flight.cancel()
    assert cancelled
    assert not flight.running("k")
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await flight.cancel()  # nothing under way: returns at once


async def test_tasks_carry_the_flight_name() -> None:
    flight: SingleFlight[str, str | None] = SingleFlight(name="slurmgate test flight")

    async def own_name() -> str | None:
        task = asyncio.current_task()
        return None if task is None else task.get_name()

    assert await flight.do("k", own_name) == ("slurmgate test flight", True)
