"""The job event stream of one cluster: the poller publishes, every subscriber gets its share.

Publishing never waits: each subscriber has a bounded queue of frames, filled by
:meth:`JobEvents.publish` on the event loop and emptied by that subscriber's own handler. A
subscriber whose queue is full is ended at once (its queue dropped, reason ``slow_consumer``),
so a client that reads slowly costs the others nothing and holds at most ``queue_size`` frames.
The number of subscribers is bounded in total and per caller.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from slurmgate.server.events import sse
from slurmgate.server.events.buffer import EventBuffer, Gap
from slurmgate.server.events.changes import Change
from slurmgate.server.events.filters import View
from slurmgate.server.events.records import JobRecord

__all__ = [
    "ENDINGS",
    "EventStats",
    "JobEvents",
    "Start",
    "Subscription",
    "TooManySubscribers",
    "snapshot_frame",
]

#: Why streams end, as counted: the ``end`` event's reasons, and ``client_gone`` (the client
#: closed the connection or stopped reading for events.write_timeout).
ENDINGS = ("slow_consumer", "shutdown", "max_duration", "credentials", "client_gone")


@dataclass(slots=True)
class EventStats:
    """Counters of the stream, read by the metrics when scraped (guarded by the event loop)."""

    polls: int = 0
    failed_polls: int = 0
    #: events published (each counted once, however many subscribers got it)
    events: int = 0
    #: streams started, and ended by reason (ENDINGS)
    streams: int = 0
    ended: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDINGS, 0))


class TooManySubscribers(Exception):
    """No room for another subscriber: ``per_caller`` says whether the caller's own bound."""

    def __init__(self, description: str, *, per_caller: bool) -> None:
        super().__init__(description)
        self.description = description
        self.per_caller = per_caller


@dataclass(frozen=True, slots=True)
class Ending:
    """Why a stream ends: a reason word and a sentence for people."""

    reason: str
    description: str


class Subscription:
    """One subscriber's queue of frames and, once it must stop, why."""

    def __init__(self, view: View, caller: str, limit: int, last_id: str) -> None:
        """A subscriber of ``caller`` shown ``view``, holding at most ``limit`` frames."""
        self.view = view
        self.caller = caller
        self._limit = limit
        # (event id, frame) waiting to be written; guarded by the event loop
        self._frames: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        #: set once: the stream must end (the frames queued before it are still written,
        #: except for a slow consumer, whose queue is dropped)
        self.ending: Ending | None = None
        #: the id of the last event handed to the writer (the client's position)
        self.delivered = last_id

    def offer(self, event_id: str, frame: bytes) -> None:
        """Queue a frame; a full queue ends the subscription instead."""
        if self.ending is not None:
            return
        if len(self._frames) >= self._limit:
            self._frames.clear()
            self.end(
                "slow_consumer",
                f"more than {self._limit} events waited to be sent to this client; reconnect "
                "with Last-Event-ID to get what was missed",
            )
            return
        self._frames.append((event_id, frame))
        self._wake.set()

    def end(self, reason: str, description: str) -> None:
        """Ask the writer to end the stream (the first reason given wins)."""
        if self.ending is None:
            self.ending = Ending(reason, description)
        self._wake.set()

    def pending(self) -> int:
        """Frames waiting to be written."""
        return len(self._frames)

    async def take(self, within: float) -> list[bytes]:
        """The frames queued, waiting at most ``within`` s for one; [] when none came (or the
        stream is ending and nothing is left)."""
        if not self._frames and self.ending is None:
            try:
                async with asyncio.timeout(within):
                    await self._wake.wait()
            except TimeoutError:
                return []
        self._wake.clear()
        if not self._frames:
            return []
        self.delivered = self._frames[-1][0]
        frames = [frame for _, frame in self._frames]
        self._frames.clear()
        return frames

    def end_frame(self) -> bytes:
        """The last frame: why the stream ends and where the client is (no id: it keeps its own)."""
        ending = self.ending or Ending("closed", "the stream ended")
        return sse.frame(
            "end",
            {
                "event": "end",
                "reason": ending.reason,
                "description": ending.description,
                "last_id": self.delivered,
            },
        )


@dataclass(frozen=True, slots=True)
class Start:
    """What a new subscriber is sent first."""

    #: "replay" (the missed events follow), "snapshot" (no Last-Event-ID) or "resync"
    kind: str
    #: frames of the missed events (replay)
    frames: tuple[bytes, ...]
    #: for snapshot and resync: the jobs now, and why a resync
    jobs: Mapping[int, JobRecord]
    reason: str | None
    last_id: str
    #: UNIX time of the jobs list (the last poll that changed it, or the first)
    time: float


def snapshot_frame(start: Start, view: View) -> bytes:
    """The ``snapshot`` or ``resync`` frame of ``start`` as ``view`` sees it.

    Pure and reading only immutable data, so it can run in a thread (a large cluster's list takes
    a while to filter and encode, and the event loop must not wait for it).
    """
    jobs = [job.as_json() for _, job in sorted(start.jobs.items()) if view.shows(job)]
    data: dict[str, object] = {
        "id": start.last_id,
        "event": start.kind,
        "reason": start.reason,
        "time": sse.timestamp(start.time),
        "jobs": jobs,
    }
    return sse.frame(start.kind, data, event_id=start.last_id, spread="jobs")


