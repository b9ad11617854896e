"""Client packages: ``make clients`` (generate and build) and ``make publish`` (upload with twine).

Build: load and parse the specs as ``make regen`` does, generate one openapi-python-client package
per API version into ``build/clients/``, build its wheel and sdist into ``dist/``. Every problem of
every version is collected and reported together; nothing is half-published because publishing is
a separate step.

Publish: ``twine upload`` of the client files in ``dist/`` to the index the environment names
(``TWINE_REPOSITORY_URL``, or ``TWINE_REPOSITORY`` naming a section of ``~/.pypirc``), never one
written in this repository, and never twine's default of the public PyPI.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slurmgate.codegen.ir import Problem
from slurmgate.codegen.pipeline import build
from slurmgate.codegen.render.clients import ClientPackage, build_clients, generate_clients

__all__ = [
    "ClientsOutcome",
    "PublishError",
    "client_files",
    "make_clients",
    "project_version",
    "publish",
    "upload_command",
]

#: Public indexes a site's clients must never land on by accident.
_PUBLIC = ("pypi", "testpypi")
_PUBLIC_HOSTS = ("pypi.org", "pythonhosted.org")


@dataclass(frozen=True, slots=True)
class ClientsOutcome:
    """What ``make clients`` did: packages built (when no problems), and how long it took."""

    problems: tuple[Problem, ...]
    packages: tuple[ClientPackage, ...]
    files: tuple[Path, ...]
    seconds: float


def project_version() -> str:
    """slurmgate's own version (pyproject.toml, as installed in this virtualenv)."""
    return importlib.metadata.version("slurmgate")


def make_clients(
    specs_dir: Path,
    policy_dir: Path,
    build_dir: Path,
    dist_dir: Path,
    *,
    version: str | None = None,
) -> ClientsOutcome:
    """Generate and build every version's client package; problems stop before building."""
    started = time.monotonic()
    result, problems = build(specs_dir, policy_dir)
    packages: list[ClientPackage] = []
    files: list[Path] = []
    if not problems:
        packages, generate_problems = generate_clients(
            result.apis, build_dir, version or project_version()
        )
        problems.extend(generate_problems)
    if not problems:
        problems.extend(build_clients(packages, dist_dir))
        files = client_files(dist_dir)
    return ClientsOutcome(
        tuple(problems), tuple(packages), tuple(files), time.monotonic() - started
    )


def client_files(dist_dir: Path) -> list[Path]:
    """The client wheels and sdists in ``dist_dir``, sorted."""
    return sorted(
        path
        for pattern in ("slurmgate_client_v*.whl", "slurmgate_client_v*.tar.gz")
        for path in dist_dir.glob(pattern)
    )


class PublishError(Exception):
    """Publishing cannot start: nothing to upload, or no (acceptable) index configured."""


def upload_command(
    files: Sequence[Path],
    environ: Mapping[str, str],
    *,
    repository: str | None = None,
    repository_url: str | None = None,
    config_file: Path | None = None,
) -> list[str]:
    """The ``twine upload`` command line for ``files``; :class:`PublishError` when it must not run.

    The index is ``repository_url`` or ``TWINE_REPOSITORY_URL`` (credentials from
    ``TWINE_USERNAME``/``TWINE_PASSWORD``), else ``repository`` or ``TWINE_REPOSITORY`` naming a
    section of the .pypirc (``~/.pypirc`` unless ``config_file``). Twine would default to PyPI;
    here no configuration is an error, and so is a public index.
    """
    if not files:
        raise PublishError("no client packages in dist/: run `make clients` first")
    url = repository_url or environ.get("TWINE_REPOSITORY_URL", "")
    name = repository or environ.get("TWINE_REPOSITORY", "")
    command = [sys.executable, "-m", "twine", "upload", "--non-interactive"]
    command.append("--disable-progress-bar")
    if url:
        if any(host in url for host in _PUBLIC_HOSTS):
            raise PublishError(f"{url} is a public index; client packages go to the site's own")
        command.append(f"--repository-url={url}")
    elif name:
        if name in _PUBLIC:
            raise PublishError(f"{name!r} is a public index; client packages go to the site's own")
        pypirc = config_file or Path(environ.get("HOME", "~")).expanduser() / ".pypirc"
        parser = configparser.ConfigParser()
        try:
            parser.read_string(pypirc.read_text(encoding="utf-8"))
        except (OSError, configparser.Error) as error:
            raise PublishError(f"repository {name!r}: cannot read {pypirc}: {error}") from None
        if not parser.has_option(name, "repository"):
            raise PublishError(f"{pypirc} has no [{name}] section with a repository URL")
        command += [f"--repository={name}", f"--config-file={pypirc}"]
    else:
        raise PublishError(
            "no package index configured: set TWINE_REPOSITORY_URL (with TWINE_USERNAME and "
            "TWINE_PASSWORD), or TWINE_REPOSITORY naming a section of ~/.pypirc"
        )
    return [*command, *(str(path) for path in files)]


def publish(
    dist_dir: Path,
    environ: Mapping[str, str],
    *,
    repository: str | None = None,
    repository_url: str | None = None,
    config_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Check the client files with ``twine check --strict``, then upload them; twine's result."""
    files = client_files(dist_dir)
    command = upload_command(
        files,
        environ,
        repository=repository,
        repository_url=repository_url,
        config_file=config_file,
    )
    env = dict(environ)
    check = [sys.executable, "-m", "twine", "check", "--strict", *(str(path) for path in files)]
    checked = subprocess.run(check, capture_output=True, text=True, check=False, env=env)
    if checked.returncode != 0:
        return checked
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)
