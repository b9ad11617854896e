"""What every process the gateway spawns shares: a clean environment, bounded output, group kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from typing import Any

from slurmgate.server.upstream.response import MAX_HEAD_BYTES

__all__ = ["CLEAN_ENV", "GRACE", "kill_group", "read_bounded", "reap", "spawn"]

#: The whole environment of spawned processes: a host SLURM_CONF (or anything else) must not reach
#: slurmrestd or scontrol, which would stall or talk to another cluster.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

#: Seconds a process gets to exit, and its pipes to close, before it is killed (or given up on).
GRACE = 2.0

_READ_CHUNK = 64 * 1024


async def spawn(command: Sequence[str], *, stdin: int) -> asyncio.subprocess.Process:
    """Start ``command`` with :data:`CLEAN_ENV`, stdout and stderr piped, in its own session.

    Its stdout's buffer limit lets :func:`~.response.read_response` read a full header section.

    Its own session makes it the leader of a new process group, so :func:`kill_group` also reaches
    whatever it started.
    """
    return await asyncio.create_subprocess_exec(
        *command,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=CLEAN_ENV,
        start_new_session=True,
        limit=MAX_HEAD_BYTES + 4,
    )


def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group ``process`` leads; call it only while the leader is unreaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def read_bounded(stream: asyncio.StreamReader, kept: bytearray, limit: int) -> bool:
    """Read ``stream`` to EOF, keeping the first ``limit`` bytes in ``kept``; True if it had more.

    The rest is read and dropped, so that the writer never blocks on a full pipe.
    """
    overflow = False
    while chunk := await stream.read(_READ_CHUNK):
        room = limit - len(kept)
        kept += chunk[:room]
        overflow = overflow or len(chunk) > room
    return overflow


async def reap(
    process: asyncio.subprocess.Process,
    *,
    drain: Sequence[asyncio.StreamReader] = (),
    readers: Sequence[asyncio.Task[Any]] = (),
) -> bool:
    """Kill the process group if the process still runs; wait up to :data:`GRACE` for the end.

    The end is the process reaped and its pipes closed: asyncio's ``Process.wait()`` returns only
    once every pipe is closed (Python 3.11), and a pipe nobody reads stays open. ``drain`` are
    read to their end here; ``readers`` are tasks already doing that for the other pipes. False
    when the end did not come in time (a pipe held open elsewhere); the process is reaped anyway,
    by asyncio's child watcher.
    """
    if process.returncode is None:
        kill_group(process)
    try:
        async with asyncio.timeout(GRACE):
            for stream in drain:
                while await stream.read(_READ_CHUNK):
                    pass
            if readers:
                await asyncio.wait(readers)
            await process.wait()
    except TimeoutError:
        return False
    return True
