"""A 30-second version of ``make soak``'s steady load: no errors, no crash, memory within bounds.

The 10-minute run and its report are ``make soak`` (tests/soak/__main__.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.lab.env import Lab
from tests.soak.__main__ import soak_section
from tests.soak.steady import run_soak

pytestmark = pytest.mark.lab


@pytest.mark.timeout(300)
async def test_a_short_soak(lab: Lab, tmp_path: Path) -> None:
    suite = lab.suites["forky"]
    version = suite.versions[-1]
    result = await asyncio.to_thread(
        run_soak, suite, version, tmp_path, seconds=30, rate=20, warmup=10
    )
    lines, failed = soak_section(result, "forky", version)
    print("\n".join(lines))  # shown by pytest -s
    assert not failed
    assert result.sent == 600
    assert sum(result.statuses.values()) == result.sent
    assert result.cache["HIT"] > result.cache["MISS"]
    assert result.upstream_calls < result.sent / 5
