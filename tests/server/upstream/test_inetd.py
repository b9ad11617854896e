"""The inetd transport: processes bounded in time, size and number, killed and reaped, clean env."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from slurmgate.server.config import UpstreamSettings
from slurmgate.server.errors import UpstreamTimeout, UpstreamUnavailable
from slurmgate.server.upstream.factory import make_transport
from slurmgate.server.upstream.transport import Transport, UpstreamRequest
from tests.server.upstream.fakes import FAKE_INETD, exited, next_pids, pid_reports, reaped, serving

PING = UpstreamRequest("GET", "/slurm/v0.0.45/ping/", (("X-SLURM-USER-TOKEN", "secret-token"),))
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def inetd(mode: str, workdir: Path, **settings: float) -> Transport:
    command = [*FAKE_INETD, mode, str(workdir)]
    return make_transport(
        UpstreamSettings.model_validate({"transport": "inetd", "command": command, **settings})
    )


async def test_timeout_kills_and_reaps_the_process_group(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = inetd("hang", workdir, timeout=1.0)
    try:
        async with pid_reports(workdir) as reports:
            sending = asyncio.create_task(transport.send(PING))
            leader, child = await next_pids(reports)
            assert not reaped(leader)
            with pytest.raises(UpstreamTimeout, match=r"within 1 s"):
                await sending
    finally:
        await transport.close()
    assert reaped(leader), "the inetd process was not reaped"
    await exited(child)  # what it started was killed with it
    assert "no answer within 1 s, killed" in caplog.text
    assert "secret-token" not in caplog.text


async def test_caller_giving_up_kills_the_process(workdir: Path) -> None:
    transport = inetd("hang", workdir, timeout=60)
    try:
        async with pid_reports(workdir) as reports:
            sending = asyncio.create_task(transport.send(PING))
            leader, child = await next_pids(reports)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
    finally:
        await transport.close()
    assert reaped(leader)
    await exited(child)


async def test_close_kills_running_processes(workdir: Path) -> None:
    transport = inetd("hang", workdir, timeout=60)
    async with pid_reports(workdir) as reports:
        sending = asyncio.create_task(transport.send(PING))
        leader, _ = await next_pids(reports)
        await transport.close()
        with pytest.raises(UpstreamUnavailable):
            await sending
    assert reaped(leader)


async def test_processes_beyond_the_cap_wait_for_a_slot(workdir: Path) -> None:
    transport = inetd("hang", workdir, timeout=60, max_processes=2)
    try:
        async with pid_reports(workdir) as reports:
            sending = [asyncio.create_task(transport.send(PING)) for _ in range(3)]
            started = {await next_pids(reports), await next_pids(reports)}
            # An absence has no event to wait for: the third gets half a second to (wrongly) start.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await reports.readline()
            waiting = [task for task in sending if not task.done()]
            sending[0].cancel()
            third = await next_pids(reports)
            assert third not in started
            for task in sending:
                task.cancel()
            results = await asyncio.gather(*sending, return_exceptions=True)
    finally:
        await transport.close()
    assert len(waiting) == 3
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert all(reaped(leader) for leader, _ in (*started, third))


async def test_output_that_is_not_http_is_502_with_stderr_logged(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving("inetd", workdir, answer=b"slurmrestd: fatal: no config\n") as served:
        with pytest.raises(UpstreamUnavailable, match="not well-formed HTTP"):
            await served.transport.send(PING)
    [record] = [r for r in caplog.records if r.name == "slurmgate.upstream"]
    assert record.levelno == logging.WARNING
    assert "not an HTTP/1.x status line" in record.getMessage()
    assert "fake slurmrestd: a line on stderr" in record.getMessage()


async def test_truncated_answer_is_502(workdir: Path) -> None:
    cut = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial'
    async with serving("inetd", workdir, answer=cut) as served:
        with pytest.raises(UpstreamUnavailable):
            await served.transport.send(PING)


async def test_command_that_cannot_start_is_502(workdir: Path) -> None:
    transport = make_transport(
        UpstreamSettings(transport="inetd", command=(str(workdir / "no-such-slurmrestd"),))
    )
    try:
        with pytest.raises(UpstreamUnavailable, match="cannot start slurmrestd"):
            await transport.send(PING)
    finally:
        await transport.close()


async def test_answer_with_a_failing_exit_status_is_used_and_logged(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (workdir / "exit").write_text("3")
    async with serving("inetd", workdir, answer=OK) as served:
        response = await served.transport.send(PING)
    assert (response.status, response.body) == (200, b"{}")
    assert "answered 200 but exited 3" in caplog.text


async def test_endless_output_is_cut_at_the_size_cap(workdir: Path) -> None:
    transport = inetd("flood", workdir, max_response_bytes=1 << 20)
    try:
        async with asyncio.timeout(20):
            with pytest.raises(UpstreamUnavailable, match="larger than"):
                await transport.send(PING)
    finally:
        await transport.close()


async def test_environment_is_clean(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", "/etc/other-cluster/slurm.conf")
    transport = inetd("env", workdir)
    try:
        response = await transport.send(PING)
    finally:
        await transport.close()
    environment = json.loads(response.body)
    assert set(environment) <= {"PATH", "LANG", "LC_CTYPE"}  # Python may set LC_CTYPE itself
    assert environment["PATH"] == "/usr/sbin:/usr/bin:/sbin:/bin"
