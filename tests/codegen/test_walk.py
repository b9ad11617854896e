"""The body walker that finds every free string field a request can carry."""

from __future__ import annotations

from typing import Any

from slurmgate.codegen.walk import string_fields

REF = "#/components/schemas/"


def _paths(schemas: dict[str, Any], root: str) -> list[str]:
    return [".".join(field.path) for field in string_fields(schemas, root)]


def test_follows_references_arrays_and_union_branches() -> None:
    schemas = {
        "submit": {
            "type": "object",
            "properties": {
                "job": {"$ref": REF + "job"},
                "jobs": {"type": "array", "items": {"$ref": REF + "job"}},
                "script": {"type": "string"},
            },
        },
        "job": {
            "type": "object",
            "properties": {
                "account": {"type": "string"},
                "flags": {"type": "array", "items": {"type": "string", "enum": ["A", "B"]}},
                "environment": {"$ref": REF + "strings"},
                "limit": {"anyOf": [{"$ref": REF + "number"}, {"type": "integer"}]},
                "name": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        },
        "strings": {"type": "array", "items": {"type": "string"}},
        "number": {"type": "object", "properties": {"set": {"type": "boolean"}}},
    }
    assert _paths(schemas, "submit") == [
        "job.account",
        "job.environment.[]",
        "job.name",
        "jobs.[].account",
        "jobs.[].environment.[]",
        "jobs.[].name",
        "script",
    ]


def test_recursive_schemas_end() -> None:
    schemas = {
        "assoc": {
            "type": "object",
            "properties": {
                "account": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": REF + "assoc"}},
            },
        }
    }
    assert _paths(schemas, "assoc") == ["account"]


def test_dangling_reference_is_skipped() -> None:
    schemas = {"a": {"type": "object", "properties": {"b": {"$ref": REF + "missing"}}}}
    assert _paths(schemas, "a") == []
