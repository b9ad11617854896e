"""The http and unix transports: errors, timeouts, kept-alive connections, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import SupportsIndex

import pytest

from slurmgate.server.config import UpstreamSettings
from slurmgate.server.errors import UpstreamTimeout, UpstreamUnavailable
from slurmgate.server.upstream import http_client
from slurmgate.server.upstream.factory import make_transport
from slurmgate.server.upstream.http_client import HttpTransport
from slurmgate.server.upstream.transport import UpstreamRequest
from tests.server.upstream.fakes import raw_upstream, split_request

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
SECRET = "secret-token-value"  # noqa: S105 (a test value that must not reach the log)
PING = UpstreamRequest("GET", "/slurm/v0.0.45/ping/", (("X-SLURM-USER-TOKEN", SECRET),))


def http(url: str, **limits: float) -> HttpTransport:
    settings = UpstreamSettings.model_validate({"transport": "http", "url": url, **limits})
    transport = make_transport(settings)
    assert isinstance(transport, HttpTransport)
    return transport


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose accept queue is full: connects hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port
        for filler in fillers:
            filler.close()


async def test_refused_connection_is_502_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    transport = http(f"http://127.0.0.1:{unused_port()}")
    try:
        with pytest.raises(UpstreamUnavailable, match="cannot connect"):
            await transport.send(PING)
    finally:
        await transport.close()
    [record] = [r for r in caplog.records if r.name == "slurmgate.upstream"]
    assert record.levelno == logging.WARNING
    assert "/slurm/v0.0.45/ping/" in record.getMessage()
    assert SECRET not in caplog.text


async def test_missing_unix_socket_is_502(workdir: Path) -> None:
    transport = make_transport(
        UpstreamSettings(transport="unix", socket=workdir / "nobody-listens.sock")
    )
    try:
        with pytest.raises(UpstreamUnavailable):
            await transport.send(PING)
    finally:
        await transport.close()


async def test_unix_socket_without_listener_is_502(workdir: Path) -> None:
    path = workdir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # the file exists; nothing listens on it
    transport = make_transport(UpstreamSettings(transport="unix", socket=path))
    try:
        with pytest.raises(UpstreamUnavailable, match="cannot connect"):
            await transport.send(PING)
    finally:
        await transport.close()


async def test_connect_timeout_is_502(full_backlog: int) -> None:
    transport = http(f"http://127.0.0.1:{full_backlog}", connect_timeout=0.3, timeout=30)
    try:
        async with asyncio.timeout(10):
            with pytest.raises(UpstreamUnavailable, match="did not accept a connection in time"):
                await transport.send(PING)
    finally:
        await transport.close()


@pytest.mark.parametrize("unix", [False, True])
async def test_accepted_but_never_answered_is_504(
    unix: bool, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = workdir / "hang.sock" if unix else None
    async with raw_upstream(unix=path, mode="hang") as fake:
        if path:
            transport = make_transport(UpstreamSettings(transport="unix", socket=path, timeout=0.3))
        else:
            transport = http(fake.url, timeout=0.3)
        try:
            async with asyncio.timeout(10):
                with pytest.raises(UpstreamTimeout, match=r"within 0.3 s"):
                    await transport.send(PING)
        finally:
            await transport.close()
        assert fake.received.is_set()
    assert "no answer within 0.3 s" in caplog.text
    assert SECRET not in caplog.text


async def test_connection_closed_without_answer_is_502() -> None:
    async with raw_upstream(mode="close") as fake:
        transport = http(fake.url)
        try:
            with pytest.raises(UpstreamUnavailable, match="closed the connection"):
                await transport.send(PING)
        finally:
            await transport.close()


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nX\r\n\r\n"],
)
async def test_answer_that_is_not_http_is_502(garbage: bytes) -> None:
    async with raw_upstream(answer=garbage) as fake:
        transport = http(fake.url)
        try:
            with pytest.raises(UpstreamUnavailable):
                await transport.send(PING)
        finally:
            await transport.close()


async def test_connections_are_pooled_and_cookies_never_sent() -> None:
    answer = b"HTTP/1.1 200 OK\r\nSet-Cookie: s=1; Path=/\r\nContent-Length: 0\r\n\r\n"
    async with raw_upstream(answer=answer) as fake:
        transport = http(fake.url)
        try:
            for _ in range(3):
                await transport.send(PING)
        finally:
            await transport.close()
    assert fake.connections == 1
    assert len(fake.requests) == 3
    assert all(b"cookie" not in raw.lower().split(b"\r\n\r\n")[0] for raw in fake.requests[1:])


async def test_redirects_are_returned_not_followed() -> None:
    answer = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    async with raw_upstream(answer=answer) as fake:
        transport = http(fake.url)
        try:
            response = await transport.send(PING)
        finally:
            await transport.close()
    assert response.status == 302
    assert response.header("location") == "/elsewhere"
    assert len(fake.requests) == 1


async def test_base_url_with_a_path_prefix() -> None:
    async with raw_upstream(answer=OK) as fake:
        transport = http(fake.url + "/prefix/")
        try:
            await transport.send(PING)
        finally:
            await transport.close()
    line, _, _ = split_request(fake.requests[0])
    assert line == b"GET /prefix/slurm/v0.0.45/ping/ HTTP/1.1"


async def test_slurm_26_05_second_answer_is_ignored_and_the_connection_closed() -> None:
    # slurmrestd 26.05.5 follows each error answer with a second response on the connection.
    first = b"HTTP/1.1 404 NOT FOUND\r\nConnection: Close\r\nContent-Length: 2\r\n\r\n{}"
    second = b"HTTP/1.1 404 NOT FOUND\r\nConnection: Close\r\nContent-Length: 3\r\n\r\nbad"
    async with raw_upstream(answer=first + second) as fake:
        transport = http(fake.url)
        try:
            answers = [await transport.send(PING) for _ in range(2)]
        finally:
            await transport.close()
    assert [(a.status, a.body) for a in answers] == [(404, b"{}"), (404, b"{}")]
    assert fake.connections == 2  # "Connection: Close" is honoured, the rest never read


def as_user(user: str) -> UpstreamRequest:
    """A ping acting for ``user``, as the gateway sends it."""
    return UpstreamRequest(
        "GET",
        "/slurm/v0.0.45/ping/",
        (("X-SLURM-USER-TOKEN", SECRET), ("X-SLURM-USER-NAME", user)),
    )


FOR_ALICE = b'HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{"for": "alice"}\n'
FOR_BOB = b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"for": "bob"}\n'
# A second response after a kept-alive one: the next request on the connection must not get it.
STRAY = b'HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n{"stray": "alice\'s data"}\n'


@pytest.mark.parametrize("unix", [False, True])
async def test_bytes_after_a_kept_alive_answer_never_reach_another_caller(
    unix: bool, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def respond(request: bytes) -> bytes:
        return FOR_ALICE + STRAY if b"\r\nX-SLURM-USER-NAME: alice\r\n" in request else FOR_BOB

    path = workdir / "restd.sock" if unix else None
    async with raw_upstream(unix=path, respond=respond) as fake:
        if path:
            transport = make_transport(UpstreamSettings(transport="unix", socket=path))
        else:
            transport = http(fake.url)
        try:
            answers = [await transport.send(as_user(user)) for user in ("alice", "bob", "bob")]
        finally:
            await transport.close()
    assert [a.body for a in answers] == [b'{"for": "alice"}\n', *[b'{"for": "bob"}\n'] * 2]
    assert fake.connections == 2  # alice's connection closed; bob's kept
    assert "bytes after the answer" in caplog.text
    assert SECRET not in caplog.text


class WatchedReader(asyncio.StreamReader):
    """A StreamReader that sets ``fed`` whenever bytes arrive."""

    def __init__(self) -> None:
        super().__init__(limit=1 << 17)
        self.fed = asyncio.Event()

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        super().feed_data(data)
        self.fed.set()


async def test_bytes_arriving_on_an_idle_connection_close_it() -> None:
    answered = asyncio.Event()
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                writer.write(FOR_ALICE if b"alice" in head else FOR_BOB)
                await writer.drain()
                if b"alice" in head:
                    await answered.wait()  # the stray bytes come once the connection is idle
                    writer.write(STRAY)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    readers: list[WatchedReader] = []

    async def opener() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        reader = WatchedReader()
        readers.append(reader)
        protocol = asyncio.StreamReaderProtocol(reader)
        sock, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
        return reader, asyncio.StreamWriter(sock, protocol, reader, loop)

    transport = HttpTransport(
        opener=opener,
        host=f"127.0.0.1:{port}",
        prefix="",
        name="test",
        timeout=10,
        connect_timeout=5,
        max_connections=4,
        max_response_bytes=1 << 20,
    )
    try:
        alice = await transport.send(as_user("alice"))
        readers[0].fed.clear()
        answered.set()
        async with asyncio.timeout(10):
            await readers[0].fed.wait()  # the stray answer reached the idle connection
        bob = await transport.send(as_user("bob"))
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()
    assert (alice.body, bob.body) == (b'{"for": "alice"}\n', b'{"for": "bob"}\n')
    assert connections == len(readers) == 2


async def test_no_connection_is_kept_after_an_error_answer() -> None:
    # No Connection: close and nothing after it, yet 26.05 may still send a second response.
    answer = b"HTTP/1.1 404 NOT FOUND\r\nContent-Length: 2\r\n\r\n{}"
    async with raw_upstream(answer=answer) as fake:
        transport = http(fake.url)
        try:
            for _ in range(2):
                await transport.send(PING)
        finally:
            await transport.close()
    assert fake.connections == 2


def test_unread_sees_bytes_in_a_stream_reader() -> None:
    reader = asyncio.StreamReader()
    assert not http_client._unread(reader)
    reader.feed_data(b"HTTP/1.1")
    assert http_client._unread(reader)


async def test_stale_kept_alive_connection_is_retried_for_idempotent_methods() -> None:
    async with raw_upstream(answer=OK, mode="once") as fake:
        transport = http(fake.url)
        try:
            await transport.send(PING)
            answer = await transport.send(PING)  # the kept connection dies under it
        finally:
            await transport.close()
    assert answer.body == b"{}"
    assert fake.connections == 2
    assert len(fake.requests) == 3  # sent on the stale connection, then on a new one


async def test_stale_kept_alive_connection_is_not_retried_for_post() -> None:
    post = UpstreamRequest("POST", "/slurm/v0.0.45/job/submit", (), b"{}")
    async with raw_upstream(answer=OK, mode="once") as fake:
        transport = http(fake.url)
        try:
            await transport.send(post)
            with pytest.raises(UpstreamUnavailable, match="not repeated"):
                await transport.send(post)
        finally:
            await transport.close()
    assert len(fake.requests) == 2  # a job is never submitted twice


async def test_idle_connections_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_client, "KEEPALIVE", 0.0)
    async with raw_upstream(answer=OK) as fake:
        transport = http(fake.url)
        try:
            for _ in range(2):
                await transport.send(PING)
        finally:
            await transport.close()
    assert fake.connections == 2


async def test_at_most_max_connections_at_once() -> None:
    async with raw_upstream(mode="hang") as fake:
        transport = http(fake.url, max_connections=2, timeout=60)
        try:
            sending = [asyncio.create_task(transport.send(PING)) for _ in range(3)]
            while len(fake.requests) < 2:
                fake.received.clear()
                await fake.received.wait()
            # An absence has no event to wait for: the third gets half a second to (wrongly) go.
            fake.received.clear()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await fake.received.wait()
            assert fake.connections == 2
        finally:
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
            await transport.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate (and key, in the same file) for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pem = tmp_path_factory.mktemp("tls") / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(pem),
            "-out",
            str(pem),
        ],
        check=True,
        capture_output=True,
    )
    return pem


async def test_https(certificate: Path) -> None:
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(certificate)
    async with raw_upstream(answer=OK, tls=server_side) as fake:
        trusting = ssl.create_default_context(cafile=str(certificate))
        transport = HttpTransport.tcp(
            fake.url,
            timeout=10,
            connect_timeout=5,
            max_connections=4,
            max_response_bytes=1 << 20,
            ssl_context=trusting,
        )
        try:
            answer = await transport.send(PING)
        finally:
            await transport.close()
        untrusting = make_transport(UpstreamSettings(transport="http", url=fake.url))
        try:
            with pytest.raises(UpstreamUnavailable, match="cannot connect"):
                await untrusting.send(PING)
        finally:
            await untrusting.close()
    assert answer.body == b"{}"
    line, _, _ = split_request(fake.requests[0])
    assert line == b"GET /slurm/v0.0.45/ping/ HTTP/1.1"
