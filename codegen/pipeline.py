"""The build pipeline: load -> parse -> render -> write (or check), one report of all problems."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from slurmgate.codegen.endpoints import decide, read_declarations
from slurmgate.codegen.ir import NO_OWN_ENDPOINTS, Build, OwnEndpoints, Problem
from slurmgate.codegen.load import load_specs
from slurmgate.codegen.parse import Policies, parse
from slurmgate.codegen.render.endpoints import render_endpoints
from slurmgate.codegen.render.models import render_models
from slurmgate.codegen.render.openapi import render_openapi
from slurmgate.codegen.render.routes import render_package, render_routes, render_version_init
from slurmgate.codegen.write import WriteError, diff_tree, prepare, write_tree
from slurmgate.policies.rules import (
    PolicyError,
    load_account_rules,
    load_cache_rules,
    load_scope_rules,
)

__all__ = ["Outcome", "build", "load_policies", "regen", "render"]

log = logging.getLogger("slurmgate.codegen")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run did: problems (nothing written when there are any), check-mode diff lines."""

    problems: tuple[Problem, ...]
    differences: tuple[str, ...]
    versions: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when there were no problems and (in check mode) no differences."""
        return not self.problems and not self.differences


def load_policies(policy_dir: Path) -> tuple[Policies | None, OwnEndpoints, list[Problem]]:
    """The three policy files and the own endpoints' declarations (``endpoints/*.yaml``); each
    file's problems are reported, not raised."""
    problems: list[Problem] = []
    declared, declaration_problems = read_declarations(policy_dir / "endpoints")
    problems.extend(declaration_problems)
    scopes = _load(load_scope_rules, policy_dir / "scopes.toml", problems)
    cache = _load(
        partial(load_cache_rules, own_groups=declared.groups),
        policy_dir / "cache.toml",
        problems,
    )
    accounts = _load(load_account_rules, policy_dir / "accounts.toml", problems)
    if scopes is None or cache is None or accounts is None:
        return None, NO_OWN_ENDPOINTS, problems
    own, own_problems = decide(declared, scopes, cache)
    problems.extend(own_problems)
    return Policies(scopes, cache, accounts), own, problems


def _load(loader: Callable[[Path], _T], path: Path, problems: list[Problem]) -> _T | None:
    try:
        return loader(path)
    except PolicyError as exc:
        problems.extend(Problem(path.parent.name, line) for line in exc.problems)
        return None


def build(specs_dir: Path, policy_dir: Path) -> tuple[Build, list[Problem]]:
    """Load and parse: the IR of every version, and every problem found on the way."""
    specs, problems = load_specs(specs_dir)
    policies, own, policy_problems = load_policies(policy_dir)
    problems.extend(policy_problems)
    if policies is None:
        return Build((), NO_OWN_ENDPOINTS), problems
    result, parse_problems = parse(specs, policies, own)
    problems.extend(parse_problems)
    return result, problems


def render(result: Build) -> tuple[dict[str, str], list[Problem]]:
    """Every generated file's text, keyed by path relative to generated/."""
    files, problems = render_models(result.apis)
    files["__init__.py"] = render_package(result)
    files["endpoints.py"] = render_endpoints(result.own)
    for api in result.apis:
        files[f"{api.module}/__init__.py"] = render_version_init(api)
        files[f"{api.module}/routes.py"] = render_routes(api)
        files[f"{api.module}/openapi.json"] = render_openapi(api)
    return files, problems


def regen(specs_dir: Path, out_dir: Path, policy_dir: Path, *, check: bool) -> Outcome:
    """Regenerate ``out_dir`` from ``specs_dir`` and ``policy_dir``, or (``check``) compare."""
    started = time.monotonic()
    result, problems = build(specs_dir, policy_dir)
    versions = tuple(api.version for api in result.apis)
    for api in result.apis:
        for note in api.fixes:
            log.debug("%s fix: %s", api.version, note)
    differences: list[str] = []
    if not problems:
        files, render_problems = render(result)
        problems.extend(render_problems)
        if not problems:
            try:
                prepared = prepare(files)
                if check:
                    differences = diff_tree(out_dir, prepared)
                else:
                    write_tree(out_dir, prepared)
            except WriteError as exc:
                problems.append(Problem(str(out_dir), str(exc)))
    return Outcome(tuple(problems), tuple(differences), versions, time.monotonic() - started)
