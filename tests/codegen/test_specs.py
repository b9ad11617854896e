"""``make specs``: documents from slurmrestd, normalized; the newest release wins; stale removed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from slurmgate.codegen.specs import Source, collect, main, normalize, write_specs
from tests.lab.env import Lab

REPO = Path(__file__).resolve().parents[2]

FAKE = """#!/bin/sh
# A stand-in slurmrestd: release {release}, data parsers {versions}.
[ "$1" = "-V" ] && {{ echo "slurm {release}"; exit 0; }}
grep -q '^ClusterName=' "$SLURM_CONF" || exit 3
for v in {versions}; do
  if [ "$2" = "data_parser/$v" ]; then
    printf '{{"paths": {{"/slurm/%s/ping/": {{}}}}, "info": {{"version": "{release}"}}}}' "$v"
    exit 0
  fi
done
echo "unknown data parser $2" >&2
exit 1
"""


def fake_slurmrestd(tmp_path: Path, release: str, versions: str) -> Source:
    path = tmp_path / f"slurmrestd-{release}"
    path.write_text(FAKE.format(release=release, versions=versions))
    path.chmod(0o755)
    return Source(str(path))


def test_the_newest_release_wins_a_version_both_serve(tmp_path: Path) -> None:
    old = fake_slurmrestd(tmp_path, "24.11.5", "v0.0.40 v0.0.41 v0.0.42")
    new = fake_slurmrestd(tmp_path, "26.05.5", "v0.0.42 v0.0.43")
    specs = collect([new, old])
    assert sorted(specs) == ["v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43"]
    assert specs["v0.0.42"].release == "26.05.5"
    assert specs["v0.0.40"].release == "24.11.5"


def test_written_specs_are_normalized_and_listed_with_their_digest(tmp_path: Path) -> None:
    out = tmp_path / "specs"
    out.mkdir()
    (out / "v0.0.39.json").write_text("{}\n")  # served by no source any more
    source = fake_slurmrestd(tmp_path, "25.05.1", "v0.0.41 v0.0.43")
    write_specs(collect([source]), out)
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST", "v0.0.41.json", "v0.0.43.json"]
    data = (out / "v0.0.43.json").read_bytes()
    assert data == normalize(json.loads(data))
    assert data.startswith(b'{\n  "info": {')
    assert data.endswith(b"}\n")
    entries = [line.split() for line in (out / "MANIFEST").read_text().splitlines()[1:]]
    assert entries == [
        ["v0.0.41", "25.05.1", hashlib.sha256((out / "v0.0.41.json").read_bytes()).hexdigest()],
        ["v0.0.43", "25.05.1", hashlib.sha256(data).hexdigest()],
    ]


def test_no_source_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "--slurmrestd or --lab-root" in capsys.readouterr().err


def test_the_lab_slurmrestd_reproduces_the_committed_specs(lab: Lab, tmp_path: Path) -> None:
    """What is committed in specs/ is what the lab's own slurmrestd binaries generate."""
    out = tmp_path / "specs"
    roots = [f"--lab-root={suite.root}" for suite in lab.suites.values()]
    assert main(["--out", str(out), *roots]) == 0
    manifest = REPO / "specs" / "MANIFEST"
    committed = {line.split()[0]: line.split()[1] for line in manifest.read_text().splitlines()[1:]}
    made = {
        line.split()[0]: line.split()[1] for line in (out / "MANIFEST").read_text().splitlines()[1:]
    }
    assert sorted(made) == sorted(committed) == [f"v0.0.{n}" for n in range(40, 46)]
    for version, release in made.items():
        fresh = json.loads((out / f"{version}.json").read_text())
        if release == committed[version]:
            assert (out / f"{version}.json").read_bytes() == (
                REPO / "specs" / f"{version}.json"
            ).read_bytes()
        else:
            # Debian moved to a newer point release: the paths must still be the same, and
            # `make specs regen` brings the rest up to date.
            old = json.loads((REPO / "specs" / f"{version}.json").read_text())
            assert sorted(fresh["paths"]) == sorted(old["paths"]), (
                f"{version}: run make specs regen"
            )
