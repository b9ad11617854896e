"""Each spec fix on a small hand-made document shaped like the slurmrestd quirk it repairs."""

from __future__ import annotations

import copy
from typing import Any

from slurmgate.codegen.fixes import (
    accept_plain_numbers,
    apply_fixes,
    drop_unknown_required,
    fix_boolean_defaults,
    hoist_inline_request_bodies,
    hoist_inline_tri_state,
    is_tri_state,
)

REF = "#/components/schemas/"


def _tri_state(number_format: str = "int32", **extra: object) -> dict[str, Any]:
    number_type = "number" if number_format == "double" else "integer"
    return {
        "type": "object",
        "properties": {
            "infinite": {"type": "boolean"},
            "number": {"type": number_type, "format": number_format},
            "set": {"type": "boolean"},
        },
        **extra,
    }


def _document(schemas: dict[str, Any], paths: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"openapi": "3.0.3", "components": {"schemas": schemas}, "paths": paths or {}}


def test_tri_state_is_recognised_by_shape_not_name() -> None:
    assert is_tri_state(_tri_state())
    assert not is_tri_state({"$ref": REF + "v0.0.44_uint32_no_val_struct"})
    assert not is_tri_state({"type": "object", "properties": {"set": {}, "number": {}}})


def test_references_to_tri_state_also_accept_a_plain_number() -> None:
    document = _document(
        {
            "v0.0.44_uint32_no_val_struct": _tri_state("int32"),
            "v0.0.44_float64_no_val_struct": _tri_state("double"),
            "v0.0.44_job_desc_msg": {
                "type": "object",
                "properties": {
                    "time_limit": {
                        "$ref": REF + "v0.0.44_uint32_no_val_struct",
                        "description": "d",
                    },
                    "billing": {"$ref": REF + "v0.0.44_float64_no_val_struct"},
                    "limits": {
                        "type": "array",
                        "items": {"$ref": REF + "v0.0.44_uint32_no_val_struct"},
                    },
                    "name": {"type": "string"},
                },
            },
        }
    )
    report = accept_plain_numbers("v0.0.44", document)
    properties = document["components"]["schemas"]["v0.0.44_job_desc_msg"]["properties"]
    assert properties["time_limit"] == {
        "description": "d",
        "anyOf": [
            {"$ref": REF + "v0.0.44_uint32_no_val_struct"},
            {"type": "integer", "format": "int32"},
        ],
    }
    assert properties["billing"]["anyOf"][1] == {"type": "number", "format": "double"}
    assert properties["limits"]["items"]["anyOf"][1]["type"] == "integer"
    assert properties["name"] == {"type": "string"}
    assert report.notes == ["3 tri-state fields also accept a plain number"]

    again = copy.deepcopy(document)
    assert accept_plain_numbers("v0.0.44", again).notes == []
    assert again == document  # running twice changes nothing


def test_inline_tri_state_structs_become_one_shared_component() -> None:
    document = _document(
        {
            "v0.0.41_openapi_job_info_resp": {
                "type": "object",
                "properties": {
                    "priority": {**_tri_state("int32"), "description": "Priority"},
                    "old": {**_tri_state("int32"), "description": "Old", "deprecated": True},
                    "memory": _tri_state("int64"),
                },
            }
        }
    )
    report = hoist_inline_tri_state("v0.0.41", document)
    schemas = document["components"]["schemas"]
    properties = schemas["v0.0.41_openapi_job_info_resp"]["properties"]
    assert properties["priority"] == {
        "$ref": REF + "v0.0.41_uint32_no_val_struct",
        "description": "Priority",
    }
    assert properties["old"]["deprecated"] is True
    assert properties["memory"]["$ref"] == REF + "v0.0.41_uint64_no_val_struct"
    assert is_tri_state(schemas["v0.0.41_uint32_no_val_struct"])
    assert "description" not in schemas["v0.0.41_uint32_no_val_struct"]
    assert report.problems == []


