"""MUNGE under load: what is remembered, how long a credential may wait, what one host may take.

unmunge is replaced by tests/server/identity/fake_unmunge.py, which asks :class:`FakeMunged` what
to answer for each credential: a test decides when each decode ends, so overlaps are forced with
events rather than hoped for with sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slurmgate.server.identity import munge
from slurmgate.server.identity.munge import CONCURRENCY, PER_SOURCE, MungeVerifier
from slurmgate.server.identity.refusal import Refused

FAKE_UNMUNGE = Path(__file__).with_name("fake_unmunge.py")

#: What munged says of a credential that is not one (munge_err_t 8).
NOT_MUNGE = (8, "")
#: munged unreachable (munge_err_t 6): the gateway's trouble, not the caller's.
NO_MUNGED = (6, "")


def accepted(uid: int = 2001, host: str = "127.0.0.1") -> tuple[int, str]:
    """unmunge's output for a fresh credential of ``uid`` encoded on ``host``."""
    now = int(time.time())
    return 0, f"STATUS: 0\nENCODE_HOST: {host}\nENCODE_TIME: {now}\nTTL: 5\nUID: {uid}\n"


def fresh() -> str:
    """A credential-shaped string, different every time."""
    return "MUNGE:" + base64.b64encode(os.urandom(60)).decode() + ":"


