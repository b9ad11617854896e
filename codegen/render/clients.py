"""Client packages: one openapi-python-client package per API version, built into a wheel and sdist.

``build/clients/slurmgate-client-v0044/`` holds the generated sources (build output, not
committed) and ``dist/`` the wheel and sdist of each. A package is generated from
:func:`client_document`, built with ``python -m build --no-isolation`` against the build backend
pinned in the dev dependencies (pdm-backend), so ``make clients`` needs no network. The generator
runs with ``--fail-on-warning``, and every operation of the document must have its module in the
generated package: an endpoint the generator drops (as v0.0.40's ``"default": 0`` booleans made it
drop eight, job submit among them) fails the build instead of shipping a smaller client.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from slurmgate.codegen.ir import ApiSpec, Problem
from slurmgate.codegen.render.openapi import render_openapi

__all__ = [
    "GENERATOR_OPTIONS",
    "ClientPackage",
    "build_clients",
    "client_document",
    "client_version",
    "distribution_name",
    "generate_clients",
    "import_name",
    "missing_operations",
]

#: openapi-python-client options, checked against its --help (0.29.1).
GENERATOR_OPTIONS: tuple[str, ...] = (
    # pyproject.toml with pdm-backend as build backend (pinned in dev deps, built --no-isolation).
    "--meta=pdm",
    # A warning means an endpoint or a model was left out or guessed: fix the spec in fixes.py.
    "--fail-on-warning",
    "--overwrite",
)

#: ZIP cannot store times before 1980; used for reproducible archives when the caller sets none.
_DEFAULT_SOURCE_DATE_EPOCH = "315532800"
_METHODS = ("get", "put", "post", "delete", "patch")


def client_document(api: ApiSpec) -> str:
    """The OpenAPI document a version's client package is generated from: the gateway's own.

    That is ``generated/v0_0_XX/openapi.json``: the fixed spec plus the gateway's security schemes,
    error answers and endpoints (``api.document``, the fixed spec alone, would do for a client of
    slurmrestd itself).
    """
    return render_openapi(api)


def distribution_name(version: str) -> str:
    """``v0.0.44`` -> ``slurmgate-client-v0044`` (the name pip installs)."""
    return "slurmgate-client-" + version.replace(".", "")


def import_name(version: str) -> str:
    """``v0.0.44`` -> ``slurmgate_client_v0044`` (the name Python imports)."""
    return distribution_name(version).replace("-", "_")


def client_version(slurm_release: str, project_version: str) -> str:
    """The package version: Slurm release, then slurmgate's version, as one PEP 440 release.

    ``26.05.5`` + ``0.1.0`` -> ``26.5.5.0.1.0``. Versions compare the Slurm release first (a spec
    of a newer Slurm is a newer client), then the generator's version (a better client of the same
    spec). Raises ``ValueError`` when the result is not a public PEP 440 version.
    """
    if not re.fullmatch(r"\d+\.\d+\.\d+", slurm_release):
        raise ValueError(f"Slurm release {slurm_release!r} is not MAJOR.MINOR.MICRO")
    try:
        project = Version(project_version)
    except InvalidVersion:
        raise ValueError(f"project version {project_version!r} is not a PEP 440 version") from None
    if project.local is not None or project.epoch:
        raise ValueError(f"project version {project_version!r} has a local part or an epoch")
    release = ".".join(str(int(part)) for part in slurm_release.split("."))
    return str(Version(f"{release}.{project}"))


@dataclass(frozen=True, slots=True)
class ClientPackage:
    """One generated client package, ready to build."""

    version: str  # API version, "v0.0.44"
    slurm_release: str
    distribution: str  # "slurmgate-client-v0044"
    package: str  # "slurmgate_client_v0044"
    package_version: str  # "26.5.5.0.1.0"
    source: Path  # the generated project directory (pyproject.toml, the package, README.md)


def generate_clients(
    apis: Sequence[ApiSpec], out_dir: Path, project_version: str
) -> tuple[list[ClientPackage], list[Problem]]:
    """Generate every version's package under ``out_dir`` (wiped first), in parallel."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if not apis:
        return [], []
    workers = min(len(apis), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda api: _generate(api, out_dir, project_version), apis))
    packages: list[ClientPackage] = []
    problems: list[Problem] = []
    for package, package_problems in results:
        problems.extend(package_problems)
        if package is not None:
            packages.append(package)
    return packages, problems


