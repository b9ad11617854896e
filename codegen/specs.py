"""``make specs``: ask slurmrestd for its OpenAPI document, per data parser version.

Each source is a slurmrestd binary: a site's own (``--slurmrestd /usr/sbin/slurmrestd``) or the
lab's, run inside its chroot (``--lab-root trixie=/var/lib/slurmgate-lab/trixie/root``). For every
API version a source can generate, ``slurmrestd -d data_parser/v0.0.XX -s openapi/slurmctld,
openapi/slurmdbd,openapi/util --generate-openapi-spec`` writes the document (without
``openapi/util`` for releases that do not ship it, such as 24.11); no daemon is needed, only a
two-line slurm.conf. The plugins are the ones a slurmrestd started without ``-s`` loads, so the
specs list every operation it serves. Where several releases serve a version, the newest
release's document wins.

Output: ``specs/v0.0.XX.json`` normalized (sorted keys, two-space indentation, LF, final newline)
and ``specs/MANIFEST`` (version, Slurm release, sha256 of the file). Versions no source produced
any more are removed, so ``specs/`` is exactly what the given slurmrestd binaries serve.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Source", "Spec", "collect", "main", "normalize", "write_specs"]

PLUGINS = "openapi/slurmctld,openapi/slurmdbd,openapi/util"
#: Without the util plugin (hostlist/hostnames), which Slurm 24.11 does not have.
PLUGINS_WITHOUT_UTIL = "openapi/slurmctld,openapi/slurmdbd"
# Data parser versions to try: slurmrestd cannot list them without a running munged.
CANDIDATES = tuple(f"v0.0.{n}" for n in range(36, 60))
MINIMAL_CONF = "ClusterName=specs\nSlurmctldHost=localhost\n"
MANIFEST_HEADER = (
    "# version  slurm-release  sha256 (of the normalized spec file); written by `make specs`"
)


@dataclasses.dataclass(frozen=True)
class Source:
    """A slurmrestd binary, either on this host or inside a chroot."""

    binary: str
    chroot: Path | None = None

    def command(self, conf: str, *args: str) -> tuple[list[str], dict[str, str]]:
        # A clean environment: a SLURM_CONF exported on the host must not leak in.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF": conf, "LANG": "C.UTF-8"}
        if self.chroot is None:
            return [self.binary, *args], env
        return ["chroot", str(self.chroot), self.binary, *args], env

    def describe(self) -> str:
        return f"{self.binary} in {self.chroot}" if self.chroot else self.binary


@dataclasses.dataclass(frozen=True)
class Spec:
    """One generated document."""

    version: str
    release: str
    document: dict[str, object]


def release_key(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", release))


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.lstrip("v").split("."))


def run_source(source: Source, *args: str) -> subprocess.CompletedProcess[bytes]:
    # The configuration must be readable by the binary: inside the chroot when there is one.
    base = Path(
        tempfile.mkdtemp(prefix="slurmgate-specs-", dir=(source.chroot or Path("/")) / "tmp")
    )
    try:
        (base / "slurm.conf").write_text(MINIMAL_CONF)
        conf = (
            "/" + str((base / "slurm.conf").relative_to(source.chroot))
            if source.chroot
            else str(base / "slurm.conf")
        )
        cmd, env = source.command(conf, *args)
        return subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False)
    finally:
        (base / "slurm.conf").unlink(missing_ok=True)
        base.rmdir()


def release_of(source: Source) -> str:
    proc = run_source(source, "-V")
    match = re.search(rb"(\d+\.\d+\.\d+)", proc.stdout + proc.stderr)
    if proc.returncode != 0 or match is None:
        raise SystemExit(f"specs: cannot tell the Slurm release of {source.describe()}")
    return match.group(1).decode()


def collect(sources: Sequence[Source]) -> dict[str, Spec]:
    """Generate every version each source can; the newest release wins a shared version."""
    chosen: dict[str, Spec] = {}
    for source in sources:
        release = release_of(source)
        found = []
        plugins = PLUGINS
        for version in CANDIDATES:
            proc = run_source(
                source, "-d", f"data_parser/{version}", "-s", plugins, "--generate-openapi-spec"
            )
            if proc.returncode != 0 and b"unable to find plugin: openapi/util" in proc.stderr:
                plugins = PLUGINS_WITHOUT_UTIL
                proc = run_source(
                    source, "-d", f"data_parser/{version}", "-s", plugins, "--generate-openapi-spec"
                )
            if proc.returncode != 0 or not proc.stdout.strip():
                continue
            document = json.loads(proc.stdout)
            found.append(version)
            current = chosen.get(version)
            if current is None or release_key(release) > release_key(current.release):
                chosen[version] = Spec(version, release, document)
        print(f"specs: {source.describe()} (Slurm {release}) serves {' '.join(found) or 'nothing'}")
    return chosen


def normalize(document: dict[str, object]) -> bytes:
    """The committed form of a spec: sorted keys, fixed indentation, LF, final newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def write_specs(specs: dict[str, Spec], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = [MANIFEST_HEADER]
    for version in sorted(specs, key=version_key):
        data = normalize(specs[version].document)
        (out / f"{version}.json").write_bytes(data)
        lines.append(f"{version} {specs[version].release} {hashlib.sha256(data).hexdigest()}")
    for stale in sorted(out.glob("v*.json")):
        if stale.stem not in specs:
            print(f"specs: removing {stale.name}: no source serves it any more")
            stale.unlink()
    (out / "MANIFEST").write_bytes(("\n".join(lines) + "\n").encode())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slurmgate.codegen.specs", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("specs"), help="default: specs/")
    parser.add_argument("--slurmrestd", action="append", default=[], help="a slurmrestd binary")
    parser.add_argument(
        "--lab-root", action="append", default=[], type=Path, help="a lab chroot with slurmrestd"
    )
    args = parser.parse_args(argv)
    sources = [Source(b) for b in args.slurmrestd]
    sources += [Source("/usr/sbin/slurmrestd", root) for root in args.lab_root]
    if not sources:
        parser.error("give at least one --slurmrestd or --lab-root")
    specs = collect(sources)
    if not specs:
        print("specs: no source generated any document", file=sys.stderr)
        return 1
    write_specs(specs, args.out)
    print(f"specs: wrote {len(specs)} versions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
