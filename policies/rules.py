"""Load and validate the policy files: ``scopes.toml``, ``cache.toml`` and ``accounts.toml``.

Every problem in a file is collected and raised together in one :class:`PolicyError` whose lines
name the file, the entry and the problem. Matching lives here too, as pure functions over the loaded
rules, so that codegen and the server agree on what a rule means. The file formats are described in
``docs/codegen.md``. ``cache.toml`` is loaded by :mod:`slurmgate.policies.cache_rules`; its names
are re-exported here so every policy file is loaded from one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slurmgate.policies.cache_rules import CacheRule, CacheRules, InvalidateRule, load_cache_rules
from slurmgate.policies.reader import POLICY_DIR, SELECTOR_KEYS, PolicyError, TableReader
from slurmgate.policies.routing import ValueForm, WhenAbsent
from slurmgate.policies.selectors import FieldPattern, OperationSelector

__all__ = [
    "POLICY_DIR",
    "AccountRules",
    "BodyRule",
    "CacheRule",
    "CacheRules",
    "InvalidateRule",
    "LookupRule",
    "ParamRule",
    "PolicyError",
    "ScopeRule",
    "ScopeRules",
    "load_account_rules",
    "load_cache_rules",
    "load_scope_rules",
]

_SCOPE_NAME = re.compile(r"^[a-z][a-z_]*(:[a-z][a-z_]*)+$")


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


def load_scope_rules(path: Path = POLICY_DIR / "scopes.toml") -> ScopeRules:
    """Load ``scopes.toml``; raises :class:`PolicyError` listing every problem found."""
    reader = TableReader(path)
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
        reader.check_keys(where, table, SELECTOR_KEYS | {"scope", "mutating", "why"})
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


def load_account_rules(path: Path = POLICY_DIR / "accounts.toml") -> AccountRules:
    """Load ``accounts.toml``; raises :class:`PolicyError` listing every problem found."""
    reader = TableReader(path)
    detect_text = reader.string("top level", reader.data, "detect", required=True)
    try:
        detect = re.compile(detect_text or "$^", re.IGNORECASE)
    except re.error as exc:
        reader.problem("top level", f"'detect' is not a regular expression: {exc}")
        detect = re.compile("$^")
    value_keys = {"account", "form", "when_absent", "why"}

    body: list[BodyRule] = []
    for where, table in reader.tables("body"):
        reader.check_keys(where, table, SELECTOR_KEYS | value_keys | {"field"})
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
        reader.check_keys(where, table, SELECTOR_KEYS | value_keys | {"in", "name"})
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
        reader.check_keys(where, table, SELECTOR_KEYS | {"entity", "key", "why"})
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
    reader: TableReader, where: str, table: Mapping[str, object]
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
