"""Path and body-field patterns of the policy files."""

from __future__ import annotations

import pytest

from slurmgate.policies.selectors import FieldPattern, OperationSelector, PathPattern, split_path


def test_split_path() -> None:
    split = split_path("/slurm/v0.0.45/job/{job_id}/requeue")
    assert (split.namespace, split.version, split.segments) == (
        "slurm",
        "v0.0.45",
        ("job", "{job_id}", "requeue"),
    )
    assert split_path("/slurmgate/meta/").segments == ("meta",)
    assert split_path("/slurmgate/meta/").version is None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/jobs", ("jobs",), True),
        ("/jobs/", ("jobs",), True),  # trailing slashes never matter
        ("/job/{job_id}", ("job", "{job_id}"), True),
        ("/job/{job_id}", ("job", "{id}"), False),  # parameters are matched literally
        ("/job/*", ("job", "submit"), True),
        ("/job/*", ("job", "{job_id}", "requeue"), False),  # * is one segment
        ("/job/**", ("job", "{job_id}", "requeue"), True),
        ("/job/**", ("job",), True),  # ** may be empty
        ("/**", (), True),
        ("", (), True),
        ("", ("ping",), False),
    ],
)
def test_path_patterns(pattern: str, path: tuple[str, ...], expected: bool) -> None:
    assert PathPattern.parse(pattern).matches(path) is expected


def test_selector_exceptions_and_methods() -> None:
    selector = OperationSelector(
        "slurm", PathPattern.parse("/**"), frozenset({"GET"}), (PathPattern.parse("/reconfigure"),)
    )
    assert selector.matches("slurm", ("jobs",), "get")
    assert not selector.matches("slurm", ("reconfigure",), "GET")
    assert not selector.matches("slurm", ("jobs",), "POST")
    assert not selector.matches("slurmdb", ("jobs",), "GET")
    assert str(selector) == "GET slurm:/** except /reconfigure"


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("jobs[].account", ("jobs", "[]", "account"), True),
        ("jobs[].account", ("jobs", "account"), False),
        ("**.account", ("account",), True),
        ("**.account", ("users", "[]", "default", "account"), True),
        ("**.accounts[]", ("association_condition", "accounts", "[]"), True),
        ("*.account", ("job", "account"), True),
        ("*.account", ("[]", "account"), False),  # * is a key, never an array step
        ("meta.**", ("meta", "plugin", "accounting_storage"), True),
        ("**.accounting[].**", ("associations", "[]", "accounting", "[]", "TRES", "name"), True),
    ],
)
def test_field_patterns(pattern: str, path: tuple[str, ...], expected: bool) -> None:
    assert FieldPattern.parse(pattern).matches(path) is expected


def test_field_pattern_round_trip_and_errors() -> None:
    assert str(FieldPattern.parse("users[].associations[].account")) == (
        "users[].associations[].account"
    )
    with pytest.raises(ValueError, match="empty step"):
        FieldPattern.parse("job..account")
    with pytest.raises(ValueError, match="starts with"):
        FieldPattern.parse("[].account")
