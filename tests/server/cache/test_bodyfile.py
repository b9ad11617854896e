"""Large bodies in sealed memory files (server/cache/bodyfile.py) and the memory backend's use."""

from __future__ import annotations

import gc
import math
import os

import pytest

from slurmgate.server.cache.backends import MemoryBackend
from slurmgate.server.cache.bodyfile import body_file
from slurmgate.server.cache.entry import Entry

JSON = (("Content-Type", "application/json"),)


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_the_body_reads_back_and_cannot_be_changed() -> None:
    body = os.urandom(3 << 20)
    file = body_file(body)
    assert file is not None
    assert file.size == len(body)
    assert file.view == body
    assert os.pread(file.fileno(), len(body) + 1, 0) == body
    with pytest.raises(PermissionError):  # sealed: no process may rewrite a cached answer
        os.pwrite(file.fileno(), b"forged", 0)
    with pytest.raises(TypeError):  # the view is read-only
        file.view[0] = 0


def test_the_descriptor_closes_with_the_last_reference() -> None:
    file = body_file(b"x" * 100)
    assert file is not None
    fd = file.fileno()
    view = file.view
    del file
    gc.collect()
    assert not fd_open(fd)
    assert view == b"x" * 100  # the mapping outlives the descriptor


async def test_the_memory_backend_files_only_large_bodies() -> None:
    backend = MemoryBackend(max_bytes=16 << 20, file_min_bytes=1 << 20)
    small = Entry("w", "", 0.0, 0.0, math.inf, 200, "OK", JSON, b"s" * ((1 << 20) - 1))
    large = Entry("w", "", 0.0, 0.0, math.inf, 200, "OK", JSON, b"l" * (1 << 20))
    await backend.write("small", small, ttl=60)
    await backend.write("large", large, ttl=60)
    kept_small, _ = backend.peek("small", "g")
    kept_large, _ = backend.peek("large", "g")
    assert kept_small is not None
    assert kept_small.file is None
    assert kept_large is not None
    assert kept_large.file is not None
    assert kept_large.body == large.body
    assert kept_large.size == large.size  # the budget counts it the same


async def test_file_min_bytes_zero_never_files() -> None:
    backend = MemoryBackend(max_bytes=16 << 20, file_min_bytes=0)
    large = Entry("w", "", 0.0, 0.0, math.inf, 200, "OK", JSON, b"l" * (2 << 20))
    await backend.write("large", large, ttl=60)
    kept, _ = backend.peek("large", "g")
    assert kept is not None
    assert kept.file is None


async def test_an_evicted_body_stays_readable_by_whoever_holds_it() -> None:
    backend = MemoryBackend(max_bytes=3 << 20, file_min_bytes=1 << 20)
    first = Entry("w", "", 0.0, 0.0, math.inf, 200, "OK", JSON, b"1" * (2 << 20))
    await backend.write("first", first, ttl=60)
    held, _ = backend.peek("first", "g")
    assert held is not None
    assert held.file is not None
    await backend.write("second", first, ttl=60)  # over budget: "first" is evicted
    assert backend.peek("first", "g")[0] is None
    gc.collect()
    # a hit still being sent is not cut off
    assert os.pread(held.file.fileno(), 3 << 20, 0) == first.body
