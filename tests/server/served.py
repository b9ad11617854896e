"""``slurmgate serve`` as a real subprocess driven from an async test: its stderr read as it comes,
waits for a log line, signals by its PID."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

__all__ = ["SLURMGATE", "Served", "served"]

SLURMGATE = str(Path(sys.executable).parent / "slurmgate")


class Served:
    """A running ``slurmgate serve`` on ``port``."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        #: stderr, line by line, as read so far
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_line(self, pattern: str, *, after: int = 0, within: float = 30) -> str:
        """The first stderr line from index ``after`` on that matches ``pattern`` (a regex)."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.lines[after:] if re.search(pattern, line)]
            return bool(found) or self._reader.done()

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(seen), within)
        assert found, f"no line matching {pattern!r}; stderr:\n" + "\n".join(self.lines)
        return found[0]

    async def wait_ready(self, within: float = 60) -> None:
        """Until ``GET /meta/versions`` answers 200 (fails at once if the process exits)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.process.returncode is None, "\n".join(self.lines)
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/meta/versions") as response:
                        if response.status == 200:
                            return
                assert loop.time() < deadline, "not ready:\n" + "\n".join(self.lines)
                await asyncio.sleep(0.05)

    def signal(self, number: signal.Signals) -> None:
        """Send ``number`` to our own process, by its PID."""
        self.process.send_signal(number)

    async def exit_status(self, within: float = 60) -> int:
        """Wait for the process to end; its exit status."""
        status = await asyncio.wait_for(self.process.wait(), within)
        await self._reader
        return status


@asynccontextmanager
async def served(config: Path, port: int) -> AsyncIterator[Served]:
    """Start ``slurmgate serve --config config`` (listening on ``port``); killed if still there."""
    process = await asyncio.create_subprocess_exec(
        SLURMGATE,
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    gateway = Served(process, port)
    try:
        yield gateway
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        gateway._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gateway._reader
