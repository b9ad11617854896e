"""Render ``models.py`` of each API version with datamodel-code-generator.

The generator runs as a subprocess (its command line is its stable interface), one per version,
in parallel. It reads the fixed document from the IR, never the spec file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slurmgate.codegen.ir import ApiSpec, Problem
from slurmgate.codegen.render.header import header

__all__ = ["DATAMODEL_OPTIONS", "render_models"]

#: datamodel-code-generator options, checked against its --help (0.89).
DATAMODEL_OPTIONS: tuple[str, ...] = (
    "--input-file-type=openapi",
    "--output-model-type=pydantic_v2.BaseModel",
    "--target-python-version=3.11",
    "--target-pydantic-version=2",
    # Schema names are "v0.0.44_job_desc_msg": without this the dots become sub-modules.
    "--no-treat-dot-as-module",
    # Name inline objects after their parent (V0044JobInfoPower) rather than Power1, Power2...
    "--naming-strategy=parent-prefixed",
    # slurmrestd adds fields in minor releases; a model must keep what it does not know.
    "--extra-fields=allow",
    # Models are built from JSON by alias; constructing them by Python name must work too.
    "--allow-population-by-field-name",
    "--collapse-root-models",
    "--use-standard-collections",
    "--use-union-operator",
    "--use-double-quotes",
    "--disable-timestamp",
    # ruff formats the output in write.py, for every generated file alike.
    "--formatters=builtin",
    "--ignore-pyproject",
)


def render_models(apis: Sequence[ApiSpec]) -> tuple[dict[str, str], list[Problem]]:
    """``{"v0_0_44/models.py": source, ...}`` for every API, plus problems (never raised)."""
    if not apis:
        return {}, []
    workers = min(len(apis), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_render_one, apis))
    files: dict[str, str] = {}
    problems: list[Problem] = []
    for api, (source, api_problems) in zip(apis, results, strict=True):
        problems.extend(api_problems)
        if source is not None:
            files[f"{api.module}/models.py"] = source
    return files, problems


def _render_one(api: ApiSpec) -> tuple[str | None, list[Problem]]:
    where = f"{api.version} models"
    with tempfile.TemporaryDirectory(prefix="slurmgate-models-") as tmp:
        spec = Path(tmp) / f"{api.version}.json"
        output = Path(tmp) / "models.py"
        spec.write_text(api.document, encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "datamodel_code_generator",
            f"--input={spec}",
            f"--output={output}",
            f"--custom-file-header={header(api.version)}",
            *DATAMODEL_OPTIONS,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp)
        if done.returncode != 0 or not output.exists():
            detail = (done.stderr or done.stdout).strip().splitlines()[-20:]
            return None, [Problem(where, "datamodel-code-generator failed:\n" + "\n".join(detail))]
        source = output.read_text(encoding="utf-8")
    defined = set(re.findall(r"^class (\w+)\(", source, flags=re.MULTILINE))
    problems = [
        Problem(
            f"{api.version} {route.operation.method} {route.operation.path}",
            f"body model {route.operation.body_model} is not defined in models.py",
        )
        for route in api.routes
        if route.operation.body_model is not None and route.operation.body_model not in defined
    ]
    return source, problems
