"""The last events of a stream, kept for clients that reconnect with ``Last-Event-ID`` (pure).

An event id is ``EPOCH-N``: ``N`` counts the stream's events from 1, ``EPOCH`` is random per
stream (per gateway process), so an id from before a restart, or from another replica behind the
same load balancer, is recognised as unknown instead of being taken for a position in this
stream.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from slurmgate.server.events import sse
from slurmgate.server.events.changes import Change
from slurmgate.server.events.filters import Seen

__all__ = ["Event", "EventBuffer", "Gap"]

_ID = re.compile(r"([0-9a-f]{8})-(0|[1-9][0-9]{0,17})")


@dataclass(slots=True, eq=False)
class Event:
    """One change of one job, numbered in its stream."""

    event_id: str
    seq: int
    change: Change
    #: UNIX time the poller saw the change
    time: float
    #: (kind, why) -> the frame; every subscriber seeing the change alike shares it
    #: (guarded by the event loop)
    _frames: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def frame(self, seen: Seen) -> bytes:
        """This event as ``seen`` shows it, framed for the stream."""
        key = (seen.kind, seen.why)
        found = self._frames.get(key)
        if found is None:
            data: dict[str, object] = {
                "id": self.event_id,
                "event": seen.kind,
                "why": seen.why,
                "time": sse.timestamp(self.time),
                "job": seen.job.as_json(),
            }
            if seen.before is not None:
                before = seen.before
                data["previous"] = {
                    "state": list(before.state),
                    "account": before.account,
                    "partition": before.partition,
                }
            found = self._frames[key] = sse.frame(seen.kind, data, event_id=self.event_id)
        return found


@dataclass(frozen=True, slots=True)
class Gap:
    """Why a ``Last-Event-ID`` cannot be resumed from: the client must resync."""

    #: "unknown_stream" (another process or replica), "too_old" (no longer kept), "unknown_id"
    reason: str


class EventBuffer:
    """The last ``size`` events of the stream ``epoch``, oldest first."""

    def __init__(self, epoch: str, size: int) -> None:
        """An empty stream; ``epoch`` is 8 hexadecimal digits."""
        if not re.fullmatch(r"[0-9a-f]{8}", epoch):
            raise ValueError("an epoch is 8 lowercase hexadecimal digits")
        self.epoch = epoch
        # Guarded by the event loop: appended to by the poller only.
        self._events: deque[Event] = deque(maxlen=size)
        self._seq = 0

    @property
    def last_id(self) -> str:
        """The id of the newest event (``EPOCH-0`` before the first)."""
        return f"{self.epoch}-{self._seq}"

    def __len__(self) -> int:
        return len(self._events)

    def append(self, change: Change, time: float) -> Event:
        """Number ``change`` and keep it (the oldest goes once ``size`` are kept)."""
        self._seq += 1
        event = Event(f"{self.epoch}-{self._seq}", self._seq, change, time)
        self._events.append(event)
        return event

    def since(self, last_event_id: str) -> list[Event] | Gap:
        """The events after ``last_event_id``, oldest first, or why they cannot be told."""
        match = _ID.fullmatch(last_event_id.strip())
        if match is None:
            return Gap("unknown_id")
        if match[1] != self.epoch:
            return Gap("unknown_stream")
        seq = int(match[2])
        if seq > self._seq:
            return Gap("unknown_id")
        oldest = self._events[0].seq if self._events else self._seq + 1
        if seq < oldest - 1:
            return Gap("too_old")
        # Kept events are numbered without holes: the one after seq is at seq + 1 - oldest.
        return list(self._events)[seq + 1 - oldest :]