def test_inline_request_bodies_are_hoisted_under_the_names_other_versions_use() -> None:
    body = {"type": "object", "properties": {"job": {"type": "object"}}}
    operation = {
        "operationId": "slurm_v0041_post_job_submit",
        "requestBody": {"content": {"application/json": {"schema": copy.deepcopy(body)}}},
    }
    other = {
        "operationId": "slurm_v0041_post_new_thing",
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
    }
    document = _document(
        {},
        {"/slurm/v0.0.41/job/submit": {"post": operation}, "/slurm/v0.0.41/new": {"post": other}},
    )
    hoist_inline_request_bodies("v0.0.41", document)
    schemas = document["components"]["schemas"]
    assert schemas["v0.0.41_job_submit_req"] == body
    media = operation["requestBody"]["content"]["application/json"]  # type: ignore[index]
    assert media["schema"] == {"$ref": REF + "v0.0.41_job_submit_req"}
    assert "v0.0.41_slurm_post_new_thing_body" in schemas  # no known name: derived from the id


def test_numeric_boolean_defaults_become_booleans_and_other_mismatches_are_reported() -> None:
    document = _document(
        {
            "v0.0.40_uint32_no_val": {
                "type": "object",
                "properties": {
                    "infinite": {"type": "boolean", "default": 0},
                    "ratio": {"type": "boolean", "default": 1.0},
                    "count": {"type": "integer", "default": "many"},
                },
            }
        }
    )
    report = fix_boolean_defaults("v0.0.40", document)
    properties = document["components"]["schemas"]["v0.0.40_uint32_no_val"]["properties"]
    assert properties["infinite"]["default"] is False
    assert properties["ratio"]["default"] is True
    assert properties["count"]["default"] == "many"
    assert len(report.problems) == 1
    assert "integer with default 'many'" in report.problems[0]


def test_required_field_paths_are_dropped_and_real_names_kept() -> None:
    document = _document(
        {
            "v0.0.44_job_res": {
                "type": "object",
                "required": ["select_type", "nodes/count", "cpus"],
                "properties": {"select_type": {}, "cpus": {}, "nodes": {}},
            }
        }
    )
    drop_unknown_required("v0.0.44", document)
    assert document["components"]["schemas"]["v0.0.44_job_res"]["required"] == [
        "select_type",
        "cpus",
    ]


def test_empty_required_lists_are_dropped() -> None:
    document: dict[str, Any] = {
        "components": {
            "schemas": {
                "v0.0.45_account_short": {"type": "object", "properties": {}, "required": []},
                "v0.0.45_only_paths": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "required": ["nodes/count"],
                },
                "v0.0.45_kept": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "required": ["a"],
                },
            }
        }
    }
    report = drop_unknown_required("v0.0.45", document)
    schemas = document["components"]["schemas"]
    assert "required" not in schemas["v0.0.45_account_short"]  # OpenAPI 3.0: non-empty
    assert "required" not in schemas["v0.0.45_only_paths"]
    assert schemas["v0.0.45_kept"]["required"] == ["a"]
    assert "2 empty required lists dropped" in report.notes


def test_apply_fixes_on_v0_0_41_shape_ends_with_plain_numbers_allowed() -> None:
    """Order matters: inline structs are hoisted first, then every reference is widened."""
    body = {
        "type": "object",
        "properties": {"job": {"type": "object", "properties": {"time_limit": _tri_state()}}},
    }
    document = _document(
        {},
        {
            "/slurm/v0.0.41/job/submit": {
                "post": {
                    "operationId": "slurm_v0041_post_job_submit",
                    "requestBody": {"content": {"application/json": {"schema": body}}},
                }
            }
        },
    )
    report = apply_fixes("v0.0.41", document)
    assert report.problems == []
    job = document["components"]["schemas"]["v0.0.41_job_submit_req"]["properties"]["job"]
    assert job["properties"]["time_limit"]["anyOf"] == [
        {"$ref": REF + "v0.0.41_uint32_no_val_struct"},
        {"type": "integer", "format": "int32"},
    ]
