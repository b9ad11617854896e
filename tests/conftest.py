"""Fixtures shared by every test: the real Slurm lab."""

from __future__ import annotations

import pytest

from tests.lab.env import Lab, load_lab, start_lab


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The running lab, brought up if needed. A test that needs it fails when it cannot start."""
    try:
        start_lab()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    return load_lab()