@dataclass
class FakeMunged:
    """Answers the fake unmunge processes; ``answers`` by credential, else ``default``."""

    socket: Path
    default: tuple[int, str] = field(default_factory=accepted)
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: credentials whose decode waits for ``release``
    held: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    #: every credential received, in order
    received: list[str] = field(default_factory=list)
    #: set whenever a credential is received
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one fake unmunge process."""
        try:
            credential = (await reader.readline()).decode().strip()
            self.received.append(credential)
            self.arrived.set()
            if credential in self.held:
                await self.release.wait()
            status, out = self.answers.get(credential, self.default)
            writer.write(f"{status}\n{out}".encode())
            await writer.drain()
        finally:
            writer.close()

    async def until_received(self, count: int) -> None:
        """Return once ``count`` credentials have been received (at most 10 s)."""
        async with asyncio.timeout(10):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A scratch directory with a short path (a unix socket path may not exceed 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sg-munge-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def fake(workdir: Path) -> AsyncIterator[FakeMunged]:
    munged = FakeMunged(workdir / "munged.sock")
    server = await asyncio.start_unix_server(munged.handle, path=str(munged.socket))
    try:
        yield munged
    finally:
        munged.release.set()
        server.close()
        await server.wait_closed()


def verifier(fake: FakeMunged, workdir: Path, *, replay_capacity: int = 100) -> MungeVerifier:
    """A verifier whose unmunge is the fake, with alice as uid 2001."""
    unmunge = workdir / "unmunge"
    unmunge.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_UNMUNGE}" "$@"\n')
    unmunge.chmod(0o755)
    passwd = workdir / "passwd"
    passwd.write_text("alice:x:2001:2001::/home/alice:/bin/sh\n")
    return MungeVerifier(
        max_age=5,
        unmunge=str(unmunge),
        socket=fake.socket,
        passwd_file=passwd,
        replay_capacity=replay_capacity,
    )


@contextlib.asynccontextmanager
async def running(*tasks: asyncio.Task[object]) -> AsyncIterator[None]:
    """Cancel and await ``tasks`` at the end of the block, whatever happened."""
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_garbage_cannot_fill_the_replay_cache(fake: FakeMunged, workdir: Path) -> None:
    check = verifier(fake, workdir, replay_capacity=1)
    fake.default = NOT_MUNGE
    for _ in range(3):
        with pytest.raises(Refused) as refused:
            await check.verify(fresh(), "127.0.0.1")
        assert refused.value.description == "invalid MUNGE credential"
        assert refused.value.reason.startswith("munge status 8: not a MUNGE credential")
    fake.default = accepted()
    assert (await check.verify(fresh(), "127.0.0.1")).user == "alice"


async def test_a_credential_munged_could_not_check_is_not_used_up(
    fake: FakeMunged, workdir: Path
) -> None:
    check = verifier(fake, workdir)
    credential = fresh()
    fake.answers[credential] = NO_MUNGED
    with pytest.raises(Refused) as refused:
        await check.verify(credential, "127.0.0.1")
    assert refused.value.trouble
    assert refused.value.description == "MUNGE credentials cannot be checked right now"
    del fake.answers[credential]  # munged is back
    assert (await check.verify(credential, "127.0.0.1")).user == "alice"


async def test_a_credential_being_checked_is_refused_and_then_remembered(
    fake: FakeMunged, workdir: Path
) -> None:
    check = verifier(fake, workdir)
    credential = fresh()
    fake.held.add(credential)
    first = asyncio.create_task(check.verify(credential, "127.0.0.1"))
    async with running(first):
        await fake.until_received(1)
        with pytest.raises(Refused) as refused:
            await check.verify(credential, "127.0.0.1")
        assert refused.value.description == "MUNGE credential already used"
        assert refused.value.reason == "replayed (being checked)"
        fake.release.set()
        assert (await first).user == "alice"
    with pytest.raises(Refused) as refused:
        await check.verify(credential, "127.0.0.1")
    assert refused.value.reason == "replayed (gateway cache)"
    assert fake.received == [credential]  # unmunge ran once


async def test_a_decoded_credential_is_remembered_even_when_refused_afterwards(
    fake: FakeMunged, workdir: Path
) -> None:
    check = verifier(fake, workdir)
    credential = fresh()
    with pytest.raises(Refused) as refused:
        await check.verify(credential, "127.0.0.2")  # encoded on 127.0.0.1
    assert refused.value.description == "MUNGE credential encoded on another host"
    with pytest.raises(Refused) as refused:
        await check.verify(credential, "127.0.0.1")
    assert refused.value.reason == "replayed (gateway cache)"


async def test_waiting_for_an_unmunge_slot_is_bounded(
    fake: FakeMunged, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(munge, "SLOT_WAIT", 0.2)
    check = verifier(fake, workdir)
    busy = [fresh() for _ in range(CONCURRENCY)]
    fake.held.update(busy)
    # From as many addresses as slots: the per-address limit is not what is tested here.
    holding = [
        asyncio.create_task(check.verify(credential, f"127.0.1.{n}"))
        for n, credential in enumerate(busy)
    ]
    async with running(*holding):
        await fake.until_received(CONCURRENCY)
        late = fresh()
        async with asyncio.timeout(10):
            with pytest.raises(Refused) as refused:
                await check.verify(late, "127.0.0.1")
        assert refused.value.description == "MUNGE credentials cannot be checked right now"
        assert refused.value.reason == f"all {CONCURRENCY} unmunge slots busy for 0.2 s"
        assert refused.value.trouble
        assert late not in fake.received
        fake.release.set()
        await asyncio.gather(*holding, return_exceptions=True)
    # Refused while queued, not used up: it passes once a slot is free.
    assert (await check.verify(late, "127.0.0.1")).user == "alice"


async def test_one_address_cannot_take_every_slot(fake: FakeMunged, workdir: Path) -> None:
    check = verifier(fake, workdir)
    busy = [fresh() for _ in range(PER_SOURCE)]
    fake.held.update(busy)
    holding = [asyncio.create_task(check.verify(credential, "127.0.0.9")) for credential in busy]
    async with running(*holding):
        await fake.until_received(PER_SOURCE)
        late = fresh()
        with pytest.raises(Refused) as refused:
            await check.verify(late, "::ffff:127.0.0.9")  # the same host
        assert refused.value.description == (
            "too many MUNGE credentials from this address at once, retry shortly"
        )
        assert refused.value.reason == (
            f"{PER_SOURCE} MUNGE credentials from 127.0.0.9 already being checked"
        )
        # Another host still gets a slot.
        assert (await check.verify(fresh(), "127.0.0.1")).user == "alice"
        fake.release.set()
        await asyncio.gather(*holding, return_exceptions=True)
    # The host's count went back down; its refused credential was not used up.
    fake.default = accepted(host="127.0.0.9")
    assert (await check.verify(late, "127.0.0.9")).user == "alice"
