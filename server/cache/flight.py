"""Single-flight: concurrent calls with the same key share one run of the work.

As in Go's x/sync/singleflight: the first caller for a key starts the work as a task, later
callers for the key wait for that task, and the key is forgotten when the task ends, so failures
are never remembered. Waiters ``await asyncio.shield(task)``: a waiter that is cancelled (its
client went away) does not cancel the work the others wait for; only :meth:`SingleFlight.cancel`
(shutdown) does. Pure asyncio, no aiohttp: the token renewal, the health checks and the group
cache use it too (``policies/requirements.py`` gets one passed in, so policies import nothing of
the server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Runs at most one ``work()`` per key at a time; everyone asking meanwhile gets its result.

    ``name`` names the tasks (as asyncio's debug messages show them).
    """

    def __init__(self, *, name: str | None = None) -> None:
        # Guarded by the event loop: read and written only between awaits. An entry is added by
        # the caller that starts the task and removed only by that task's own done-callback.
        self._tasks: dict[K, asyncio.Task[V]] = {}
        self._name = name
        #: calls waiting for a task right now, leaders included (for metrics and tests)
        self.waiting = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: K) -> bool:
        """Whether work for ``key`` is in flight."""
        task = self._tasks.get(key)
        return task is not None and not task.done()

    async def do(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> tuple[V, bool]:
        """``work()``'s result, and whether this call started it (False: it joined)."""
        task = self._tasks.get(key)
        # A task that ended but whose done-callback has not run yet is no flight to join: its
        # failure would be remembered for that moment. Its callback leaves the new task alone.
        leader = task is None or task.done()
        if task is None or task.done():
            task = asyncio.create_task(work(), name=self._name)
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        self.waiting += 1
        try:
            return await asyncio.shield(task), leader
        finally:
            self.waiting -= 1

    async def cancel(self) -> None:
        """Cancel the work under way for every key and wait until it has ended (for shutdown).

        Its waiters get :class:`asyncio.CancelledError`; what the work raised is not raised here.
        """
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            # wait() neither raises the tasks' errors nor cancels them if this call is cancelled.
            await asyncio.wait(tasks)

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited is not an "unretrieved" error
