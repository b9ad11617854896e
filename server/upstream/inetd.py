"""The inetd transport: one slurmrestd process per request, HTTP/1.1 on its stdin and stdout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from slurmgate.server.errors import UpstreamTimeout, UpstreamUnavailable
from slurmgate.server.upstream.process import GRACE, kill_group, read_bounded, reap, spawn
from slurmgate.server.upstream.response import (
    ProtocolError,
    Received,
    TooLarge,
    read_response,
)
from slurmgate.server.upstream.transport import UpstreamRequest, UpstreamResponse
from slurmgate.server.upstream.wire import check_request, request_bytes

__all__ = ["STDERR_BYTES", "InetdTransport"]

log = logging.getLogger("slurmgate.upstream")

#: How much of a process's stderr is kept for the log; the rest is read and dropped.
STDERR_BYTES = 16 * 1024
_READ_CHUNK = 64 * 1024


class _Failed(Exception):
    """The exchange failed: ``description`` is for the client, ``detail`` for the log."""

    def __init__(self, description: str, detail: str) -> None:
        super().__init__(description)
        self.description = description
        self.detail = detail


class InetdTransport:
    """Runs ``command`` (slurmrestd without a listen address) once per request.

    The request goes to its stdin with ``Connection: close``; its stdout is read for one answer.
    At most ``max_processes`` run at once; waiting for a slot counts against ``timeout``. Every
    process runs with a clean environment in its own session and process group, which is killed
    (SIGKILL) when the answer does not come in time, is too large, or the caller gives up; the
    process is always reaped.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        timeout: float,
        connect_timeout: float,
        max_processes: int,
        max_response_bytes: int,
    ) -> None:
        self._command = tuple(command)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_response_bytes = max_response_bytes
        self._slots = asyncio.Semaphore(max_processes)
        #: processes started and not yet reaped; each send() adds and removes its own
        self._running: set[asyncio.subprocess.Process] = set()
        self._closed = False

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request`` and return the whole answer (see :class:`Transport`)."""
        if self._closed:
            raise UpstreamUnavailable("the gateway is shutting down")
        check_request(request)
        wire = request_bytes(request, host="localhost", close=True)
        stderr = bytearray()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._slots:
                    received, returncode, trailing = await self._exchange(
                        wire, request.method == "HEAD", stderr
                    )
        except TimeoutError:
            self._log_failure(request, f"no answer within {self._timeout:g} s, killed", stderr)
            raise UpstreamTimeout(f"slurmrestd did not answer within {self._timeout:g} s") from None
        except _Failed as failure:
            self._log_failure(request, failure.detail, stderr)
            raise UpstreamUnavailable(failure.description) from None
        if returncode != 0:
            status = received.response.status
            ended = f"exited {returncode}" if returncode is not None else "was killed"
            self._log_failure(request, f"answered {status} but {ended}", stderr)
        if trailing:
            log.debug("ignored %d bytes after slurmrestd's answer", trailing)
        return received.response

    async def _exchange(
        self, wire: bytes, head_request: bool, stderr: bytearray
    ) -> tuple[Received, int | None, int]:
        """Run the command and feed it ``wire``: (answer, exit status, bytes after the answer).

        The exit status is None when the process did not exit within :data:`GRACE` of answering.
        """
        process = await self._start()
        self._running.add(process)
        assert process.stdout is not None
        assert process.stderr is not None
        feeding = asyncio.create_task(_feed(process, wire))
        errors = asyncio.create_task(read_bounded(process.stderr, stderr, STDERR_BYTES))
        ended = False
        try:
            try:
                received = await read_response(
                    process.stdout, head_request=head_request, max_bytes=self._max_response_bytes
                )
            except TooLarge as error:
                raise _Failed(str(error), str(error)) from None
            except ProtocolError as error:
                returncode, _ = await _finish(process, errors, self._max_response_bytes)
                ended = returncode is not None
                raise _Failed(
                    "slurmrestd's answer is not well-formed HTTP",
                    f"exit {returncode}, not HTTP: {error}",
                ) from None
            returncode, trailing = await _finish(process, errors, self._max_response_bytes)
            ended = returncode is not None
            return received, returncode, trailing
        finally:
            feeding.cancel()
            if not ended:
                # Shielded: a caller cancelled again meanwhile must not leave a zombie behind.
                await asyncio.shield(reap(process, drain=[process.stdout], readers=[errors]))
            errors.cancel()
            self._running.discard(process)

    async def _start(self) -> asyncio.subprocess.Process:
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await spawn(self._command, stdin=asyncio.subprocess.PIPE)
        except TimeoutError:
            raise _Failed(
                "slurmrestd did not start in time",
                f"not started within {self._connect_timeout:g} s",
            ) from None
        except OSError as error:
            raise _Failed(
                f"cannot start slurmrestd: {error.strerror}",
                f"cannot start: {type(error).__name__}: {error}",
            ) from None

    def _log_failure(self, request: UpstreamRequest, what: str, stderr: bytearray) -> None:
        # Never the headers: they carry X-SLURM-USER-TOKEN.
        text = stderr.decode("utf-8", "replace").strip()
        log.warning(
            "%s %s via inetd %s: %s%s",
            request.method,
            request.target,
            self._command[0],
            what,
            f"; stderr: {text}" if text else "",
        )

    async def close(self) -> None:
        """Kill the processes still running (their send() reaps them and fails); start no more."""
        self._closed = True
        for process in list(self._running):
            kill_group(process)


async def _feed(process: asyncio.subprocess.Process, wire: bytes) -> None:
    """Write the request and close stdin; a process that stops reading early is not an error."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(wire)
        await process.stdin.drain()
    process.stdin.close()


async def _finish(
    process: asyncio.subprocess.Process, errors: asyncio.Task[bool], limit: int
) -> tuple[int | None, int]:
    """Let the process end within :data:`GRACE`: (exit status or None, bytes after the answer).

    What follows the answer on stdout is read and dropped, up to ``limit`` bytes.
    """
    assert process.stdout is not None
    trailing = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(GRACE):
            while trailing <= limit and (chunk := await process.stdout.read(_READ_CHUNK)):
                trailing += len(chunk)
            returncode = await process.wait()
            await asyncio.wait([errors])  # not `await errors`: a timeout must not cancel it
            return returncode, trailing
    return None, trailing
