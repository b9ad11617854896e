"""The one poller of a cluster's jobs: asks slurmrestd, diffs, publishes to every subscriber.

It asks ``GET /slurm/<newest>/jobs?update_time=T`` with T the time of the last list it got, so
while no job changes slurmctld answers "no change" without packing a single job: an idle cluster
costs one tiny RPC per interval, whatever the number of subscribers. It polls only while somebody
subscribes; when the first subscriber of a quiet spell comes, the next list is diffed with the
last one known, so the events still tell every change (intermediate states a poll never saw are
not invented).

The interval adapts (:func:`next_interval`): ``min_interval`` right after a change, doubling up
to ``max_interval`` while nothing changes, and never shorter than ``load_factor`` times what the
last poll took (a loaded slurmctld answers slowly, and is then asked less often). A failed poll
is retried with the same backoff; subscribers keep their streams (and heartbeats) meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from slurmgate.server.errors import SlurmgateError
from slurmgate.server.events.changes import Change, diff
from slurmgate.server.events.hub import JobEvents
from slurmgate.server.events.records import JobRecord, JobsAnswer, UnreadableJobs, read_jobs

__all__ = ["Fetch", "Interval", "Poller", "next_interval"]

log = logging.getLogger("slurmgate.events")

#: update_time (0: none) -> slurmrestd's answer body; raises SlurmgateError when it cannot answer
Fetch = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Interval:
    """The bounds of the poll interval (``[events]`` in the configuration)."""

    min: float
    max: float
    load_factor: float


def next_interval(current: float, *, changed: bool, took: float, bounds: Interval) -> float:
    """Seconds until the next poll, after one that ``changed`` (or not) and took ``took`` s."""
    interval = bounds.min if changed else min(max(current, bounds.min) * 2, bounds.max)
    return max(interval, took * bounds.load_factor)


def _digest(
    body: bytes, asked_since: int, known: Mapping[int, JobRecord]
) -> tuple[JobsAnswer, list[Change]]:
    """Decode, read and diff one answer (in a thread: a large list takes a while)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UnreadableJobs("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise UnreadableJobs("the answer is not a JSON object")
    errors = data.get("errors")
    if errors:
        raise UnreadableJobs(f"slurmrestd reported errors: {str(errors)[:300]}")
    answer = read_jobs(data, asked_since=asked_since)
    return answer, diff(known, answer.jobs) if answer.changed else []


class Poller:
    """Polls for ``events`` with ``fetch`` until cancelled."""

    def __init__(
        self,
        events: JobEvents,
        fetch: Fetch,
        bounds: Interval,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``clock`` times polls (monotonic); ``sleep`` waits between them (tests pass fakes)."""
        self.events = events
        self.fetch = fetch
        self.bounds = bounds
        self._clock = clock
        self._sleep = sleep
        #: the ``last_update`` of the last list (0: none yet, ask for everything)
        self.update_time = 0
        #: seconds until the next poll
        self.interval = bounds.min
        #: polls made, failed ones included
        self.polls = 0
        self.failures = 0

    async def poll(self) -> int:
        """One poll: the events it published (the first one publishes none, it sets the state)."""
        self.polls += 1
        self.events.stats.polls += 1
        asked_since = self.update_time
        body = await self.fetch(asked_since)
        known = self.events.jobs
        answer, changes = await asyncio.to_thread(_digest, body, asked_since, known)
        if not answer.changed:
            return 0
        self.update_time = answer.last_update
        if not self.events.ready.is_set():
            self.events.set_jobs(answer.jobs)
            return 0
        return self.events.publish(changes, answer.jobs)

    async def run(self) -> None:
        """Poll while anyone subscribes, forever (cancel to stop)."""
        while True:
            await self.events.wanted()
            started = self._clock()
            try:
                changed = await self.poll() > 0
            except (SlurmgateError, UnreadableJobs) as error:
                failed: Exception | None = error
                changed = False
            except Exception as error:
                # A bug must not silently end every stream's events: logged, retried.
                log.exception("job events: the poll failed unexpectedly")
                failed, changed = error, False
            else:
                failed = None
            took = self._clock() - started
            self.interval = next_interval(
                self.interval, changed=changed, took=took, bounds=self.bounds
            )
            if failed is not None:
                self.failures += 1
                self.events.stats.failed_polls += 1
                log.warning("job events: poll failed (%s); next in %.1f s", failed, self.interval)
            await self._sleep(self.interval)
