"""Fixtures shared by every test: the real Slurm lab, a real redis-server; and the hook that
marks every test needing the lab with ``lab``, so that ``pytest -m "not lab"`` (``make unit``)
never starts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import early
from tests.import_alone import check_every_module
from tests.lab.env import Lab, load_lab, purge_throwaway_accounts, start_lab
from tests.redis_server import RedisServer

#: tests/lab/ tests the lab itself (debootstrap chroots, Slurm's daemons, needs root).
LAB_TESTS = Path(__file__).resolve().parent / "lab"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark with ``lab`` every test that uses the ``lab`` fixture, directly or through another
    fixture, and every test under tests/lab/: before ``-m`` deselects, so a lab test that
    forgot its marker is still left out of ``pytest -m "not lab"``. Then the tests whose fixture
    starts early (tests/early.py) move to the end."""
    for item in items:
        uses_lab = "lab" in getattr(item, "fixturenames", ())
        if (uses_lab or item.path.is_relative_to(LAB_TESTS)) and not item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.lab)
    early.last(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the import check of every module beside the other tests (tests/early.py)."""
    early.start_if_wanted(session, "every_module_imported", check_every_module)


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
