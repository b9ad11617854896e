"""Tiny fake slurmrestds for the transport tests: raw bytes in, canned bytes out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from slurmgate.server.config import UpstreamSettings
from slurmgate.server.upstream.factory import make_transport
from slurmgate.server.upstream.transport import Transport

__all__ = [
    "FAKE_INETD",
    "KINDS",
    "Kind",
    "RawUpstream",
    "Served",
    "exited",
    "next_pids",
    "pid_reports",
    "raw_upstream",
    "reaped",
    "serving",
    "split_request",
]

#: The fake inetd-mode slurmrestd (stdlib only: it runs with a clean environment).
FAKE_INETD = (sys.executable, str(Path(__file__).with_name("fake_inetd.py")))

Mode = Literal["answer", "hang", "close", "once"]


@dataclass
class RawUpstream:
    """A fake upstream on TCP or a unix socket; keeps connections alive like slurmrestd.

    ``mode``: "answer" writes ``answer`` to every request; "hang" reads the request and never
    answers; "close" reads it and closes the connection; "once" answers the first request of each
    connection and closes it at the second, unanswered (a kept-alive connection gone stale).
    ``respond``, when set, gives the answer to each raw request instead of ``answer``.
    """

    answer: bytes = b"HTTP/1.1 204 No Content\r\n\r\n"
    respond: Callable[[bytes], bytes] | None = None
    mode: Mode = "answer"
    #: every request received, as raw bytes (head and body)
    requests: list[bytes] = field(default_factory=list)
    #: set whenever a request has been received
    received: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    socket: Path | None = None
    #: connections accepted so far
    connections: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until the client closes it."""
        self.connections += 1
        self._writers.add(writer)
        served = False
        try:
            while request := await _read_request(reader):
                self.requests.append(request)
                self.received.set()
                if self.mode == "hang":
                    await self._release.wait()
                    return
                if self.mode == "close" or (self.mode == "once" and served):
                    return
                served = True
                writer.write(self.answer if self.respond is None else self.respond(request))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def shut(self) -> None:
        """Release hanging handlers and close every connection."""
        self._release.set()
        for writer in list(self._writers):
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise
        return b""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def split_request(raw: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(request line, header lines in order, body) of a raw request."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *fields = head.split(b"\r\n")
    return line, fields, body


@contextlib.asynccontextmanager
async def raw_upstream(
    *,
    unix: Path | None = None,
    answer: bytes | None = None,
    respond: Callable[[bytes], bytes] | None = None,
    mode: Mode = "answer",
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[RawUpstream]:
    """A :class:`RawUpstream` on 127.0.0.1 (or the unix socket ``unix``) for the block's length."""
    fake = RawUpstream(mode=mode, respond=respond)
    if answer is not None:
        fake.answer = answer
    if unix is not None:
        server = await asyncio.start_unix_server(fake.handle, path=str(unix))
        fake.socket = unix
    else:
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0, ssl=tls)
        scheme = "https" if tls else "http"
        fake.url = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        server.close()
        await fake.shut()
        await server.wait_closed()


Kind = Literal["http", "unix", "inetd"]
KINDS: tuple[Kind, ...] = ("http", "unix", "inetd")


@dataclass
class Served:
    """A transport of one kind in front of a fake upstream, and what that upstream received."""

    transport: Transport
    fake: RawUpstream | None
    workdir: Path

    def requests(self) -> list[bytes]:
        """The raw requests the fake received, oldest first."""
        if self.fake is not None:
            return self.fake.requests
        recorded = self.workdir / "request.bin"
        return [recorded.read_bytes()] if recorded.exists() else []


@contextlib.asynccontextmanager
async def serving(
    kind: Kind,
    workdir: Path,
    *,
    answer: bytes,
    mode: Mode = "answer",
    inetd_mode: str = "answer",
    upstream_timeout: float = 10.0,
    max_response_bytes: int = 1 << 20,
) -> AsyncIterator[Served]:
    """A ``kind`` transport whose upstream answers ``answer`` (for inetd: the fake script)."""
    limits = {
        "timeout": upstream_timeout,
        "connect_timeout": 5.0,
        "max_response_bytes": max_response_bytes,
    }
    if kind == "inetd":
        (workdir / "answer.bin").write_bytes(answer)
        command = [*FAKE_INETD, inetd_mode, str(workdir)]
        settings = UpstreamSettings.model_validate(
            {"transport": "inetd", "command": command, **limits}
        )
        transport = make_transport(settings)
        try:
            yield Served(transport, None, workdir)
        finally:
            await transport.close()
        return
    unix = workdir / "restd.sock" if kind == "unix" else None
    async with raw_upstream(unix=unix, answer=answer, mode=mode) as fake:
        where = {"socket": unix} if unix else {"url": fake.url}
        settings = UpstreamSettings.model_validate({"transport": kind, **where, **limits})
        transport = make_transport(settings)
        try:
            yield Served(transport, fake, workdir)
        finally:
            await transport.close()


@contextlib.asynccontextmanager
async def pid_reports(workdir: Path) -> AsyncIterator[asyncio.StreamReader]:
    """Lines "PID CHILD_PID" that hanging fakes write to the FIFO ``workdir/pids``, as they come."""
    fifo = workdir / "pids"
    os.mkfifo(fifo)
    # Opened read-write: neither this open nor the fakes' opens block, and no EOF between fakes.
    pipe = os.fdopen(os.open(fifo, os.O_RDWR | os.O_NONBLOCK), "rb", buffering=0)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        yield reader
    finally:
        transport.close()


async def next_pids(reports: asyncio.StreamReader) -> tuple[int, int]:
    async with asyncio.timeout(10):
        leader, child = (await reports.readline()).split()
    return int(leader), int(child)


async def exited(pid: int) -> None:
    """Return once ``pid`` has exited (a zombie counts), failing after 10 s."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, done.set)
    try:
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
