"""Load and validate the policy files: ``scopes.toml``, ``cache.toml`` and ``accounts.toml``.

Every problem in a file is collected and raised together in one :class:`PolicyError` whose lines
name the file, the entry and the problem. Matching lives here too, as pure functions over the loaded
rules, so that codegen and the server agree on what a rule means. The file formats are described in
``docs/codegen.md``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from slurmgate.policies.routing import CachePolicy, ValueForm, WhenAbsent
from slurmgate.policies.selectors import FieldPattern, OperationSelector, PathPattern

__all__ = [
    "POLICY_DIR",
    "AccountRules",
    "BodyRule",
    "CacheRule",
    "CacheRules",
    "LookupRule",
    "ParamRule",
    "PolicyError",
    "ScopeRule",
    "ScopeRules",
    "load_account_rules",
    "load_cache_rules",
    "load_scope_rules",
]

#: Where the policy files ship: next to this module (package data).
POLICY_DIR = Path(__file__).resolve().parent

_E = TypeVar("_E", CachePolicy, ValueForm, WhenAbsent)
_SCOPE_NAME = re.compile(r"^[a-z][a-z_]*(:[a-z][a-z_]*)+$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class PolicyError(Exception):
    """One or more policy files are invalid; ``problems`` has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """Operations picked by ``where`` need ``scope``; ``mutating`` marks GETs that change state."""

    where: OperationSelector
    scope: str
    mutating: bool
    origin: str  # "scopes.toml rule 3", for messages


@dataclass(frozen=True, slots=True)
class ScopeRules:
    """The declared scopes (name -> description) and the rules that hand them out."""

    scopes: Mapping[str, str]
    rules: tuple[ScopeRule, ...]

    def matching(self, namespace: str, segments: tuple[str, ...], method: str) -> list[ScopeRule]:
        """Every rule that picks the operation; more than one must agree (see docs)."""
        return [rule for rule in self.rules if rule.where.matches(namespace, segments, method)]


@dataclass(frozen=True, slots=True)
class CacheRule:
    """Non-mutating operations picked by ``where`` are cached with ``policy``."""

    where: OperationSelector
    policy: CachePolicy
    origin: str


@dataclass(frozen=True, slots=True)
class CacheRules:
    """Cache rules plus the policy for a non-mutating operation that no rule picks."""

    default: CachePolicy
    rules: tuple[CacheRule, ...]

    def matching(self, namespace: str, segments: tuple[str, ...], method: str) -> list[CacheRule]:
        """Every rule that picks the operation; more than one must agree."""
        return [rule for rule in self.rules if rule.where.matches(namespace, segments, method)]


@dataclass(frozen=True, slots=True)
class BodyRule:
    """Classifies request-body fields: an account location, or (``account`` false) not one."""

    where: OperationSelector
    field: FieldPattern
    account: bool
    form: ValueForm
    when_absent: WhenAbsent
    origin: str


@dataclass(frozen=True, slots=True)
class ParamRule:
    """Classifies a path or query parameter, like :class:`BodyRule` does body fields."""

    where: OperationSelector
    location: str  # "path" or "query"
    name: str
    account: bool
    form: ValueForm
    when_absent: WhenAbsent
    origin: str


@dataclass(frozen=True, slots=True)
class LookupRule:
    """Operations whose accounts are those of an existing entity, found by a key in the request."""

    where: OperationSelector
    entity: str
    key: tuple[str, ...]  # ("path", "job_id") or ("body", "jobs", "[]")
    origin: str


@dataclass(frozen=True, slots=True)
class AccountRules:
    """Everything ``accounts.toml`` says; body and param rules apply first match first."""

    detect: re.Pattern[str]
    body: tuple[BodyRule, ...]
    params: tuple[ParamRule, ...]
    lookups: tuple[LookupRule, ...]

    def classify_field(
        self, namespace: str, segments: tuple[str, ...], method: str, field: tuple[str, ...]
    ) -> BodyRule | None:
        """The first body rule that picks this field of this operation, if any."""
        for rule in self.body:
            if rule.where.matches(namespace, segments, method) and rule.field.matches(field):
                return rule
        return None

    def classify_param(
        self, namespace: str, segments: tuple[str, ...], method: str, location: str, name: str
    ) -> ParamRule | None:
        """The first param rule that picks this parameter of this operation, if any."""
        for rule in self.params:
            if (
                rule.location == location
                and rule.name == name
                and rule.where.matches(namespace, segments, method)
            ):
                return rule
        return None

    def lookups_for(
        self, namespace: str, segments: tuple[str, ...], method: str
    ) -> list[LookupRule]:
        """Every lookup rule that picks the operation, in file order."""
        return [rule for rule in self.lookups if rule.where.matches(namespace, segments, method)]


