"""Fixtures for the upstream tests."""

from __future__ import annotations

import asyncio
import gc
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

#: Seconds one callback may hold the event loop before the test fails. Generous: starting a
#: process (fork and exec) runs inside the loop and takes a few milliseconds.
SLOW_CALLBACK = 0.1


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A scratch directory with a short path (a unix socket path may not exceed 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sg-upstream-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
async def no_blocking_calls(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """Fail a test whose code blocks the event loop (asyncio's debug mode times every callback)."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK
    # A full garbage collection late in a long run pauses for up to 0.4 s here and would be
    # reported as the test's own blocking call: collect between tests, not during them.
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    slow = [r.getMessage() for r in records if r.name == "asyncio" and "took" in r.getMessage()]
    assert not slow, f"the event loop was blocked: {slow}"
