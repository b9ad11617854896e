"""specs/MANIFEST parsing and the checks load.py makes on each spec."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from slurmgate.codegen.load import load_specs, read_manifest

SPEC = {
    "openapi": "3.0.3",
    "components": {"schemas": {}},
    "paths": {"/slurm/v0.0.44/ping/": {"get": {"operationId": "ping"}}},
}


def _write_spec(specs: Path, version: str, document: object) -> str:
    data = json.dumps(document, sort_keys=True).encode()
    (specs / f"{version}.json").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_manifest_lines_comments_and_order(tmp_path: Path) -> None:
    manifest = tmp_path / "MANIFEST"
    manifest.write_text(
        "# version release sha256\n"
        f"v0.0.44 26.05.5 {'b' * 64}  # trailing comment\n"
        "\n"
        f"v0.0.40   24.11.5\t{'a' * 64}\n",
        encoding="utf-8",
    )
    entries, problems = read_manifest(manifest)
    assert problems == []
    assert [(e.version, e.slurm_release) for e in entries] == [
        ("v0.0.40", "24.11.5"),
        ("v0.0.44", "26.05.5"),
    ]


def test_manifest_reports_every_bad_line_at_once(tmp_path: Path) -> None:
    manifest = tmp_path / "MANIFEST"
    manifest.write_text(
        f"v0.0.44 26.05.5 {'b' * 64}\nv0.0.44 26.05.5 {'c' * 64}\nv0.0.45 26.05.5 nothex\n",
        encoding="utf-8",
    )
    _entries, problems = read_manifest(manifest)
    assert [p.where for p in problems] == ["MANIFEST line 2", "MANIFEST line 3"]
    assert "listed twice" in problems[0].message


def test_sha256_mismatch_is_a_problem_and_the_spec_is_not_loaded(tmp_path: Path) -> None:
    digest = _write_spec(tmp_path, "v0.0.44", SPEC)
    (tmp_path / "MANIFEST").write_text(f"v0.0.44 26.05.5 {digest}\n", encoding="utf-8")
    loaded, problems = load_specs(tmp_path)
    assert problems == []
    assert [spec.entry.version for spec in loaded] == ["v0.0.44"]

    (tmp_path / "v0.0.44.json").write_bytes(b'{"openapi": "3.0.3"}')
    loaded, problems = load_specs(tmp_path)
    assert loaded == []
    assert len(problems) == 1
    assert "sha256" in problems[0].message
    assert digest in problems[0].message


def test_unlisted_spec_and_foreign_paths_are_problems(tmp_path: Path) -> None:
    foreign = {**SPEC, "paths": {"/slurm/v0.0.43/ping/": {"get": {}}}}
    digest = _write_spec(tmp_path, "v0.0.44", foreign)
    _write_spec(tmp_path, "v0.0.45", SPEC)
    (tmp_path / "MANIFEST").write_text(f"v0.0.44 26.05.5 {digest}\n", encoding="utf-8")
    loaded, problems = load_specs(tmp_path)
    assert loaded == []
    messages = sorted(str(p) for p in problems)
    assert any("does not belong to API v0.0.44" in m for m in messages)
    assert any("v0.0.45.json: is not listed in MANIFEST" in m for m in messages)


def test_the_committed_specs_match_their_manifest() -> None:
    loaded, problems = load_specs(Path(__file__).resolve().parents[2] / "specs")
    assert problems == []
    assert len(loaded) >= 1
