"""Read ``policies/endpoints/*.yaml``, the gateway's own endpoints, and decide their rows.

Two steps, like the specs: :func:`read_declarations` loads each file and checks its shape
(keys, types, the access, the cache policy, the path and its parameters); :func:`decide` checks
the declarations against each other and against the policy files (a scope ``scopes.toml``
declares, a cache group ``cache.toml`` knows, no path or operation id twice) and gives the IR.
Neither raises for bad input: every problem names its file and key and is reported with the
others. The format is described in ``docs/codegen.md`` ("Own endpoints").

YAML, not TOML like the other policy files: the declarations carry OpenAPI fragments, which
nest deeply and need ``null`` (TOML has none), and YAML anchors let one file share a fragment
between its endpoints without code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slurmgate.codegen.ir import OwnEndpoints, OwnOperation, Problem
from slurmgate.policies.routing import Access, CachePolicy, OwnEndpoint
from slurmgate.policies.rules import CacheRules, ScopeRules

__all__ = ["Declaration", "Declarations", "decide", "read_declarations"]

_TOP_KEYS = frozenset({"endpoints", "schemas", "fragments"})
_REQUIRED = ("operation_id", "method", "path", "access", "summary", "responses")
_KEYS = frozenset({*_REQUIRED, "scope", "cache", "description", "parameters"})
#: the declared fields that are OpenAPI as they stand
_OPENAPI_KEYS = ("summary", "description", "parameters", "responses")
_OPERATION_ID = re.compile(r"slurmgate_[a-z0-9_]+")
_SCHEMA_NAME = re.compile(r"slurmgate_[a-z0-9_]+")
_GROUP_NAME = re.compile(r"[a-z][a-z0-9-]*")
_STATUS = re.compile(r"[1-5][0-9][0-9]")
_PATH_PARAM = re.compile(r"{([^{}]*)}")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Declaration:
    """One endpoint as its file declares it, its shape checked."""

    row: OwnEndpoint
    openapi: str  # canonical JSON of the _OPENAPI_KEYS present
    file: str  # "endpoints/hardware.yaml"
    key: str  # "endpoints[0]"


@dataclass(frozen=True, slots=True)
class Declarations:
    """What the files declare: the endpoints whose shape is right, and the schemas they add."""

    endpoints: tuple[Declaration, ...]
    schemas: Mapping[str, tuple[str, Any]]  # name -> (file, schema)
    #: every cache group some endpoint names, even one with other problems, which cache.toml may
    #: invalidate (so that it is not blamed for the endpoint's mistake)
    groups: frozenset[str]


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: the keys written beside it override the merged ones
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key if isinstance(key, str) else id(key))
        return super().construct_mapping(node, deep=deep)


class _File:
    """One declaration file's problems, each naming the file and the key."""

    def __init__(self, path: Path) -> None:
        self.name = f"{path.parent.name}/{path.name}"
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.name, f"{key}: {message}" if key else message))


def read_declarations(directory: Path) -> tuple[Declarations, list[Problem]]:
    """Every declaration of ``directory/*.yaml`` (files in name order), and every problem of
    their shape."""
    declarations: list[Declaration] = []
    schemas: dict[str, tuple[str, Any]] = {}
    groups: set[str] = set()
    problems: list[Problem] = []
    files = sorted(directory.glob("*.yaml"))
    if not files:
        problems.append(Problem(str(directory), "no *.yaml declaration of an own endpoint"))
    for path in files:
        file = _File(path)
        data = _load(path, file)
        if data is not None:
            groups |= _groups(data)
            if not _not_json(data, "", file):
                _read_file(data, file, declarations, schemas)
        problems.extend(file.problems)
    return Declarations(tuple(declarations), schemas, frozenset(groups)), problems


