"""`make clients`: names and versions, the generator's checks, six wheels that install together."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from slurmgate.codegen.load import read_manifest
from slurmgate.codegen.packages import ClientsOutcome, project_version
from slurmgate.codegen.render.clients import (
    client_version,
    distribution_name,
    import_name,
    missing_operations,
)
from tests.codegen.package_index import fresh_venv, pip, run

ROOT = Path(__file__).resolve().parents[2]


def test_names_are_per_version_and_installable_side_by_side() -> None:
    assert distribution_name("v0.0.44") == "slurmgate-client-v0044"
    assert import_name("v0.0.44") == "slurmgate_client_v0044"


def test_version_is_the_slurm_release_then_the_project_version() -> None:
    assert client_version("26.05.5", "0.1.0") == "26.5.5.0.1.0"
    assert client_version("24.11.5", "0.1.0") == "24.11.5.0.1.0"
    assert client_version("26.05.5", "1.0.0rc1") == "26.5.5.1.0.0rc1"
    ordered = [
        ("24.11.5", "0.9.0"),
        ("26.05.5", "0.1.0"),
        ("26.05.5", "0.1.1"),
        ("26.05.5", "0.2.0"),
        ("26.05.6", "0.1.0"),
        ("26.11.0", "0.1.0"),
    ]
    versions = [Version(client_version(release, project)) for release, project in ordered]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


@pytest.mark.parametrize(
    ("release", "project", "message"),
    [
        ("26.05", "0.1.0", "is not MAJOR.MINOR.MICRO"),
        ("26.05.5", "0.1.0+site", "has a local part or an epoch"),
        ("26.05.5", "1!0.1.0", "has a local part or an epoch"),
        ("26.05.5", "not a version", "is not a PEP 440 version"),
    ],
)
def test_versions_that_cannot_be_public_are_refused(
    release: str, project: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client_version(release, project)


def test_an_operation_the_generator_dropped_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "api" / "slurm").mkdir(parents=True)
    (package / "api" / "slurm" / "slurm_v0045_get_ping.py").write_text("", encoding="utf-8")
    document: dict[str, object] = {
        "paths": {
            "/slurm/v0.0.45/ping/": {"get": {"operationId": "slurm_v0045_get_ping"}},
            "/slurm/v0.0.45/job/submit": {
                "post": {"operationId": "slurm_v0045_post_job_submit"},
                "parameters": [],
            },
        }
    }
    assert missing_operations(document, package) == [
        "POST /slurm/v0.0.45/job/submit (slurm_v0045_post_job_submit)"
    ]


def test_make_clients_builds_a_wheel_and_sdist_per_version(built_clients: ClientsOutcome) -> None:
    entries, problems = read_manifest(ROOT / "specs" / "MANIFEST")
    assert problems == []
    expected = []
    for entry in entries:
        stem = f"{import_name(entry.version)}-{client_version(entry.slurm_release, '0.1.0')}"
        expected += [f"{stem}-py3-none-any.whl", f"{stem}.tar.gz"]
    assert project_version() == "0.1.0"
    assert sorted(path.name for path in built_clients.files) == sorted(expected)
    assert len(built_clients.files) == 12
    # v0.0.40's "default": 0 booleans once cost 8 endpoints, job submit among them.
    v0040 = next(p for p in built_clients.packages if p.version == "v0.0.40")
    assert (v0040.source / v0040.package / "api/slurm/slurm_v0040_post_job_submit.py").exists()


def test_clients_carry_the_gateway_document(built_clients: ClientsOutcome) -> None:
    """Generated from generated/v0_0_XX/openapi.json: the gateway's auth, errors and endpoints."""
    v0045 = next(p for p in built_clients.packages if p.version == "v0.0.45")
    package = v0045.source / v0045.package
    assert (package / "api/slurmgate/slurmgate_get_meta_versions.py").exists()
    get_job = (package / "api/slurm/slurm_v0045_get_job.py").read_text(encoding="utf-8")
    for status in ("200", "304", "401", "403", "502"):
        assert f"response.status_code == {status}" in get_job
    assert "SlurmgateErrorResp" in get_job
    assert "V0045OpenapiResp.from_dict" in get_job  # default: slurmrestd's error envelope


def test_six_wheels_install_together_in_one_fresh_virtualenv(
    built_clients: ClientsOutcome, tmp_path: Path
) -> None:
    wheels = [path for path in built_clients.files if path.suffix == ".whl"]
    assert len(wheels) == 6
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            assert any(name.endswith("/py.typed") for name in archive.namelist()), wheel.name
    python = fresh_venv(tmp_path / "venv")
    pip(python, "install", "--quiet", *wheels)
    packages = [package.package for package in built_clients.packages]
    script = (
        "import importlib, importlib.metadata, json\n"
        f"names = {packages!r}\n"
        "modules = [importlib.import_module(name) for name in names]\n"
        "print(json.dumps({m.__name__: [importlib.metadata.version(m.__name__), "
        "m.__file__, hasattr(m, 'AuthenticatedClient')] for m in modules}))\n"
    )
    seen = json.loads(run(python, "-c", script).strip().splitlines()[-1])
    assert sorted(seen) == [f"slurmgate_client_v00{n}" for n in range(40, 46)]
    for package in built_clients.packages:
        version, path, authenticated = seen[package.package]
        assert version == package.package_version
        assert path.startswith(str(tmp_path / "venv"))
        assert authenticated
    isolated = "import importlib.util; print(importlib.util.find_spec('slurmgate'))"
    assert run(python, "-c", isolated).strip() == "None"
