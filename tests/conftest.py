"""Fixtures shared by every test: the real Slurm lab, a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.env import Lab, load_lab, purge_throwaway_accounts, start_lab
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The running lab, brought up if needed. A test that needs it fails when it cannot start."""
    try:
        start_lab()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    found = load_lab()
    for suite in found.suites.values():
        purge_throwaway_accounts(suite)
    return found


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server of this test's own, on a free loopback port; fails if it cannot start."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
