"""``slurmgate routes``: the table as JSON lines and as aligned text, and its errors;
``slurmgate --version``."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from slurmgate.generated import ROUTES, VERSIONS
from slurmgate.server.cli import commands
from slurmgate.server.cli.commands import main
from tests.layout import REPO

#: The console script pip installed beside this interpreter.
SCRIPT = Path(sys.executable).with_name("slurmgate")


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


def test_version_prints_the_distribution_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"slurmgate {importlib.metadata.version('slurmgate')}\n"


def test_version_through_the_console_script() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    done = subprocess.run(
        [SCRIPT, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"slurmgate {pyproject['project']['version']}\n",
        "",
    )


def test_routes_version_is_still_the_api_version() -> None:
    """The top-level flag and the routes option of the same name do not meet."""
    done = subprocess.run(
        [SCRIPT, "routes", "--version", "v0.0.44", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert {json.loads(line)["version"] for line in done.stdout.splitlines()} == {"v0.0.44"}


def test_routes_version_needs_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["routes", "--version"])
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--version: expected one argument" in captured.err


def test_version_of_an_uninstalled_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No distribution installed: the checkout's pyproject.toml, and ``unknown`` without one."""

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert commands.version() == pyproject["project"]["version"]
    monkeypatch.setattr(commands, "__file__", str(tmp_path / "server" / "cli" / "commands.py"))
    assert commands.version() == "unknown"
