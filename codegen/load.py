"""Read ``specs/MANIFEST`` and the spec files it names, and check that they are what it says.

Nothing here raises for bad input: every problem becomes a :class:`~slurmgate.codegen.ir.Problem`
so that one run reports all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurmgate.codegen.ir import Problem

__all__ = [
    "LoadedSpec",
    "ManifestEntry",
    "load_specs",
    "read_manifest",
]

_LINE = re.compile(r"^(v\d+\.\d+\.\d+)\s+(\d+\.\d+\.\d+)\s+([0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One MANIFEST line: API version, the Slurm release that wrote its spec, the spec's sha256."""

    version: str
    slurm_release: str
    sha256: str


@dataclass(frozen=True, slots=True)
class LoadedSpec:
    """A spec file that matched its MANIFEST entry, parsed."""

    entry: ManifestEntry
    path: Path
    document: dict[str, Any]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("."))


def read_manifest(path: Path) -> tuple[list[ManifestEntry], list[Problem]]:
    """Parse MANIFEST lines ``v0.0.XX <slurm-release> <sha256>``; ``#`` starts a comment."""
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [], [Problem(str(path), f"cannot read: {exc.strerror or exc}")]
    entries: dict[str, ManifestEntry] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(" ".join(line.split()))
        where = f"{path.name} line {number}"
        if match is None:
            problems.append(Problem(where, f"expected 'v0.0.XX <release> <sha256>', got {line!r}"))
            continue
        entry = ManifestEntry(*match.groups())
        if entry.version in entries:
            problems.append(Problem(where, f"{entry.version} is listed twice"))
            continue
        entries[entry.version] = entry
    if not entries and not problems:
        problems.append(Problem(path.name, "lists no API version"))
    ordered = sorted(entries.values(), key=lambda e: _version_key(e.version))
    return ordered, problems


def _check_document(version: str, where: str, document: object) -> list[Problem]:
    if not isinstance(document, dict):
        return [Problem(where, "is not a JSON object")]
    problems: list[Problem] = []
    openapi = document.get("openapi")
    if not isinstance(openapi, str) or not openapi.startswith("3."):
        problems.append(Problem(where, f"is not an OpenAPI 3 document (openapi: {openapi!r})"))
    paths = document.get("paths")
    if not isinstance(paths, dict) or not paths:
        problems.append(Problem(where, "has no paths"))
        return problems
    if not isinstance(document.get("components", {}).get("schemas"), dict):
        problems.append(Problem(where, "has no components.schemas"))
    for url in sorted(paths):
        segments = [part for part in url.split("/") if part]
        if len(segments) < 2 or segments[1] != version:
            problems.append(Problem(where, f"path {url} does not belong to API {version}"))
    return problems


def load_specs(specs_dir: Path) -> tuple[list[LoadedSpec], list[Problem]]:
    """Load every spec MANIFEST lists; a sha256 mismatch or an unlisted spec is a problem."""
    entries, problems = read_manifest(specs_dir / "MANIFEST")
    loaded: list[LoadedSpec] = []
    for entry in entries:
        path = specs_dir / f"{entry.version}.json"
        where = f"{specs_dir.name}/{path.name}"
        try:
            raw = path.read_bytes()
        except OSError as exc:
            problems.append(
                Problem(where, f"listed in MANIFEST but cannot be read: {exc.strerror}")
            )
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if digest != entry.sha256:
            problems.append(
                Problem(
                    where, f"sha256 is {digest}, MANIFEST says {entry.sha256}; run `make specs`"
                )
            )
            continue
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(Problem(where, f"is not JSON: {exc}"))
            continue
        document_problems = _check_document(entry.version, where, document)
        problems.extend(document_problems)
        if not document_problems:
            loaded.append(LoadedSpec(entry, path, document))
    listed = {f"{entry.version}.json" for entry in entries}
    for path in sorted(specs_dir.glob("v*.json")):
        if path.name not in listed:
            problems.append(Problem(f"{specs_dir.name}/{path.name}", "is not listed in MANIFEST"))
    return loaded, problems
