"""The http and unix transports: HTTP/1.1 to slurmrestd over a pool of kept-alive connections.

Not aiohttp's client: Slurm 26.05's slurmrestd follows every error answer with a second response
on the same connection, which aiohttp rejects as a whole (see :mod:`.response`). This client reads
exactly one response per request with the parser the inetd transport uses, sends exactly the
headers it is given plus ``Host`` and ``Content-Length``, and by construction keeps no cookies,
follows no redirects, reads no proxy settings and decompresses nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from slurmgate.server.errors import UpstreamTimeout, UpstreamUnavailable
from slurmgate.server.upstream.response import (
    MAX_HEAD_BYTES,
    NoAnswer,
    ProtocolError,
    TooLarge,
    read_response,
)
from slurmgate.server.upstream.transport import UpstreamRequest, UpstreamResponse
from slurmgate.server.upstream.wire import IDEMPOTENT_METHODS, check_request, request_bytes

__all__ = ["KEEPALIVE", "HttpTransport"]

log = logging.getLogger("slurmgate.upstream")

#: Seconds an idle connection is kept for reuse (slurmrestd itself keeps idle ones for minutes).
KEEPALIVE = 15.0

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Opener = Callable[[], Awaitable[Streams]]


class _Failed(Exception):
    """The exchange failed: ``description`` is for the client, ``detail`` for the log."""

    def __init__(self, description: str, detail: str) -> None:
        super().__init__(description)
        self.description = description
        self.detail = detail


class _Stale(Exception):
    """The connection was closed before any answer came: a kept-alive one may have expired."""


class HttpTransport:
    """HTTP/1.1 to slurmrestd over TCP (optionally TLS) or a unix socket.

    At most ``max_connections`` requests are under way at once; more wait, within ``timeout``.
    Idle connections are reused (newest first) for :data:`KEEPALIVE` seconds; when a reused one
    turns out closed, an idempotent request is sent once more on a new connection.
    """

    def __init__(
        self,
        *,
        opener: Opener,
        host: str,
        prefix: str,
        name: str,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        max_response_bytes: int,
    ) -> None:
        self._opener = opener
        self._host = host
        self._prefix = prefix
        self._name = name
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_response_bytes = max_response_bytes
        self._slots = asyncio.Semaphore(max_connections)
        #: idle connections and since when (loop time), oldest first; only the code holding a
        #: slot takes from or adds to it, close() empties it
        self._idle: deque[tuple[Streams, float]] = deque()
        self._closed = False

    @classmethod
    def tcp(
        cls,
        url: str,
        *,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        max_response_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> HttpTransport:
        """slurmrestd at ``url`` (http:// or https://; a path in it prefixes every target)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        tls = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None

        async def opener() -> Streams:
            return await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls else None, limit=_LIMIT
            )

        authority = parts.netloc.rpartition("@")[2]  # never send user:password along
        return cls(
            opener=opener,
            host=authority,
            prefix=parts.path.rstrip("/"),
            name=f"{parts.scheme}://{authority}",
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
        )

    @classmethod
    def unix(
        cls,
        socket: Path,
        *,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        max_response_bytes: int,
    ) -> HttpTransport:
        """slurmrestd on the unix socket ``socket``; requests carry ``Host: localhost``."""

        async def opener() -> Streams:
            return await asyncio.open_unix_connection(str(socket), limit=_LIMIT)

        return cls(
            opener=opener,
            host="localhost",
            prefix="",
            name=f"unix:{socket}",
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
        )

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request`` and return the whole answer (see :class:`Transport`)."""
        if self._closed:
            raise UpstreamUnavailable("the gateway is shutting down")
        check_request(request)
        if self._prefix:
            request = dataclasses.replace(request, target=self._prefix + request.target)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._slots:
                    return await self._exchange(request)
        except TimeoutError:
            self._log_failure(request, f"no answer within {self._timeout:g} s")
            raise UpstreamTimeout(f"slurmrestd did not answer within {self._timeout:g} s") from None
        except _Failed as failure:
            self._log_failure(request, failure.detail)
            raise UpstreamUnavailable(failure.description) from None

    async def _exchange(self, request: UpstreamRequest) -> UpstreamResponse:
        wire = request_bytes(request, host=self._host, close=False)
        reused = self._reuse()
        if reused is not None:
            try:
                return await self._round_trip(reused, wire, request.method)
            except _Stale as stale:
                if request.method not in IDEMPOTENT_METHODS:
                    raise _Failed(
                        "slurmrestd closed a kept-alive connection; the request was not repeated",
                        f"reused connection closed ({stale}); {request.method} not repeated",
                    ) from None
                log.debug("kept-alive connection to %s closed (%s); new one", self._name, stale)
        streams = await self._open()
        try:
            return await self._round_trip(streams, wire, request.method)
        except _Stale as stale:
            raise _Failed(
                "slurmrestd closed the connection without an answer", str(stale)
            ) from None

    async def _round_trip(self, streams: Streams, wire: bytes, method: str) -> UpstreamResponse:
        reader, writer = streams
        keep = False
        try:
            writer.write(wire)
            await writer.drain()
            received = await read_response(
                reader, head_request=method == "HEAD", max_bytes=self._max_response_bytes
            )
        except (NoAnswer, ConnectionResetError, BrokenPipeError) as error:
            raise _Stale(f"{type(error).__name__}: {error}") from None
        except TooLarge as error:
            raise _Failed(str(error), str(error)) from None
        except ProtocolError as error:
            raise _Failed("slurmrestd's answer is not well-formed HTTP", str(error)) from None
        except OSError as error:
            raise _Failed(
                "the connection to slurmrestd failed", f"{type(error).__name__}: {error}"
            ) from None
        else:
            # Bytes already received after the answer belong to no request of ours (a second
            # response, say): the next request on this connection would read them as its answer.
            keep = received.keep_alive and not _unread(reader)
            if received.keep_alive and not keep:
                log.warning(
                    "bytes after the answer from %s; connection closed, not reused", self._name
                )
            return received.response
        finally:
            # Anything short of a complete answer (an error, a timeout, a caller giving up)
            # leaves the connection in an unknown state: it is closed, never reused.
            if keep and not self._closed:
                self._idle.append((streams, asyncio.get_running_loop().time()))
            else:
                writer.close()

    def _reuse(self) -> Streams | None:
        """The newest idle connection open, not expired, silent since its answer; or None.

        Connections passed over on the way are closed.
        """
        now = asyncio.get_running_loop().time()
        while self._idle and now - self._idle[0][1] >= KEEPALIVE:
            self._idle.popleft()[0][1].close()
        while self._idle:
            (reader, writer), _ = self._idle.pop()
            if _unread(reader):
                log.warning("bytes from %s on an idle connection; closed, not reused", self._name)
            elif not (reader.at_eof() or reader.exception() or writer.is_closing()):
                return reader, writer
            writer.close()
        return None

    async def _open(self) -> Streams:
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await self._opener()
        except TimeoutError:
            raise _Failed(
                "slurmrestd did not accept a connection in time",
                f"connect timeout ({self._connect_timeout:g} s)",
            ) from None
        except OSError as error:
            raise _Failed(
                "cannot connect to slurmrestd", f"cannot connect: {type(error).__name__}: {error}"
            ) from None

    def _log_failure(self, request: UpstreamRequest, what: str) -> None:
        # Never the headers: they carry X-SLURM-USER-TOKEN.
        log.warning("%s %s via %s: %s", request.method, request.target, self._name, what)

    async def close(self) -> None:
        """Close idle connections; those in use are closed when their request ends."""
        self._closed = True
        while self._idle:
            self._idle.pop()[0][1].close()


# A stream's buffer limit bounds readuntil(): the header section must fit.
_LIMIT = MAX_HEAD_BYTES + 4


def _unread(reader: asyncio.StreamReader) -> bool:
    """Whether ``reader`` holds bytes received and not read yet (True when that cannot be told)."""
    # StreamReader has no public way to ask; CPython keeps those bytes in the private bytearray
    # ``_buffer``. Should that ever change, every connection counts as holding some: none is
    # reused, so none can hand one caller's bytes to another.
    buffer = getattr(reader, "_buffer", None)
    return not isinstance(buffer, bytearray) or len(buffer) > 0
