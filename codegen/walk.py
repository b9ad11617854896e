"""Walk a request body schema down to its string fields, the only ones that can name an account."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["StringField", "string_fields"]

_REF_PREFIX = "#/components/schemas/"


@dataclass(frozen=True, slots=True, order=True)
class StringField:
    """A free-text string field of a body: its JSON path (``"[]"`` for array items)."""

    path: tuple[str, ...]


def string_fields(schemas: Mapping[str, Any], root: str) -> list[StringField]:
    """Every path in component ``root`` that holds a free string (not an enum), sorted, each once.

    References are followed through ``schemas`` (``components/schemas``); a reference already
    being walked on the current path is not entered again, so recursive schemas end. Every branch
    of ``anyOf``/``oneOf``/``allOf`` is walked at the same path, since a client may send any.
    """
    found: set[StringField] = set()
    _walk(schemas, {"$ref": _REF_PREFIX + root}, (), frozenset(), found)
    return sorted(found)


def _walk(
    schemas: Mapping[str, Any],
    schema: Mapping[str, Any],
    path: tuple[str, ...],
    active: frozenset[str],
    found: set[StringField],
) -> None:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix(_REF_PREFIX)
        target = schemas.get(name)
        if name in active or not isinstance(target, Mapping):
            return
        _walk(schemas, target, path, active | {name}, found)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            if isinstance(branch, Mapping):
                _walk(schemas, branch, path, active, found)
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema:
        found.add(StringField(path))
    elif kind == "array" and isinstance(schema.get("items"), Mapping):
        _walk(schemas, schema["items"], (*path, "[]"), active, found)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for name in sorted(properties):
            child = properties[name]
            if isinstance(child, Mapping):
                _walk(schemas, child, (*path, name), active, found)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        _walk(schemas, extra, (*path, "*"), active, found)
