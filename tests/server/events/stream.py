"""Reading a text/event-stream in tests: frames with bounded waits."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse

__all__ = ["Frame", "SseReader"]


@dataclass
class Frame:
    """One event (or an id-only heartbeat): its fields, ``data`` decoded."""

    event: str | None = None
    event_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None


class SseReader:
    """Frames from ``response``, one at a time; each read waits at most ``within`` seconds."""

    def __init__(self, response: ClientResponse, within: float = 10.0) -> None:
        self.response = response
        self.within = within

    async def frame(self) -> Frame | None:
        """The next frame, None at the end of the stream."""
        found = Frame()
        seen = False
        data: list[str] = []
        async with asyncio.timeout(self.within):
            while True:  # bounded by the timeout above
                raw = await self.response.content.readline()
                if not raw or raw == b"\n":
                    if data:  # the data lines of a frame, joined as the standard says
                        found.data = json.loads("\n".join(data))
                    if not raw:
                        return found if seen else None
                    if seen:
                        return found
                    continue
                line = raw.decode().rstrip("\n")
                seen = True
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    found.comments.append(value)
                elif name == "event":
                    found.event = value
                elif name == "id":
                    found.event_id = value
                elif name == "retry":
                    found.retry = int(value)
                elif name == "data":
                    data.append(value)
                else:
                    raise AssertionError(f"unknown field {line!r}")

    async def event(self) -> Frame:
        """The next frame that is an event (heartbeats and retry lines skipped)."""
        for _ in range(1000):
            frame = await self.frame()
            assert frame is not None, "the stream ended"
            if frame.event is not None:
                return frame
        raise AssertionError("no event in 1000 frames")
