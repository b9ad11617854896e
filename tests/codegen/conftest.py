"""Slow codegen results, once per session, for the tests that need them: the client packages
`make clients` builds, and two regens of two real specs. Both start when collection ends, beside
the other tests (tests/early.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurmgate.codegen.packages import ClientsOutcome, make_clients
from slurmgate.codegen.pipeline import regen
from slurmgate.policies.rules import POLICY_DIR
from tests import early

__all__ = ["REGEN_VERSIONS", "TwoRegens"]

ROOT = Path(__file__).resolve().parents[2]
# v0.0.41 takes the most fixes (everything inline), v0.0.44 is pinned by the golden file.
REGEN_VERSIONS = ("v0.0.41", "v0.0.44")


@dataclass(frozen=True)
class TwoRegens:
    """A specs/ directory with a MANIFEST of :data:`REGEN_VERSIONS`, regenerated twice."""

    specs: Path
    first: Path
    second: Path


def _regen_twice() -> tuple[Path, TwoRegens]:
    """Two independent regens of the two specs into two different directories."""
    root = Path(tempfile.mkdtemp(prefix="sg-regen-"))
    specs = root / "specs"
    specs.mkdir()
    lines = (ROOT / "specs" / "MANIFEST").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.split(" ", 1)[0] in REGEN_VERSIONS]
    (specs / "MANIFEST").write_text("\n".join(kept) + "\n", encoding="utf-8")
    for version in REGEN_VERSIONS:
        shutil.copy(ROOT / "specs" / f"{version}.json", specs)
    made = TwoRegens(specs, root / "first" / "generated", root / "second" / "out")
    for target in (made.first, made.second):
        outcome = regen(specs, target, POLICY_DIR, check=False)
        assert outcome.problems == ()
    return root, made


def _make_clients() -> tuple[Path, ClientsOutcome]:
    """Every version's client, generated and built as `make clients` does, into a new directory."""
    root = Path(tempfile.mkdtemp(prefix="sg-clients-"))
    return root, make_clients(ROOT / "specs", POLICY_DIR, root / "build", root / "dist")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the clients and the regens if a selected test needs them."""
    early.start_if_wanted(session, "built_clients", _make_clients)
    early.start_if_wanted(session, "two_regens", _regen_twice)


@pytest.fixture(scope="session")
def built_clients(pytestconfig: pytest.Config) -> Iterator[ClientsOutcome]:
    """Every version's client, generated and built as `make clients` does, into a temporary dir."""
    root, outcome = early.result(pytestconfig, "built_clients", _make_clients)
    try:
        assert outcome.problems == (), "\n".join(map(str, outcome.problems))
        yield outcome
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def two_regens(pytestconfig: pytest.Config) -> Iterator[TwoRegens]:
    """The two specs and their two regens (:func:`_regen_twice`)."""
    root, made = early.result(pytestconfig, "two_regens", _regen_twice)
    try:
        yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)
