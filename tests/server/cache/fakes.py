"""Backends that fail on demand, around the real memory backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from slurmgate.server.cache.backends import MemoryBackend
from slurmgate.server.cache.entry import Entry

__all__ = ["FlakyBackend", "until"]


class FlakyBackend(MemoryBackend):
    """A memory backend that raises (``mode = "fail"``) or never answers (``"hang"``) on demand.

    ``shared`` can be set to make it behave like a backend other replicas see (the fill lock).
    It counts as ``remote``: its operations get the store's timeout, as Redis's do.
    """

    remote = True

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        super().__init__(max_bytes)
        self.mode = "ok"
        self.calls = 0
        #: when set, reads wait for it (to hold a read in flight)
        self.hold_reads: asyncio.Event | None = None
        self.reads = 0
        self._locks: dict[str, str] = {}

    async def _gate(self) -> None:
        self.calls += 1
        if self.mode == "fail":
            raise ConnectionError("backend refused the connection")
        if self.mode == "hang":
            await asyncio.Event().wait()

    async def read(self, entry_key: str, generation_key: str) -> tuple[Entry | None, str]:
        await self._gate()
        self.reads += 1
        if self.hold_reads is not None:
            await self.hold_reads.wait()
        return await super().read(entry_key, generation_key)

    async def write(self, entry_key: str, entry: Entry, ttl: int) -> None:
        await self._gate()
        await super().write(entry_key, entry, ttl)

    async def bump(self, generation_keys: Sequence[str]) -> None:
        await self._gate()
        await super().bump(generation_keys)


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition()`` holds (a counter of the code under test)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - polls state the code under test updates
            await asyncio.sleep(0.001)