class JobEvents:
    """The events of one cluster: its buffer, its jobs now and its subscribers."""

    def __init__(
        self,
        *,
        buffer_size: int,
        queue_size: int,
        max_subscribers: int,
        max_per_caller: int,
        clock: Callable[[], float] = time.time,
        epoch: str | None = None,
    ) -> None:
        """An empty stream (random epoch unless given); ``clock`` gives UNIX times."""
        self._buffer = EventBuffer(epoch or secrets.token_hex(4), buffer_size)
        self._queue_size = queue_size
        self._max_subscribers = max_subscribers
        self._max_per_caller = max_per_caller
        self._clock = clock
        # Replaced whole by the poller, never mutated (so a thread may read one); event loop.
        self.jobs: Mapping[int, JobRecord] = {}
        self.jobs_time = 0.0
        # Guarded by the event loop.
        self._subscribers: set[Subscription] = set()
        self._per_caller: Counter[str] = Counter()
        #: set once the first poll has listed the jobs
        self.ready = asyncio.Event()
        # Set while anyone subscribes: the poller waits on it.
        self._wanted = asyncio.Event()
        # Requests waiting for the first list (they want the poller too).
        self._waiting = 0
        self._closed: str | None = None
        self.stats = EventStats()

    @property
    def last_id(self) -> str:
        """The id of the newest event."""
        return self._buffer.last_id

    @property
    def epoch(self) -> str:
        """This stream's epoch (the first part of its event ids)."""
        return self._buffer.epoch

    @property
    def subscribers(self) -> int:
        """Subscribers now."""
        return len(self._subscribers)

    async def wanted(self) -> None:
        """Return once somebody subscribes (at once when somebody does)."""
        await self._wanted.wait()

    async def first_list(self, within: float) -> bool:
        """Wait at most ``within`` s for the first list of jobs (waking the poller); whether
        there is one."""
        if self.ready.is_set():
            return True
        self._waiting += 1
        self._wanted.set()
        try:
            async with asyncio.timeout(within):
                await self.ready.wait()
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
            self._idle()
        return True

    def _idle(self) -> None:
        if not self._subscribers and not self._waiting:
            self._wanted.clear()

    def set_jobs(self, jobs: Mapping[int, JobRecord]) -> None:
        """The first list of jobs: the state events are changes of (no events)."""
        self.jobs = jobs
        self.jobs_time = self._clock()
        self.ready.set()

    def publish(self, changes: Iterable[Change], jobs: Mapping[int, JobRecord]) -> int:
        """Number and keep ``changes`` (which led to ``jobs``), queue them for every subscriber
        that sees them; returns how many there were. Never waits."""
        now = self._clock()
        count = 0
        for change in changes:
            event = self._buffer.append(change, now)
            count += 1
            for subscriber in self._subscribers:
                seen = subscriber.view.see(change)
                if seen is not None:
                    subscriber.offer(event.event_id, event.frame(seen))
        self.jobs = jobs
        if count:
            self.jobs_time = now
        self.stats.events += count
        self.ready.set()
        return count

    def subscribe(
        self, view: View, caller: str, last_event_id: str | None
    ) -> tuple[Subscription, Start]:
        """A new subscriber and what it is sent first; :class:`TooManySubscribers` when full.

        No await between reading the buffer and registering: no event can fall in between.
        """
        if self._closed is not None:
            raise TooManySubscribers(self._closed, per_caller=False)
        if len(self._subscribers) >= self._max_subscribers:
            raise TooManySubscribers(
                f"{self._max_subscribers} event streams are open on this gateway "
                "(events.max_subscribers); try again later",
                per_caller=False,
            )
        if self._per_caller[caller] >= self._max_per_caller:
            raise TooManySubscribers(
                f"{caller} has {self._max_per_caller} event streams open "
                "(events.max_subscribers_per_caller); close one first",
                per_caller=True,
            )
        start = self._start(view, last_event_id)
        subscription = Subscription(view, caller, self._queue_size, start.last_id)
        self._subscribers.add(subscription)
        self._per_caller[caller] += 1
        self.stats.streams += 1
        self._wanted.set()
        return subscription, start

    def _start(self, view: View, last_event_id: str | None) -> Start:
        last = self._buffer.last_id
        if last_event_id is None:
            return Start("snapshot", (), self.jobs, None, last, self.jobs_time)
        missed = self._buffer.since(last_event_id)
        if isinstance(missed, Gap):
            return Start("resync", (), self.jobs, missed.reason, last, self.jobs_time)
        frames = []
        for event in missed:
            seen = view.see(event.change)
            if seen is not None:
                frames.append(event.frame(seen))
        return Start("replay", tuple(frames), {}, None, last, self.jobs_time)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber (its handler has ended), counting why it ended."""
        if subscription in self._subscribers:
            ending = subscription.ending
            reason = ending.reason if ending is not None else "client_gone"
            if reason in self.stats.ended:
                self.stats.ended[reason] += 1
            self._subscribers.discard(subscription)
            self._per_caller[subscription.caller] -= 1
            if self._per_caller[subscription.caller] <= 0:
                del self._per_caller[subscription.caller]
        self._idle()

    def close(self, reason: str, description: str) -> None:
        """End every stream (after what is queued) and refuse new ones: the gateway stops."""
        self._closed = description
        for subscription in self._subscribers:
            subscription.end(reason, description)
