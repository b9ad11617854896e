"""What the fault tests share: a ``slurmgate serve`` process of the test's own, a bounded load of
concurrent clients that records every answer with the phase of the fault it was sent in, the
check that an answer is well formed, and an upstream that can be told to hang.

"Well formed" is what a client of slurmrestd can rely on during a fault: a 200 with a JSON body
(fresh, or ``X-Cache: STALE`` when the request allowed stale-if-error), or a 5xx (502, 503, 504,
or slurmrestd's own 500) whose JSON body is slurmrestd's envelope with ``errors[]`` saying what
failed. A 500 the gateway makes itself ("Internal gateway error") is a bug, never well formed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from tests.lab.private_restd import free_port
from tests.processes import stop_process, wait_ready

__all__ = [
    "GatewayProcess",
    "HangingProxy",
    "Load",
    "Reply",
    "Request",
    "hanging_proxy",
    "malformed",
    "render_config",
    "summary",
]

SLURMGATE = str(Path(sys.executable).parent / "slurmgate")
#: Status of a 500 the gateway makes for an unhandled error (server/errors.py): always a bug.
GATEWAY_BUG = "Internal gateway error"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string for what we write
    raise TypeError(f"no TOML for {value!r}")


def render_config(sections: dict[str, dict[str, object]], *, log_level: str = "info") -> str:
    """A slurmgate.toml from ``{section: {key: value}}`` (dotted section names allowed)."""
    lines = [f"log_level = {_toml(log_level)}"]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class GatewayProcess:
    """``slurmgate serve`` on a free loopback port, its stderr in ``log``, stopped by its PID."""

    def __init__(self, workdir: Path, sections: dict[str, dict[str, object]]) -> None:
        self.port = free_port()
        self.log = workdir / "slurmgate.log"
        config = workdir / "slurmgate.toml"
        listen = {"host": "127.0.0.1", "port": self.port}
        config.write_text(render_config({"listen": listen, **sections}))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [SLURMGATE, "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_ready(
                self.process,
                self._answers,
                what="slurmgate serve",
                timeout=60,
                log=lambda: self.log.read_text(errors="replace")[-3000:],
            )
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Its PID."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/meta/versions", timeout=5) as response:  # noqa: S310
                return int(response.status) == 200
        except OSError:
            return False

    def rss_kib(self) -> int:
        """Its resident set now (``VmRSS``), KiB; 0 once it has exited."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def crashes(self) -> list[str]:
        """Unhandled errors in its log: each traceback (with the line before it, up to 40 lines),
        and the access logger's JSON records of one (``exception``)."""
        found = []
        lines = self.log.read_text(errors="replace").splitlines()
        for index, line in enumerate(lines):
            if "Traceback (most recent call last)" in line:
                found.append("\n".join(lines[max(0, index - 1) : index + 40]))
            elif line.startswith("{") and '"exception"' in line:
                found.append(line[:3000])
        return found

    def stop(self) -> None:
        """SIGTERM to its PID (SIGKILL if it lingers); wait."""
        if self.process.poll() is None:
            stop_process(self.process)

    def interrupt(self) -> None:
        """SIGINT, for a graceful stop that lets it finish its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)


@dataclass(frozen=True)
class Request:
    """One kind of request of a load: what to send, and whether stale-if-error is allowed."""

    path: str
    headers: tuple[tuple[str, str], ...] = ()
    #: a cached read that asks for stale-if-error: may be answered STALE during a fault
    stale_ok: bool = False


@dataclass(frozen=True)
class Reply:
    """One answer, read to the end, with the fault's phase when its request was sent."""

    phase: str
    request: Request
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    #: the client's own failure (connection refused, reset, timeout) instead of an answer
    failure: str | None = None

    @property
    def cache(self) -> str:
        """The X-Cache header ("" when absent)."""
        return self.headers.get("X-Cache", "")

    def json(self) -> object:
        """The body as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        """A short line for assertion messages."""
        what = self.failure or f"{self.status} {self.cache} {self.body[:200]!r}"
        return f"[{self.phase}] GET {self.request.path}: {what}"


def malformed(reply: Reply) -> str | None:
    """Why ``reply`` is not a well-formed answer (see the module docstring), or None."""
    if reply.failure is not None:
        return f"no answer: {reply.failure}"
    data = reply.json()
    if not isinstance(data, dict):
        return "the body is not a JSON object"
    if reply.status == 200:
        stale_unasked = reply.cache == "STALE" and not reply.request.stale_ok
        return "STALE without stale-if-error" if stale_unasked else None
    if reply.status not in (500, 502, 503, 504):
        return f"status {reply.status} is neither 200 nor an upstream failure"
    return _bad_errors(data.get("errors"))


def _bad_errors(errors: object) -> str | None:
    if not isinstance(errors, list) or not errors:
        return "an error answer without errors[]"
    for error in errors:
        if not isinstance(error, dict) or not (error.get("description") or error.get("error")):
            return f"an error entry that says nothing: {error!r}"
        if error.get("error") == GATEWAY_BUG:
            return "the gateway's own 500 (an unhandled error)"
    return None


@dataclass
class Load:
    """``workers`` clients sending ``requests`` in turn until :meth:`stop` (or ``max_requests``,
    or ``max_seconds``), each answer recorded with :attr:`phase` at the time it was sent."""

    url: str
    requests: Sequence[Request]
    workers: int = 16
    max_requests: int = 20_000
    max_seconds: float = 120.0
    #: the client's own limit per request: longer than any upstream timeout of the tests
    request_timeout: float = 30.0
    #: seconds each worker waits between its requests: a steady load, not a flood of the lab
    pause: float = 0.0
    phase: str = "before"
    replies: list[Reply] = field(default_factory=list)
    _sent: int = 0
    _stopping: bool = False
    _progress: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        """Let every worker finish its request under way and end."""
        self._stopping = True

    def phase_replies(self, phase: str) -> list[Reply]:
        """Answers to requests sent in ``phase``."""
        return [r for r in self.replies if r.phase == phase]

    def count(self, phase: str | None = None) -> int:
        """Answers recorded (in ``phase``)."""
        return sum(1 for r in self.replies if phase is None or r.phase == phase)

    async def until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait (while the load runs) until ``predicate()`` holds, at most ``within`` s."""
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.5)):
                    await self._progress.wait()
        return True

    async def run(self) -> list[Reply]:
        """Run the workers to the end; every reply (see :attr:`replies`)."""
        connector = TCPConnector(limit=0)
        timeout = ClientTimeout(total=self.request_timeout)
        started = time.monotonic()
        async with ClientSession(connector=connector, timeout=timeout) as session:

            async def worker() -> None:
                while (
                    not self._stopping
                    and self._sent < self.max_requests
                    and time.monotonic() - started < self.max_seconds
                ):
                    request = self.requests[self._sent % len(self.requests)]
                    self._sent += 1
                    self.replies.append(await self._one(session, request))
                    self._progress.set()
                    if self.pause:
                        await asyncio.sleep(self.pause)

            await asyncio.gather(*(worker() for _ in range(self.workers)))
        return self.replies

    async def _one(self, session: ClientSession, request: Request) -> Reply:
        phase = self.phase
        clock = time.monotonic()
        try:
            async with session.get(self.url + request.path, headers=dict(request.headers)) as r:
                body = await r.read()
                return Reply(
                    phase, request, r.status, dict(r.headers), body, time.monotonic() - clock
                )
        except (ClientError, TimeoutError) as error:
            failure = f"{type(error).__name__}: {error}"
            return Reply(phase, request, 0, {}, b"", time.monotonic() - clock, failure)


