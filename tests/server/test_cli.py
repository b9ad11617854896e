"""``slurmgate routes``: the table as JSON lines and as aligned text, and its errors."""

from __future__ import annotations

import json

import pytest

from slurmgate.generated import ROUTES, VERSIONS
from slurmgate.server.cli import main


def test_routes_json_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "--version", "v0.0.44", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(ROUTES["v0.0.44"])
    rows = [json.loads(line) for line in lines]
    submit = next(row for row in rows if row["operation_id"] == "slurm_v0044_post_job_submit")
    assert submit["method"] == "POST"
    assert submit["path"] == "/slurm/v0.0.44/job/submit"
    assert submit["scope"] == "slurm:jobs:manage"
    assert submit["mutating"] is True
    assert submit["cache_policy"] == "none"
    assert {
        "kind": "body",
        "path": ["job", "account"],
        "form": "name",
        "when_absent": "default_account",
    } in submit["accounts"]


def test_routes_without_version_lists_every_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "--json"]) == 0
    versions = {json.loads(line)["version"] for line in capsys.readouterr().out.splitlines()}
    assert versions == {api.version for api in VERSIONS}


def test_routes_table_is_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "--version", "v0.0.45"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "METHOD", "PATH", "SCOPE", "MUTATING", "CACHE", "OPERATION", "ACCOUNTS",
    ]  # fmt: skip
    assert len(lines) == 1 + len(ROUTES["v0.0.45"])
    column = lines[0].index("SCOPE")
    assert all(line[column - 2 : column] == "  " for line in lines)
    cancel = next(line for line in lines if "slurm_v0045_delete_job " in line)
    assert cancel.split()[-1] == "lookup:job<path:job_id"


def test_unknown_version_names_the_supported_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["routes", "--version", "v0.0.39"])
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown API version 'v0.0.39'" in captured.err
    assert ", ".join(api.version for api in VERSIONS) in captured.err


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