def _generate(
    api: ApiSpec, out_dir: Path, project_version: str
) -> tuple[ClientPackage | None, list[Problem]]:
    where = f"{api.version} client"
    try:
        package_version = client_version(api.slurm_release, project_version)
    except ValueError as error:
        return None, [Problem(where, str(error))]
    package = ClientPackage(
        version=api.version,
        slurm_release=api.slurm_release,
        distribution=distribution_name(api.version),
        package=import_name(api.version),
        package_version=package_version,
        source=out_dir.resolve() / distribution_name(api.version),
    )
    document = client_document(api)
    ruff = shlex.quote(str(Path(sys.executable).parent / "ruff"))
    config = {
        "project_name_override": package.distribution,
        "package_name_override": package.package,
        "package_version_override": package.package_version,
        # The generator's default hooks run whichever `ruff` is first on PATH.
        "post_hooks": [f"{ruff} check --fix-only --quiet .", f"{ruff} format --quiet ."],
    }
    with tempfile.TemporaryDirectory(prefix="slurmgate-client-") as tmp:
        spec = Path(tmp) / f"{api.version}.json"
        spec.write_text(document, encoding="utf-8")
        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps(config), encoding="utf-8")
        command = [
            str(Path(sys.executable).parent / "openapi-python-client"),
            "generate",
            f"--path={spec}",
            f"--config={config_file}",
            f"--output-path={package.source}",
            *GENERATOR_OPTIONS,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=tmp, timeout=600
        )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        detail = "\n".join(output.splitlines()[-30:])
        return None, [Problem(where, f"openapi-python-client failed:\n{detail}")]
    if "warning" in output.lower():
        return None, [Problem(where, f"openapi-python-client warned:\n{output}")]
    missing = missing_operations(json.loads(document), package.source / package.package)
    problems = [
        Problem(where, f"{operation}: the generator made no module for it") for operation in missing
    ]
    return package, problems


def missing_operations(document: dict[str, object], package_dir: Path) -> list[str]:
    """Operations of ``document`` with no ``api/<tag>/<operation_id>.py`` in the package."""
    made = {path.stem for path in (package_dir / "api").glob("*/*.py")}
    paths = document.get("paths")
    missing: list[str] = []
    for url, item in sorted(paths.items()) if isinstance(paths, dict) else ():
        for method in _METHODS:
            operation = item.get(method) if isinstance(item, dict) else None
            if isinstance(operation, dict) and _module(operation) not in made:
                missing.append(f"{method.upper()} {url} ({operation.get('operationId')})")
    return missing


def _module(operation: dict[str, object]) -> str:
    """The generator's module name for an operation id: snake case, as its ``snake_case``."""
    return re.sub(r"[^a-z0-9]+", "_", str(operation.get("operationId", "")).lower()).strip("_")


def build_clients(packages: Sequence[ClientPackage], dist_dir: Path) -> list[Problem]:
    """Build each package's wheel and sdist into ``dist_dir``, replacing older client builds.

    Runs ``python -m build --no-isolation``: the backend comes from this virtualenv (pinned in
    the dev dependencies), so nothing is downloaded. ``SOURCE_DATE_EPOCH`` defaults to 1980-01-01
    so the same sources give the same archives.
    """
    dist_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(dist_dir.glob("slurmgate_client_v*")):
        stale.unlink()
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "")}
    env["SOURCE_DATE_EPOCH"] = env["SOURCE_DATE_EPOCH"] or _DEFAULT_SOURCE_DATE_EPOCH
    problems: list[Problem] = []
    workers = min(len(packages), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda package: _build(package, dist_dir, env), packages))
    for package, problem in zip(packages, results, strict=True):
        if problem is not None:
            problems.append(Problem(f"{package.version} client", problem))
    return problems


def _build(package: ClientPackage, dist_dir: Path, env: dict[str, str]) -> str | None:
    """Build one package; ``None`` when its wheel and sdist are in ``dist_dir``, else the error."""
    command = [
        sys.executable,
        *("-m", "build", "--no-isolation", "--sdist", "--wheel"),
        f"--outdir={dist_dir}",
        str(package.source),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, timeout=600
    )
    if done.returncode != 0:
        detail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        return f"python -m build failed:\n{detail}"
    stem = f"{package.package}-{package.package_version}"
    expected = [dist_dir / f"{stem}-py3-none-any.whl", dist_dir / f"{stem}.tar.gz"]
    absent = [path.name for path in expected if not path.exists()]
    return f"python -m build did not write {', '.join(absent)}" if absent else None
