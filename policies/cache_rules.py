"""Load ``cache.toml``: cache policies and groups of reads, and what each mutation invalidates.

The format is described in ``docs/codegen.md``; codegen renders the result into every routing table
(``Route.cache``, ``Route.cache_group``, ``Route.invalidates``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slurmgate.policies.reader import POLICY_DIR, SELECTOR_KEYS, TableReader
from slurmgate.policies.routing import CachePolicy
from slurmgate.policies.selectors import OperationSelector

__all__ = ["CacheRule", "CacheRules", "InvalidateRule", "load_cache_rules"]

_GROUP_NAME = re.compile(r"[a-z][a-z0-9-]*")
_CACHED_POLICIES = frozenset(
    member.value for member in CachePolicy if member is not CachePolicy.NONE
)


@dataclass(frozen=True, slots=True)
class CacheRule:
    """Non-mutating operations picked by ``where`` are cached with ``policy`` in cache ``group``.

    ``group`` is "" exactly when ``policy`` is none: what is never cached needs no invalidation.
    """

    where: OperationSelector
    policy: CachePolicy
    group: str
    origin: str


@dataclass(frozen=True, slots=True)
class InvalidateRule:
    """Mutating operations picked by ``where`` make the cached reads of ``groups`` stale."""

    where: OperationSelector
    groups: tuple[str, ...]
    origin: str


@dataclass(frozen=True, slots=True)
class CacheRules:
    """Cache rules, the policy for a non-mutating operation no rule picks, and invalidations."""

    default: CachePolicy
    rules: tuple[CacheRule, ...]
    invalidations: tuple[InvalidateRule, ...]

    @property
    def groups(self) -> frozenset[str]:
        """Every cache group some rule defines; invalidate rules may name only these."""
        return frozenset(rule.group for rule in self.rules if rule.group)

    def matching(self, namespace: str, segments: tuple[str, ...], method: str) -> list[CacheRule]:
        """Every rule that picks the operation; more than one must agree."""
        return [rule for rule in self.rules if rule.where.matches(namespace, segments, method)]

    def invalidating(
        self, namespace: str, segments: tuple[str, ...], method: str
    ) -> list[InvalidateRule]:
        """Every invalidate rule that picks the operation; their groups add up."""
        return [
            rule for rule in self.invalidations if rule.where.matches(namespace, segments, method)
        ]


def load_cache_rules(
    path: Path = POLICY_DIR / "cache.toml", *, own_groups: frozenset[str] = frozenset()
) -> CacheRules:
    """Load ``cache.toml``; raises :class:`PolicyError` listing every problem found.

    ``own_groups`` are the cache groups of the gateway's own endpoints (``policies/endpoints/``),
    which ``[[invalidate]]`` tables may name beside the groups of its ``[[rule]]`` tables.
    """
    reader = TableReader(path)
    default = reader.choice("top level", reader.data, "default", CachePolicy, None)
    rules: list[CacheRule] = []
    for where, table in reader.tables("rule"):
        reader.check_keys(where, table, SELECTOR_KEYS | {"policy", "group"})
        selector = reader.selector(where, table, required=True)
        raw_policy = table.get("policy")
        policy = reader.choice(where, table, "policy", CachePolicy, None)
        group = ""
        # A policy choice() refused says nothing about whether a group belongs here.
        if raw_policy == CachePolicy.NONE.value and "group" in table:
            reader.problem(where, "policy 'none' caches nothing, so the rule takes no 'group'")
        elif isinstance(raw_policy, str) and raw_policy in _CACHED_POLICIES:
            group = _group_name(reader, where, table.get("group"), "'group'")
        rules.append(CacheRule(selector, policy, group, f"{path.name} {where}"))
    defined = {rule.group for rule in rules if rule.group} | own_groups
    invalidations: list[InvalidateRule] = []
    for where, table in reader.tables("invalidate"):
        reader.check_keys(where, table, SELECTOR_KEYS | {"groups", "why"})
        selector = reader.selector(where, table, required=True)
        why = reader.string(where, table, "why", required=False)
        groups: list[str] = []
        raw = table.get("groups")
        if raw is None:
            reader.problem(where, "missing 'groups'")
        elif not isinstance(raw, list):
            reader.problem(where, "'groups' must be a list of cache group names")
        else:
            for item in raw:
                name = _group_name(reader, where, item, "'groups' item")
                if name and name not in defined:
                    reader.problem(
                        where,
                        f"group {name!r} is not the 'group' of any [[rule]] or own endpoint",
                    )
                elif name:
                    groups.append(name)
            if not raw and not why:
                reader.problem(where, "a rule saying operations invalidate nothing must say 'why'")
        invalidations.append(
            InvalidateRule(selector, tuple(sorted(set(groups))), f"{path.name} {where}")
        )
    reader.check_keys("top level", reader.data, {"default", "rule", "invalidate"})
    reader.finish()
    return CacheRules(default, tuple(rules), tuple(invalidations))


def _group_name(reader: TableReader, where: str, value: object, what: str) -> str:
    """A checked cache group name, or "" after reporting why it is not one."""
    if value is None:
        reader.problem(where, f"missing {what}: every cached operation belongs to a cache group")
        return ""
    if not isinstance(value, str) or not _GROUP_NAME.fullmatch(value):
        reader.problem(
            where, f"{what} is {value!r}, expected a cache group name like 'jobs' ([a-z][a-z0-9-]*)"
        )
        return ""
    return value
