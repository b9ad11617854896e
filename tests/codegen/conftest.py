"""The client packages `make clients` builds, once per session, for the tests that need them."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmgate.codegen.packages import ClientsOutcome, make_clients
from slurmgate.policies.rules import POLICY_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_clients(tmp_path_factory: pytest.TempPathFactory) -> ClientsOutcome:
    """Every version's client, generated and built as `make clients` does, into a temporary dir."""
    root = tmp_path_factory.mktemp("clients")
    outcome = make_clients(ROOT / "specs", POLICY_DIR, root / "build", root / "dist")
    assert outcome.problems == (), "\n".join(map(str, outcome.problems))
    return outcome
