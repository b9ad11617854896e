"""The hook in tests/conftest.py marks a test that needs the lab even when it forgot the marker:
through a fixture that uses ``lab`` as well as directly; ``-m "not lab"`` then leaves it out."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest

from tests.conftest import pytest_collection_modifyitems

@pytest.fixture(scope="session")
def lab():
    pytest.fail("the lab was started")

@pytest.fixture
def suite(lab):
    return lab

@pytest.fixture
def through_suite(suite):
    return suite
"""

TESTS = """
def test_direct(lab):
    assert lab

def test_two_fixtures_away(through_suite):
    assert through_suite

def test_needs_nothing():
    assert True
"""

INI = """[pytest]
asyncio_default_fixture_loop_scope = function
markers =
    lab: needs the lab
"""


def test_lab_users_are_marked_and_left_out(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_some=TESTS)
    pytester.makeini(INI)
    unit = pytester.runpytest("-m", "not lab", "--strict-markers")
    unit.assert_outcomes(passed=1, deselected=2)
    lab = pytester.runpytest("-m", "lab", "--collect-only", "-q")
    lab.stdout.fnmatch_lines(["test_some.py::test_direct", "test_some.py::test_two_fixtures_away"])