def _groups(data: Mapping[str, Any]) -> set[str]:
    endpoints = data.get("endpoints")
    found = set()
    for entry in endpoints if isinstance(endpoints, list) else []:
        cache = entry.get("cache") if isinstance(entry, dict) else None
        group = cache.get("group") if isinstance(cache, dict) else None
        if isinstance(group, str) and _GROUP_NAME.fullmatch(group):
            found.add(group)
    return found


def _load(path: Path, file: _File) -> dict[str, Any] | None:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - safe
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        file.problem("", f"cannot read: {exc}")
        return None
    if not isinstance(data, dict):
        file.problem("", "must be a mapping with the key 'endpoints'")
        return None
    return data


def _not_json(value: object, key: str, file: _File) -> bool:
    """Report keys that are not strings and values that are not JSON (a YAML date, ``200:``)."""
    found = False
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                file.problem(key, f'key {name!r} must be a string (quote it: "{name}")')
                found = True
            else:
                found |= _not_json(item, f"{key}.{name}" if key else name, file)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found |= _not_json(item, f"{key}[{index}]", file)
    elif not (value is None or isinstance(value, str | bool | int | float)):
        file.problem(key, f"{type(value).__name__} is not JSON: quote the value")
        found = True
    return found


def _read_file(
    data: dict[str, Any],
    file: _File,
    declarations: list[Declaration],
    schemas: dict[str, tuple[str, Any]],
) -> None:
    for unknown in sorted(set(data) - _TOP_KEYS):
        file.problem(unknown, "unknown key (expected endpoints, schemas, fragments)")
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        file.problem("endpoints", "must be a non-empty list of endpoint declarations")
        endpoints = []
    for index, entry in enumerate(endpoints):
        key = f"endpoints[{index}]"
        if not isinstance(entry, dict):
            file.problem(key, "must be a mapping")
            continue
        declaration = _endpoint(entry, file, key)
        if declaration is not None:
            declarations.append(declaration)
    declared = data.get("schemas", {})
    if not isinstance(declared, dict):
        file.problem("schemas", "must be a mapping of component name -> schema")
        declared = {}
    for name, schema in declared.items():
        if not _SCHEMA_NAME.fullmatch(name):
            file.problem(f"schemas.{name}", "component names look like 'slurmgate_thing_resp'")
        elif not isinstance(schema, dict):
            file.problem(f"schemas.{name}", "must be a schema (a mapping)")
        elif name in schemas:
            file.problem(f"schemas.{name}", f"is declared by {schemas[name][0]} too")
        else:
            schemas[name] = (file.name, schema)


def _endpoint(entry: Mapping[str, Any], file: _File, key: str) -> Declaration | None:
    """One declaration, or None after reporting why it is not one."""
    before = len(file.problems)
    for unknown in sorted(set(entry) - _KEYS):
        file.problem(f"{key}.{unknown}", "unknown key")
    for name in _REQUIRED:
        if name not in entry:
            file.problem(key, f"missing {name!r}")
    strings = {
        name: entry.get(name)
        for name in ("operation_id", "method", "path", "access", "scope", "summary", "description")
    }
    for name, value in strings.items():
        if name in entry and (not isinstance(value, str) or not value):
            file.problem(f"{key}.{name}", "must be a non-empty string")
    operation_id = _text(strings["operation_id"])
    if operation_id and not _OPERATION_ID.fullmatch(operation_id):
        file.problem(f"{key}.operation_id", f"{operation_id!r} must look like 'slurmgate_get_x'")
    method = _text(strings["method"])
    if method and method != "GET":
        # A write of the gateway's own would need what cached reads it makes stale decided first.
        file.problem(f"{key}.method", f"{method!r}: own endpoints are GET only")
    access, scope, policy, group = _access_and_cache(entry, file, key)
    path = _text(strings["path"])
    parameters = entry.get("parameters", [])
    router_path = _router_path(path, parameters, file, key) if path else ""
    responses = entry.get("responses")
    if "responses" in entry:
        _check_responses(responses, file, f"{key}.responses")
        ok = responses.get("200") if isinstance(responses, dict) else None
        if policy is not CachePolicy.NONE and (not isinstance(ok, dict) or "$ref" in ok):
            file.problem(
                f"{key}.responses",
                'a cached endpoint declares its "200" answer in place (it gets the cache headers)',
            )
    if len(file.problems) > before or access is None:
        return None
    row = OwnEndpoint(
        method=method,
        path=path,
        router_path=router_path,
        operation_id=operation_id,
        access=access,
        scope=scope,
        cache=policy,
        cache_group=group,
    )
    openapi = {name: entry[name] for name in _OPENAPI_KEYS if name in entry}
    text = json.dumps(openapi, sort_keys=True, ensure_ascii=False)
    return Declaration(row, text, file.name, f"{key} ({operation_id})")