class _Reader:
    """Reads one TOML file's entries, remembering every problem instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.problems: list[str] = []
        self.data: dict[str, object] = {}
        try:
            self.data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            self.problems.append(f"{self.name}: cannot read: {exc}")

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.name}: {where}: {message}")

    def tables(self, key: str) -> list[tuple[str, dict[str, object]]]:
        raw = self.data.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            self.problem(key, "must be an array of tables ([[" + key + "]])")
            return []
        return [(f"[[{key}]] #{index}", item) for index, item in enumerate(raw, start=1)]

    def check_keys(self, where: str, table: Mapping[str, object], allowed: set[str]) -> None:
        for key in sorted(set(table) - allowed):
            self.problem(where, f"unknown key {key!r}")

    def string(self, where: str, table: Mapping[str, object], key: str, *, required: bool) -> str:
        value = table.get(key)
        if value is None:
            if required:
                self.problem(where, f"missing {key!r}")
            return ""
        if not isinstance(value, str) or not value:
            self.problem(where, f"{key!r} must be a non-empty string")
            return ""
        return value

    def boolean(self, where: str, table: Mapping[str, object], key: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem(where, f"{key!r} must be true or false")
            return default
        return value

    def selector(
        self, where: str, table: Mapping[str, object], *, required: bool
    ) -> OperationSelector:
        namespace = self.string(where, table, "namespace", required=required) or None
        path_text = self.string(where, table, "path", required=required)
        path = PathPattern.parse(path_text) if path_text else None
        methods: frozenset[str] | None = None
        raw = table.get("methods")
        if raw is None:
            if required:
                self.problem(where, "missing 'methods'")
        elif not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
            self.problem(where, "'methods' must be a non-empty list of HTTP methods")
        else:
            upper = frozenset(str(m).upper() for m in raw)
            for unknown in sorted(upper - _METHODS):
                self.problem(where, f"unknown method {unknown!r}")
            methods = upper & _METHODS
        excluded: list[PathPattern] = []
        raw_except = table.get("except", [])
        if not isinstance(raw_except, list) or not all(isinstance(p, str) for p in raw_except):
            self.problem(where, "'except' must be a list of path patterns")
        else:
            excluded = [PathPattern.parse(str(pattern)) for pattern in raw_except]
            if excluded and path is None:
                self.problem(where, "'except' needs a 'path' to make exceptions to")
        return OperationSelector(namespace, path, methods, tuple(excluded))

    def choice(
        self, where: str, table: Mapping[str, object], key: str, kind: type[_E], default: _E | None
    ) -> _E:
        value = table.get(key)
        if value is None:
            if default is None:
                self.problem(where, f"missing {key!r}")
                return next(iter(kind))
            return default
        try:
            if not isinstance(value, str):
                raise ValueError(value)  # reported like an unknown name
            return kind(value)
        except ValueError:
            names = ", ".join(member.value for member in kind)
            self.problem(where, f"{key!r} is {value!r}, expected one of {names}")
            return default if default is not None else next(iter(kind))

    def finish(self) -> None:
        if self.problems:
            raise PolicyError(self.problems)


_SELECTOR_KEYS = {"namespace", "path", "methods", "except"}


def load_scope_rules(path: Path = POLICY_DIR / "scopes.toml") -> ScopeRules:
    """Load ``scopes.toml``; raises :class:`PolicyError` listing every problem found."""
    reader = _Reader(path)
    scopes: dict[str, str] = {}
    declared = reader.data.get("scopes", {})
    if not isinstance(declared, dict):
        reader.problem("[scopes]", "must be a table of scope name = description")
        declared = {}
    for name, description in declared.items():
        if not _SCOPE_NAME.match(name):
            reader.problem(f"[scopes] {name!r}", "scope names look like 'area:thing:verb'")
        if not isinstance(description, str) or not description:
            reader.problem(f"[scopes] {name!r}", "needs a description")
        scopes[name] = str(description)
    rules: list[ScopeRule] = []
    for where, table in reader.tables("rule"):
        reader.check_keys(where, table, _SELECTOR_KEYS | {"scope", "mutating", "why"})
        selector = reader.selector(where, table, required=True)
        scope = reader.string(where, table, "scope", required=True)
        if scope and scope not in scopes:
            reader.problem(where, f"scope {scope!r} is not declared in [scopes]")
        mutating = reader.boolean(where, table, "mutating", default=False)
        if mutating and not reader.string(where, table, "why", required=False):
            reader.problem(where, "a rule that marks operations mutating must say 'why'")
        rules.append(ScopeRule(selector, scope, mutating, f"{path.name} {where}"))
    reader.check_keys("top level", reader.data, {"scopes", "rule"})
    reader.finish()
    return ScopeRules(scopes, tuple(rules))


def load_cache_rules(path: Path = POLICY_DIR / "cache.toml") -> CacheRules:
    """Load ``cache.toml``; raises :class:`PolicyError` listing every problem found."""
    reader = _Reader(path)
    default = reader.choice("top level", reader.data, "default", CachePolicy, None)
    rules: list[CacheRule] = []
    for where, table in reader.tables("rule"):
        reader.check_keys(where, table, _SELECTOR_KEYS | {"policy"})
        selector = reader.selector(where, table, required=True)
        policy = reader.choice(where, table, "policy", CachePolicy, None)
        rules.append(CacheRule(selector, policy, f"{path.name} {where}"))
    reader.check_keys("top level", reader.data, {"default", "rule"})
    reader.finish()
    return CacheRules(default, tuple(rules))


def load_account_rules(path: Path = POLICY_DIR / "accounts.toml") -> AccountRules:
    """Load ``accounts.toml``; raises :class:`PolicyError` listing every problem found."""
    reader = _Reader(path)
    detect_text = reader.string("top level", reader.data, "detect", required=True)
    try:
        detect = re.compile(detect_text or "$^", re.IGNORECASE)
    except re.error as exc:
        reader.problem("top level", f"'detect' is not a regular expression: {exc}")
        detect = re.compile("$^")
    value_keys = {"account", "form", "when_absent", "why"}

    body: list[BodyRule] = []
    for where, table in reader.tables("body"):
        reader.check_keys(where, table, _SELECTOR_KEYS | value_keys | {"field"})
        selector = reader.selector(where, table, required=False)
        field_text = reader.string(where, table, "field", required=True)
        try:
            field = FieldPattern.parse(field_text or "**")
        except ValueError as exc:
            reader.problem(where, str(exc))
            field = FieldPattern(("**",))
        account, form, when_absent = _account_value(reader, where, table)
        body.append(BodyRule(selector, field, account, form, when_absent, f"{path.name} {where}"))

    params: list[ParamRule] = []
    for where, table in reader.tables("param"):
        reader.check_keys(where, table, _SELECTOR_KEYS | value_keys | {"in", "name"})
        selector = reader.selector(where, table, required=False)
        location = reader.string(where, table, "in", required=True)
        if location and location not in {"path", "query"}:
            reader.problem(where, f"'in' is {location!r}, expected path or query")
        name = reader.string(where, table, "name", required=True)
        account, form, when_absent = _account_value(reader, where, table)
        params.append(
            ParamRule(selector, location, name, account, form, when_absent, f"{path.name} {where}")
        )

    lookups: list[LookupRule] = []
    for where, table in reader.tables("lookup"):
        reader.check_keys(where, table, _SELECTOR_KEYS | {"entity", "key", "why"})
        selector = reader.selector(where, table, required=True)
        entity = reader.string(where, table, "entity", required=True)
        key_text = reader.string(where, table, "key", required=True)
        origin, _, rest = key_text.partition(":")
        key: tuple[str, ...] = ()
        if origin in {"path", "query"} and rest:
            key = (origin, rest)
        elif origin == "body" and rest:
            try:
                key = ("body", *FieldPattern.parse(rest).tokens)
            except ValueError as exc:
                reader.problem(where, str(exc))
        elif key_text:
            reader.problem(
                where, f"'key' is {key_text!r}, expected path:NAME, query:NAME or body:FIELD"
            )
        lookups.append(LookupRule(selector, entity, key, f"{path.name} {where}"))

    reader.check_keys("top level", reader.data, {"detect", "body", "param", "lookup"})
    reader.finish()
    return AccountRules(detect, tuple(body), tuple(params), tuple(lookups))


def _account_value(
    reader: _Reader, where: str, table: Mapping[str, object]
) -> tuple[bool, ValueForm, WhenAbsent]:
    account = reader.boolean(where, table, "account", default=True)
    form = reader.choice(where, table, "form", ValueForm, ValueForm.NAME)
    when_absent = reader.choice(where, table, "when_absent", WhenAbsent, WhenAbsent.NOTHING)
    if not account:
        if not reader.string(where, table, "why", required=False):
            reader.problem(where, "a rule saying a field is not an account must say 'why'")
        if "form" in table or "when_absent" in table:
            reader.problem(where, "'form' and 'when_absent' only apply to account fields")
    return account, form, when_absent
