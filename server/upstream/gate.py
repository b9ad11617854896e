"""The cap on calls to slurmrestd under way at once, with a bounded, fair queue in front of it.

Every upstream call (forwarded requests, and so cache fills; account lookups; the discovery of
API versions) takes a slot in :func:`~.acting.send_as` for as long as it runs. Beyond
``max_concurrency`` calls, or ``max_concurrency_per_caller`` calls of one Slurm user, callers
wait in a queue of at most ``max_queue``; one user may hold at most ``max_queue_per_caller``
places in it, and slots are handed out round-robin between the users waiting (first come, first
served within one user), so a user sending a burst of misses, or slow requests, cannot push
everybody else out. A caller refused a place, or still waiting after
``queue_timeout`` seconds, gets :class:`~slurmgate.server.errors.UpstreamBusy` (503, with a
``Retry-After`` estimating when the queue will have drained).

``/health``'s pings do not queue: they are already one per ``health.max_age`` per replica, and a
full queue must not make a replica look as if slurmctld were down (a load balancer would take
every replica out at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator

from slurmgate.server.errors import UpstreamBusy

__all__ = ["UpstreamGate"]

#: Weight of the newest call in the running mean of how long a slot is held.
_SMOOTHING = 0.1
#: Bounds of the Retry-After of a 503, in seconds.
_RETRY_BOUNDS = (1.0, 60.0)


class UpstreamGate:
    """Slots for upstream calls; see the module docstring. One event loop owns it."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        max_queue: int,
        max_queue_per_caller: int,
        queue_timeout: float,
        max_concurrency_per_caller: int | None = None,
    ) -> None:
        self.configure(
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            max_queue_per_caller=max_queue_per_caller,
            queue_timeout=queue_timeout,
            max_concurrency_per_caller=max_concurrency_per_caller,
        )
        #: calls holding a slot (guarded by the event loop: changed only without an await between
        #: the check and the change)
        self.in_flight = 0
        #: callers waiting, over every user
        self.queued = 0
        # user -> slots it holds; users at 0 are removed (same guard as in_flight)
        self._holding: dict[str, int] = {}
        #: refusals: the queue was full, the user's share of it was, the wait timed out
        self.rejected_full = 0
        self.rejected_caller = 0
        self.rejected_timeout = 0
        # user -> its waiters, oldest first; the dict's order is the round-robin order (a user
        # served goes to the back). Every future here is pending or cancelled; a cancelled one is
        # skipped by _dispatch and removed by its own waiter, whichever comes first.
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        #: running mean of seconds a slot is held, for Retry-After
        self._mean_hold = 0.1

    def configure(
        self,
        *,
        max_concurrency: int,
        max_queue: int,
        max_queue_per_caller: int,
        queue_timeout: float,
        max_concurrency_per_caller: int | None = None,
    ) -> None:
        """Set the bounds (at start, and on SIGHUP); more room lets waiters in at once.

        ``max_concurrency_per_caller`` None: as many as ``max_concurrency``.
        """
        self.max_concurrency = max_concurrency
        self.max_concurrency_per_caller = max_concurrency_per_caller or max_concurrency
        self.max_queue = max_queue
        self.max_queue_per_caller = max_queue_per_caller
        self.queue_timeout = queue_timeout
        if hasattr(self, "_waiting"):
            self._dispatch()

    @contextlib.asynccontextmanager
    async def slot(self, caller: str) -> AsyncIterator[None]:
        """Hold a slot for the body; :class:`UpstreamBusy` when none comes in time."""
        await self.acquire(caller)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            yield
        finally:
            held = loop.time() - started
            self._mean_hold += _SMOOTHING * (held - self._mean_hold)
            self.release(caller)

    def retry_after(self) -> float:
        """Seconds until the queue as it is now should have drained (1 to 60)."""
        waves = (self.queued + 1) / self.max_concurrency
        low, high = _RETRY_BOUNDS
        return min(high, max(low, math.ceil(waves) * self._mean_hold))

    async def acquire(self, caller: str) -> None:
        """Take a slot, waiting in the queue if need be; release it with :meth:`release`."""
        # Whenever a slot is free, no waiter could take it (_dispatch ran after every change):
        # a newcomer within its own share takes it without jumping anyone's turn.
        if (
            self.in_flight < self.max_concurrency
            and self._holding.get(caller, 0) < self.max_concurrency_per_caller
        ):
            self._grant(caller)
            return
        if self.queued >= self.max_queue:
            self.rejected_full += 1
            raise UpstreamBusy(
                f"slurmgate has {self.in_flight} calls to slurmrestd under way and "
                f"{self.queued} waiting (upstream.max_queue); try again later",
                retry_after=self.retry_after(),
                source="slurmgate upstream queue",
            )
        waiters = self._waiting.get(caller)
        if waiters is not None and len(waiters) >= self.max_queue_per_caller:
            self.rejected_caller += 1
            raise UpstreamBusy(
                f"{len(waiters)} requests of {caller or 'the gateway'} are already waiting for "
                "slurmrestd (upstream.max_queue_per_caller); try again later",
                retry_after=self.retry_after(),
                source="slurmgate upstream queue",
            )
        if waiters is None:
            waiters = self._waiting[caller] = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        self.queued += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the slot came just as the time ran out: use it
            self._forget(caller, waiter)
            self.rejected_timeout += 1
            raise UpstreamBusy(
                f"no slot for a call to slurmrestd within upstream.queue_timeout "
                f"({self.queue_timeout:g} s); try again later",
                retry_after=self.retry_after(),
                source="slurmgate upstream queue",
            ) from None
        except BaseException:
            # Cancelled (the client went away, the gateway stops): a slot given meanwhile is
            # passed on, never lost.
            if waiter.done() and not waiter.cancelled():
                self.release(caller)
            else:
                self._forget(caller, waiter)
            raise

    def release(self, caller: str) -> None:
        """Give ``caller``'s slot back; the next waiter (round-robin between users) gets it."""
        self.in_flight -= 1
        left = self._holding[caller] - 1
        if left:
            self._holding[caller] = left
        else:
            del self._holding[caller]
        self._dispatch()

    def _grant(self, caller: str) -> None:
        self.in_flight += 1
        self._holding[caller] = self._holding.get(caller, 0) + 1

    def _forget(self, caller: str, waiter: asyncio.Future[None]) -> None:
        """Remove a waiter that gave up, unless _dispatch already dropped it."""
        waiters = self._waiting.get(caller)
        if waiters is None or waiter not in waiters:
            return
        waiters.remove(waiter)
        self.queued -= 1
        if not waiters:
            del self._waiting[caller]

    def _dispatch(self) -> None:
        while self.in_flight < self.max_concurrency:
            # the first user in the round below its own share (callers at it keep their turn)
            share = self.max_concurrency_per_caller
            caller = next((c for c in self._waiting if self._holding.get(c, 0) < share), None)
            if caller is None:
                return
            waiters = self._waiting.pop(caller)
            waiter = waiters.popleft()
            self.queued -= 1
            if waiters:
                self._waiting[caller] = waiters  # to the back of the round
            if waiter.cancelled():
                continue
            waiter.set_result(None)
            self._grant(caller)