def _access_and_cache(
    entry: Mapping[str, Any], file: _File, key: str
) -> tuple[Access | None, str | None, CachePolicy, str]:
    """Who may call the endpoint, the scope it needs, its cache policy and group."""
    access = _access(_text(entry.get("access")), file, key)
    scope = _text(entry.get("scope")) or None
    if access is Access.PUBLIC and scope is not None:
        file.problem(f"{key}.scope", "a public endpoint takes no scope: credentials are not read")
    elif access is not None and access is not Access.PUBLIC and "scope" not in entry:
        file.problem(key, f"missing 'scope': access {access.value} checks the caller's scope")
    policy, group = _cache(entry.get("cache"), file, f"{key}.cache")
    if policy is not CachePolicy.NONE and access not in (None, Access.TOKEN):
        file.problem(
            f"{key}.cache",
            f"a cached endpoint must have access token, not {access}: answers are filled and "
            "keyed per authenticated caller",
        )
    return access, scope, policy, group


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _access(value: str, file: _File, key: str) -> Access | None:
    try:
        return Access(value)
    except ValueError:
        if value:
            names = ", ".join(member.value for member in Access)
            file.problem(f"{key}.access", f"{value!r} is not one of {names}")
        return None


def _cache(value: object, file: _File, key: str) -> tuple[CachePolicy, str]:
    """The cache policy and group of ``cache: {policy: ..., group: ...}`` (absent: never cached)."""
    if value is None:
        return CachePolicy.NONE, ""
    if not isinstance(value, dict):
        file.problem(key, "must be a mapping {policy: ..., group: ...}")
        return CachePolicy.NONE, ""
    for unknown in sorted(set(value) - {"policy", "group"}):
        file.problem(f"{key}.{unknown}", "unknown key")
    raw = value.get("policy")
    policy = next((member for member in CachePolicy if member.value == raw), None)
    if policy is None:
        names = ", ".join(member.value for member in CachePolicy)
        file.problem(f"{key}.policy", f"{raw!r} is not one of {names}")
        return CachePolicy.NONE, ""
    group = value.get("group")
    if policy is CachePolicy.NONE:
        if group is not None:
            file.problem(f"{key}.group", "policy none caches nothing, so it takes no group")
        return policy, ""
    if not isinstance(group, str) or not _GROUP_NAME.fullmatch(group):
        file.problem(
            f"{key}.group",
            f"{group!r}: a cached endpoint belongs to a cache group like 'hardware' "
            "([a-z][a-z0-9-]*), which writes invalidate",
        )
        return policy, ""
    return policy, group


