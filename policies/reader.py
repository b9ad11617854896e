"""Reading a policy file: TOML tables checked key by key, every problem kept for one report.

Shared by the loaders in :mod:`slurmgate.policies.rules` and :mod:`slurmgate.policies.cache_rules`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from slurmgate.policies.selectors import OperationSelector, PathPattern

__all__ = ["POLICY_DIR", "SELECTOR_KEYS", "PolicyError", "TableReader"]

#: Where the policy files ship: next to this module (package data).
POLICY_DIR = Path(__file__).resolve().parent

#: The keys with which rules of every policy file pick operations.
SELECTOR_KEYS = frozenset({"namespace", "path", "methods", "except"})

_E = TypeVar("_E", bound=StrEnum)
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class PolicyError(Exception):
    """One or more policy files are invalid; ``problems`` has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class TableReader:
    """Reads one TOML file's entries, remembering every problem instead of stopping at the first.

    Each method reports what is wrong (file, entry, problem) and returns a harmless stand-in, so
    the loader carries on and :meth:`finish` raises once with everything.
    """

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.problems: list[str] = []
        self.data: dict[str, object] = {}
        try:
            self.data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            self.problems.append(f"{self.name}: cannot read: {exc}")

    def problem(self, where: str, message: str) -> None:
        """Remember a problem of entry ``where``."""
        self.problems.append(f"{self.name}: {where}: {message}")

    def tables(self, key: str) -> list[tuple[str, dict[str, object]]]:
        """The ``[[key]]`` tables, each with its name for messages (``[[rule]] #3``)."""
        raw = self.data.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            self.problem(key, "must be an array of tables ([[" + key + "]])")
            return []
        return [(f"[[{key}]] #{index}", item) for index, item in enumerate(raw, start=1)]

    def check_keys(
        self, where: str, table: Mapping[str, object], allowed: AbstractSet[str]
    ) -> None:
        """Report every key of ``table`` that is not ``allowed``."""
        for key in sorted(set(table) - allowed):
            self.problem(where, f"unknown key {key!r}")

    def string(self, where: str, table: Mapping[str, object], key: str, *, required: bool) -> str:
        """A non-empty string value, or "" when it is absent or wrong."""
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
        """A boolean value, or ``default`` when it is absent or wrong."""
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem(where, f"{key!r} must be true or false")
            return default
        return value

    def selector(
        self, where: str, table: Mapping[str, object], *, required: bool
    ) -> OperationSelector:
        """The selector keys (``namespace``, ``path``, ``methods``, ``except``) of a rule."""
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
            for unknown in sorted(upper - _HTTP_METHODS):
                self.problem(where, f"unknown method {unknown!r}")
            methods = upper & _HTTP_METHODS
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
        """A member of ``kind`` by value; ``default`` None makes the key required."""
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
        """Raise :class:`PolicyError` with every problem, if there were any."""
        if self.problems:
            raise PolicyError(self.problems)
