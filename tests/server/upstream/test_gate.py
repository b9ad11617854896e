"""The cap on upstream calls (server/upstream/gate.py) with calls that block until released."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from slurmgate.server.errors import UpstreamBusy, to_response
from slurmgate.server.upstream.gate import UpstreamGate


class Calls:
    """Calls that take a slot and block until released; records the most held at once."""

    def __init__(self, gate: UpstreamGate) -> None:
        self.gate = gate
        self.running = 0
        self.peak = 0
        #: callers in the order they got their slot
        self.order: list[str] = []
        self.release = asyncio.Event()
        self.started = asyncio.Condition()

    async def call(self, caller: str) -> str:
        async with self.gate.slot(caller):
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.order.append(caller)
            async with self.started:
                self.started.notify_all()
            try:
                await self.release.wait()
            finally:
                self.running -= 1
        return caller

    async def until(self, check: Callable[[], bool]) -> None:
        async with self.started:
            await asyncio.wait_for(self.started.wait_for(check), 5)


def gate(concurrency: int = 2, queue: int = 4, per_caller: int = 4, timeout: float = 5.0) -> Calls:
    return Calls(
        UpstreamGate(
            max_concurrency=concurrency,
            max_queue=queue,
            max_queue_per_caller=per_caller,
            queue_timeout=timeout,
        )
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_never_more_than_the_cap_and_the_queue_drains() -> None:
    calls = gate(concurrency=2, queue=10, per_caller=10)
    tasks = [asyncio.create_task(calls.call(f"u{i}")) for i in range(8)]
    await calls.until(lambda: calls.running == 2)
    await settle()
    assert (calls.gate.in_flight, calls.gate.queued) == (2, 6)
    calls.release.set()
    assert sorted(await asyncio.gather(*tasks)) == sorted(f"u{i}" for i in range(8))
    assert calls.peak == 2
    assert (calls.gate.in_flight, calls.gate.queued) == (0, 0)


async def test_a_full_queue_is_refused_with_503_and_retry_after() -> None:
    calls = gate(concurrency=1, queue=2, per_caller=2)
    held = [asyncio.create_task(calls.call(c)) for c in ("a", "b", "c")]
    await calls.until(lambda: calls.running == 1)
    await settle()
    assert calls.gate.queued == 2
    with pytest.raises(UpstreamBusy) as refused:
        await calls.call("d")
    error = refused.value
    assert error.status == 503
    assert "upstream.max_queue" in error.description
    retry = int(error.headers["Retry-After"])
    assert 1 <= retry <= 60
    response = to_response(error)
    assert response.status == 503
    assert response.headers["Retry-After"] == str(retry)
    assert calls.gate.rejected_full == 1
    calls.release.set()
    await asyncio.gather(*held)


async def test_one_caller_cannot_take_the_whole_queue() -> None:
    calls = gate(concurrency=1, queue=10, per_caller=2)
    held = [asyncio.create_task(calls.call("greedy")) for _ in range(3)]
    await calls.until(lambda: calls.running == 1)
    await settle()
    with pytest.raises(UpstreamBusy, match="max_queue_per_caller"):
        await calls.call("greedy")
    assert calls.gate.rejected_caller == 1
    # someone else still gets in line
    other = asyncio.create_task(calls.call("modest"))
    await settle()
    assert calls.gate.queued == 3
    calls.release.set()
    await asyncio.gather(*held, other)


async def test_slots_go_round_robin_between_callers() -> None:
    calls = gate(concurrency=1, queue=20, per_caller=20)
    first = asyncio.create_task(calls.call("greedy"))
    await calls.until(lambda: calls.running == 1)
    greedy = [asyncio.create_task(calls.call("greedy")) for _ in range(5)]
    await settle()
    modest = [asyncio.create_task(calls.call("modest")) for _ in range(2)]
    await settle()
    calls.release.set()
    await asyncio.gather(first, *greedy, *modest)
    # the greedy caller queued 5 before the modest one's 2, yet they alternate
    assert calls.order == ["greedy"] * 2 + ["modest", "greedy"] * 2 + ["greedy"] * 2


async def test_a_wait_too_long_is_refused() -> None:
    calls = gate(concurrency=1, queue=5, timeout=0.05)
    held = asyncio.create_task(calls.call("a"))
    await calls.until(lambda: calls.running == 1)
    with pytest.raises(UpstreamBusy, match="queue_timeout"):
        await calls.call("b")
    assert (calls.gate.queued, calls.gate.rejected_timeout) == (0, 1)
    calls.release.set()
    await held


async def test_a_waiter_that_goes_away_leaves_no_trace_and_loses_no_slot() -> None:
    calls = gate(concurrency=1, queue=5)
    held = asyncio.create_task(calls.call("a"))
    await calls.until(lambda: calls.running == 1)
    gone = asyncio.create_task(calls.call("b"))
    await settle()
    assert calls.gate.queued == 1
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert calls.gate.queued == 0
    calls.release.set()
    await held
    assert (calls.gate.in_flight, calls.gate.queued) == (0, 0)


async def test_a_slot_given_to_a_waiter_being_cancelled_is_passed_on() -> None:
    calls = gate(concurrency=1, queue=5)
    await calls.gate.acquire("a")
    cancelled = asyncio.create_task(calls.call("b"))
    after = asyncio.create_task(calls.call("c"))
    await settle()
    assert calls.gate.queued == 2
    # the slot goes to b (its future gets a result), and b is cancelled before it resumes
    calls.gate.release("a")
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await calls.until(lambda: calls.running == 1)
    assert calls.order == ["c"]
    calls.release.set()
    assert await after == "c"
    assert (calls.gate.in_flight, calls.gate.queued) == (0, 0)


async def test_more_room_lets_waiters_in_at_once() -> None:
    calls = gate(concurrency=1, queue=5)
    tasks = [asyncio.create_task(calls.call(f"u{i}")) for i in range(4)]
    await calls.until(lambda: calls.running == 1)
    await settle()
    calls.gate.configure(max_concurrency=3, max_queue=5, max_queue_per_caller=5, queue_timeout=5)
    await calls.until(lambda: calls.running == 3)
    assert calls.gate.queued == 1
    calls.release.set()
    await asyncio.gather(*tasks)


async def test_one_caller_cannot_hold_every_slot() -> None:
    calls = Calls(
        UpstreamGate(
            max_concurrency=3,
            max_concurrency_per_caller=2,
            max_queue=10,
            max_queue_per_caller=10,
            queue_timeout=5,
        )
    )
    slow = [asyncio.create_task(calls.call("slow")) for _ in range(4)]
    await calls.until(lambda: calls.running == 2)
    await settle()
    # a slot is free, but not for "slow": it waits while another caller goes ahead at once
    assert (calls.gate.in_flight, calls.gate.queued) == (2, 2)
    other = asyncio.create_task(calls.call("other"))
    await calls.until(lambda: calls.running == 3)
    assert calls.order == ["slow", "slow", "other"]
    calls.release.set()
    await asyncio.gather(*slow, other)
    assert calls.peak == 3
    assert (calls.gate.in_flight, calls.gate.queued) == (0, 0)