def _router_path(path: str, parameters: object, file: _File, key: str) -> str:
    """``path`` as aiohttp registers it: each ``{name}`` with its parameter's pattern, if any."""
    if not path.startswith("/"):
        file.problem(f"{key}.path", f"{path!r} must start with '/'")
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        file.problem(f"{key}.parameters", "must be a list of OpenAPI parameter objects")
        return path
    declared: dict[str, Mapping[str, Any]] = {}
    for index, parameter in enumerate(parameters):
        if not isinstance(parameter.get("name"), str) or parameter.get("in") not in {
            "path",
            "query",
            "header",
        }:
            file.problem(
                f"{key}.parameters[{index}]", "needs a 'name' and 'in' (path, query or header)"
            )
        elif parameter["in"] == "path":
            declared[parameter["name"]] = parameter
    in_path = _PATH_PARAM.findall(path)
    for name in sorted(set(declared) - set(in_path)):
        file.problem(f"{key}.parameters", f"path parameter {name!r} is not in {path}")

    def pattern(match: re.Match[str]) -> str:
        name = match.group(1)
        parameter = declared.get(name)
        if not _PARAM_NAME.fullmatch(name) or parameter is None:
            file.problem(f"{key}.path", f"{{{name}}} needs a parameter with in: path")
            return match.group(0)
        if parameter.get("required") is not True:
            file.problem(f"{key}.parameters", f"path parameter {name!r} must be required: true")
        schema = parameter.get("schema")
        regex = schema.get("pattern") if isinstance(schema, dict) else None
        if regex is None:
            return match.group(0)
        if not isinstance(regex, str) or not (regex.startswith("^") and regex.endswith("$")):
            file.problem(
                f"{key}.parameters",
                f"the pattern of {name!r} must be anchored (^...$): the server matches the "
                "whole path segment with it",
            )
            return match.group(0)
        return f"{{{name}:{regex[1:-1]}}}"

    return _PATH_PARAM.sub(pattern, path)


def _check_responses(responses: object, file: _File, key: str) -> None:
    if not isinstance(responses, dict) or not responses:
        file.problem(key, "must be a mapping of HTTP status -> response")
        return
    for status, response in responses.items():
        if not _STATUS.fullmatch(status):
            file.problem(f"{key}.{status}", 'keys are HTTP statuses such as "200"')
        elif not isinstance(response, dict):
            file.problem(f"{key}.{status}", "must be an OpenAPI response object")
    if not any(status.startswith("2") for status in responses):
        file.problem(key, "declares no 2xx answer")


def decide(
    declared: Declarations, scopes: ScopeRules, cache: CacheRules
) -> tuple[OwnEndpoints, list[Problem]]:
    """Check the declarations together and against the policy files; the IR of the endpoints."""
    problems: list[Problem] = []
    paths: dict[tuple[str, str], str] = {}
    ids: dict[str, str] = {}
    invalidated = {group for rule in cache.invalidations for group in rule.groups}
    known_groups = cache.groups | invalidated
    for declaration in declared.endpoints:
        row = declaration.row
        here = f"{declaration.file} {declaration.key}"
        found: list[str] = []
        first = paths.setdefault((row.method, row.path), here)
        if first != here:
            found.append(f"{row.method} {row.path} is declared by {first} too")
        first = ids.setdefault(row.operation_id, here)
        if first != here:
            found.append(f"operation_id {row.operation_id} is declared by {first} too")
        if row.scope is not None and row.scope not in scopes.scopes:
            found.append(f"scope {row.scope!r} is not declared in scopes.toml [scopes]")
        if row.cache_group and row.cache_group not in known_groups:
            found.append(
                f"cache group {row.cache_group!r} is unknown: no [[rule]] or [[invalidate]] of "
                "cache.toml names it, so no write would ever make its answers stale"
            )
        problems.extend(Problem(declaration.file, f"{declaration.key}: {text}") for text in found)
    operations = sorted(
        (OwnOperation(d.row, d.openapi, f"{d.file} {d.key}") for d in declared.endpoints),
        key=lambda operation: (operation.row.path, operation.row.method),
    )
    rendered = {name: schema for name, (_, schema) in sorted(declared.schemas.items())}
    text = json.dumps(rendered, sort_keys=True, ensure_ascii=False)
    return OwnEndpoints(tuple(operations), text), problems
