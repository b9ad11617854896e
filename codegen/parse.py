"""Turn loaded specs plus the policy files into the IR.

Parse never renders and never raises for bad input: every problem (an operation without a scope,
an account-like field no rule classifies, a spec fix that could not be made...) is collected and
returned with the others, so one run shows all of them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slurmgate.codegen.fixes import apply_fixes
from slurmgate.codegen.ir import (
    NO_OWN_ENDPOINTS,
    ApiSpec,
    Build,
    Operation,
    OwnEndpoints,
    Parameter,
    Problem,
    Route,
)
from slurmgate.codegen.load import LoadedSpec
from slurmgate.codegen.walk import string_fields
from slurmgate.policies.routing import (
    MUTATING_METHODS,
    AccountLocation,
    CachePolicy,
    LocationKind,
    Namespace,
)
from slurmgate.policies.rules import AccountRules, CacheRules, ScopeRules
from slurmgate.policies.selectors import split_path

__all__ = [
    "Policies",
    "account_locations",
    "class_name",
    "decide_cache",
    "decide_invalidates",
    "decide_scope",
    "parse",
    "parse_operations",
]

_METHODS = ("get", "put", "post", "delete", "patch")
_REF_PREFIX = "#/components/schemas/"
_KIND_ORDER = {kind: index for index, kind in enumerate(LocationKind)}


@dataclass(frozen=True, slots=True)
class Policies:
    """The three policy files, loaded and validated."""

    scopes: ScopeRules
    cache: CacheRules
    accounts: AccountRules


def class_name(schema_name: str) -> str:
    """The class datamodel-code-generator writes for a component: ``v0.0.44_job_desc_msg`` ->
    ``V0044JobDescMsg`` (dots dropped, snake case to Pascal case); render checks it exists."""
    return "".join(part[:1].upper() + part[1:] for part in schema_name.replace(".", "").split("_"))


def parse(
    specs: Sequence[LoadedSpec], policies: Policies, own: OwnEndpoints = NO_OWN_ENDPOINTS
) -> tuple[Build, list[Problem]]:
    """Fix each spec, read its operations and decide scope, cache and accounts for each; ``own``
    (the gateway's endpoints, parsed from ``policies/endpoints/``) joins every version."""
    problems: list[Problem] = []
    apis: list[ApiSpec] = []
    for spec in specs:
        version = spec.entry.version
        document = copy.deepcopy(spec.document)
        report = apply_fixes(version, document)
        problems.extend(Problem(f"{version} spec fix", text) for text in report.problems)
        problems.extend(_own_collisions(version, document, own))
        operations, operation_problems = parse_operations(version, document)
        problems.extend(operation_problems)
        routes: list[Route] = []
        for operation in operations:
            route, route_problems = _decide(version, document, operation, policies)
            problems.extend(route_problems)
            if route is not None:
                routes.append(route)
        apis.append(
            ApiSpec(
                version=version,
                slurm_release=spec.entry.slurm_release,
                spec_sha256=spec.entry.sha256,
                document=json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False),
                fixes=tuple(report.notes),
                routes=tuple(routes),
                own=own,
            )
        )
    return Build(tuple(apis), own), problems


def _own_collisions(version: str, document: Mapping[str, Any], own: OwnEndpoints) -> list[Problem]:
    """The gateway's own paths and schemas must not hide one of slurmrestd's."""
    problems = [
        Problem(operation.origin, f"path {operation.row.path} is one of slurmrestd's in {version}")
        for operation in own.operations
        if operation.row.path in document.get("paths", {})
    ]
    schemas = document.get("components", {}).get("schemas", {})
    problems.extend(
        Problem("endpoints", f"schema {name!r} is one of slurmrestd's in {version}")
        for name in sorted(own.schema_names() & set(schemas))
    )
    return problems


def parse_operations(
    version: str, document: Mapping[str, Any]
) -> tuple[list[Operation], list[Problem]]:
    """Every operation of a (fixed) spec, sorted by path then method."""
    problems: list[Problem] = []
    operations: list[Operation] = []
    seen_ids: dict[str, str] = {}
    schemas = document.get("components", {}).get("schemas", {})
    for url in sorted(document.get("paths", {})):
        item = document["paths"][url]
        shared = item.get("parameters", [])
        for method in _METHODS:
            raw = item.get(method)
            if not isinstance(raw, dict):
                continue
            where = f"{version} {method.upper()} {url}"
            operation, operation_problems = _operation(
                where, url, method, raw, shared=shared, schemas=schemas
            )
            problems.extend(operation_problems)
            if operation is None:
                continue
            if operation.operation_id in seen_ids:
                problems.append(
                    Problem(
                        where,
                        f"operationId {operation.operation_id} is also used by "
                        f"{seen_ids[operation.operation_id]}",
                    )
                )
            seen_ids[operation.operation_id] = where
            operations.append(operation)
    return operations, problems