def summary(replies: Sequence[Reply]) -> str:
    """Counts by phase, status and X-Cache, for messages and reports."""
    counts = Counter((r.phase, r.status, r.cache) for r in replies)
    return ", ".join(f"{p}/{s}/{c or '-'}: {n}" for (p, s, c), n in sorted(counts.items()))


class HangingProxy:
    """A TCP proxy to ``target`` on a free loopback port that can be told to hang: while
    :attr:`hanging`, what clients send is read and dropped and nothing is ever answered (the
    connection stays open); afterwards it forwards again, on new connections and old ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.hanging = False
        #: connections accepted while hanging, never answered
        self.swallowed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: every open stream writer, client side and upstream side, for close()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """Its base URL, for ``upstream.url``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        # Each connection's task ends once its streams are closed; cancelled only if it lingers.
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        try:
            if self.hanging:
                self.swallowed += 1
            while chunk := await reader.read(65536):
                if self.hanging:
                    continue  # read and dropped: the client waits for an answer forever
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.target)
                    self._writers.add(upstream[1])
                    pump = asyncio.create_task(self._pump(upstream[0], writer))
                upstream[1].write(chunk)
                await upstream[1].drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            if upstream is not None:
                upstream[1].close()
                self._writers.discard(upstream[1])
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await source.read(65536):
                if self.hanging:
                    continue  # an answer that comes after the hang began is never delivered
                sink.write(chunk)
                await sink.drain()
        sink.close()


@contextlib.asynccontextmanager
async def hanging_proxy(host: str, port: int) -> AsyncIterator[HangingProxy]:
    """A started :class:`HangingProxy`, closed at the end."""
    proxy = HangingProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
