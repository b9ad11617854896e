"""`make publish`: where the index comes from, and what is refused before twine runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slurmgate.codegen.packages import PublishError, client_files, upload_command

FILES = [Path("dist/slurmgate_client_v0045-26.5.5.0.1.0-py3-none-any.whl")]
TWINE = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]


def test_the_url_comes_from_the_environment() -> None:
    environ = {"TWINE_REPOSITORY_URL": "https://pypi.example.org/", "TWINE_REPOSITORY": "x"}
    assert upload_command(FILES, environ) == [
        *TWINE,
        "--repository-url=https://pypi.example.org/",
        str(FILES[0]),
    ]


def test_a_named_repository_must_be_in_the_pypirc(tmp_path: Path) -> None:
    pypirc = tmp_path / ".pypirc"
    pypirc.write_text("[internal]\nrepository = https://pypi.example.org/\n", encoding="utf-8")
    environ = {"TWINE_REPOSITORY": "internal", "HOME": str(tmp_path)}
    assert upload_command(FILES, environ) == [
        *TWINE,
        "--repository=internal",
        f"--config-file={pypirc}",
        str(FILES[0]),
    ]
    with pytest.raises(PublishError, match=r"has no \[other\] section"):
        upload_command(FILES, environ, repository="other")
    with pytest.raises(PublishError, match="cannot read"):
        upload_command(FILES, {"TWINE_REPOSITORY": "internal", "HOME": str(tmp_path / "nope")})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no package index configured"),
        ({"TWINE_USERNAME": "u", "TWINE_PASSWORD": "p"}, "no package index configured"),
        ({"TWINE_REPOSITORY": "pypi"}, "public index"),
        ({"TWINE_REPOSITORY_URL": "https://upload.pypi.org/legacy/"}, "public index"),
    ],
)
def test_no_index_or_a_public_one_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(PublishError, match=message):
        upload_command(FILES, environ)


def test_nothing_to_upload_is_refused(tmp_path: Path) -> None:
    assert client_files(tmp_path) == []
    with pytest.raises(PublishError, match="run `make clients` first"):
        upload_command([], {"TWINE_REPOSITORY_URL": "https://pypi.example.org/"})