def _operation(
    where: str,
    url: str,
    method: str,
    raw: Mapping[str, Any],
    *,
    shared: Sequence[Mapping[str, Any]],
    schemas: Mapping[str, Any],
) -> tuple[Operation | None, list[Problem]]:
    problems: list[Problem] = []
    split = split_path(url)
    try:
        namespace = Namespace(split.namespace)
    except ValueError:
        names = ", ".join(member.value for member in Namespace)
        return None, [Problem(where, f"unknown namespace {split.namespace!r} (known: {names})")]
    operation_id = raw.get("operationId")
    if not isinstance(operation_id, str) or not operation_id:
        problems.append(Problem(where, "has no operationId"))
        operation_id = f"{method}_{url}"
    tags = raw.get("tags") or []
    if len(tags) != 1:
        problems.append(Problem(where, f"expected exactly one tag, got {tags!r}"))
    parameters: dict[tuple[str, str], Parameter] = {}
    for param in [*shared, *raw.get("parameters", [])]:
        location, name = param.get("in"), param.get("name")
        if location not in ("path", "query", "header") or not isinstance(name, str):
            problems.append(Problem(where, f"unreadable parameter {param!r}"))
            continue
        if location != "header":
            parameters[(location, name)] = Parameter(location, name, bool(param.get("required")))
    for segment in split.segments:
        if segment.startswith("{") and ("path", segment[1:-1]) not in parameters:
            problems.append(Problem(where, f"path parameter {segment} is not declared"))
    body_schema: str | None = None
    if "requestBody" in raw:
        content = raw["requestBody"].get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        ref = schema.get("$ref", "")
        if not ref.startswith(_REF_PREFIX) or ref.removeprefix(_REF_PREFIX) not in schemas:
            problems.append(Problem(where, "request body is not a reference to a component schema"))
        else:
            body_schema = ref.removeprefix(_REF_PREFIX)
    operation = Operation(
        method=method.upper(),
        path=url,
        operation_id=operation_id,
        namespace=namespace,
        tag=str(tags[0]) if tags else "",
        summary=str(raw.get("summary", "")),
        parameters=tuple(sorted(parameters.values(), key=lambda p: (p.location, p.name))),
        body_schema=body_schema,
        body_model=class_name(body_schema) if body_schema else None,
    )
    return operation, problems


def _decide(
    version: str, document: Mapping[str, Any], operation: Operation, policies: Policies
) -> tuple[Route | None, list[Problem]]:
    where = f"{version} {operation.method} {operation.path}"
    scope, mutating, scope_problems = decide_scope(policies.scopes, operation)
    cache, group, cache_problems = decide_cache(policies.cache, operation, mutating=mutating)
    invalidates: tuple[str, ...] = ()
    invalidate_problems: list[str] = []
    if scope is not None:  # without a scope rule, whether it mutates is unknown: no guesses
        invalidates, invalidate_problems = decide_invalidates(
            policies.cache, operation, mutating=mutating
        )
    schemas = document.get("components", {}).get("schemas", {})
    accounts, account_problems = account_locations(policies.accounts, operation, schemas)
    texts = [*scope_problems, *cache_problems, *invalidate_problems, *account_problems]
    problems = [Problem(where, text) for text in texts]
    if scope is None:
        return None, problems
    return Route(operation, mutating, scope, cache, group, invalidates, accounts), problems


def decide_scope(rules: ScopeRules, operation: Operation) -> tuple[str | None, bool, list[str]]:
    """The scope and mutating flag of an operation; no rule, or disagreeing rules, is a problem."""
    split = split_path(operation.path)
    matching = rules.matching(split.namespace, split.segments, operation.method)
    if not matching:
        return None, False, ["no rule in scopes.toml picks this operation, so it has no scope"]
    decisions = {(rule.scope, rule.mutating) for rule in matching}
    if len(decisions) > 1:
        origins = "; ".join(f"{rule.origin} says {rule.scope}" for rule in matching)
        return None, False, [f"scope rules disagree: {origins}"]
    scope, marked = decisions.pop()
    return scope, marked or operation.method in MUTATING_METHODS, []


def decide_cache(
    rules: CacheRules, operation: Operation, *, mutating: bool
) -> tuple[CachePolicy, str, list[str]]:
    """The cache policy and group: (none, "") when mutating, else the agreeing rules' or default.

    A cached operation without a group (a ``default`` other than none) is a problem: nothing
    would ever invalidate it, so a client could read stale data after its own write.
    """
    if mutating:
        return CachePolicy.NONE, "", []
    split = split_path(operation.path)
    matching = rules.matching(split.namespace, split.segments, operation.method)
    decisions = {(rule.policy, rule.group) for rule in matching}
    if len(decisions) > 1:
        origins = "; ".join(
            f"{rule.origin} says {rule.policy}" + (f" in group {rule.group}" if rule.group else "")
            for rule in matching
        )
        return CachePolicy.NONE, "", [f"cache rules disagree: {origins}"]
    if decisions:
        policy, group = decisions.pop()
        return policy, group, []
    if rules.default is CachePolicy.NONE:
        return CachePolicy.NONE, "", []
    return (
        rules.default,
        "",
        [
            f"cache.toml's default caches this operation ({rules.default}) but only a [[rule]] "
            "can give it the cache group that invalidates it; add a [[rule]] with a 'group'"
        ],
    )


def decide_invalidates(
    rules: CacheRules, operation: Operation, *, mutating: bool
) -> tuple[tuple[str, ...], list[str]]:
    """The cache groups a mutating operation makes stale: the sorted union of its invalidate rules.

    No ``[[invalidate]]`` rule picking a mutating operation is a problem, so that a new mutation
    needs a decision; so is one picking a read, which cannot invalidate (a stale or wrong rule).
    """
    split = split_path(operation.path)
    matching = rules.invalidating(split.namespace, split.segments, operation.method)
    if not mutating:
        return (), [
            f"{rule.origin} picks this operation, but it does not mutate, so it cannot invalidate"
            for rule in matching
        ]
    if not matching:
        return (), ["no [[invalidate]] rule in cache.toml picks this mutating operation"]
    return tuple(sorted({group for rule in matching for group in rule.groups})), []


def account_locations(
    rules: AccountRules, operation: Operation, schemas: Mapping[str, Any]
) -> tuple[tuple[AccountLocation, ...], list[str]]:
    """Where the request names accounts: parameters and body fields per the rules, plus lookups.

    A parameter or string body field that looks account-like (``detect``) but that no rule
    classifies is a problem, as is a lookup whose key the operation does not have.
    """
    split = split_path(operation.path)
    where = (split.namespace, split.segments, operation.method)
    problems: list[str] = []
    locations: set[AccountLocation] = set()
    for param in operation.parameters:
        rule = rules.classify_param(*where, param.location, param.name)
        if rule is None:
            if rules.detect.search(param.name):
                problems.append(
                    f"{param.location} parameter {param.name!r} looks like an account but no "
                    "[[param]] rule in accounts.toml classifies it"
                )
            continue
        if rule.account:
            kind = LocationKind(param.location)
            locations.add(AccountLocation(kind, (param.name,), rule.form, rule.when_absent))
    fields = string_fields(schemas, operation.body_schema) if operation.body_schema else []
    for field in fields:
        body_rule = rules.classify_field(*where, field.path)
        if body_rule is None:
            if any(rules.detect.search(step) for step in field.path if step != "[]"):
                problems.append(
                    f"body field {_dotted(field.path)} looks like an account but no [[body]] "
                    "rule in accounts.toml classifies it"
                )
            continue
        if body_rule.account:
            locations.add(
                AccountLocation(
                    LocationKind.BODY, field.path, body_rule.form, body_rule.when_absent
                )
            )
    body_paths = {field.path for field in fields}
    params = {(param.location, param.name) for param in operation.parameters}
    for lookup in rules.lookups_for(*where):
        origin, rest = lookup.key[0], lookup.key[1:]
        known = rest in body_paths if origin == "body" else (origin, rest[0]) in params
        if not known:
            problems.append(
                f"{lookup.origin}: lookup key {origin}:{_dotted(rest)} is not in the request"
            )
            continue
        locations.add(AccountLocation(LocationKind.LOOKUP, lookup.key, entity=lookup.entity))
    ordered = sorted(locations, key=lambda loc: (_KIND_ORDER[loc.kind], loc.path, loc.entity))
    return tuple(ordered), problems


def _dotted(path: tuple[str, ...]) -> str:
    return str(AccountLocation(LocationKind.BODY, path)).removeprefix("body:")
