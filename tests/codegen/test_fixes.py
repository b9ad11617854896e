"""Each spec fix on a small hand-made document shaped like the slurmrestd quirk it repairs."""

from __future__ import annotations

import copy
from typing import Any

from slurmgate.codegen.fixes import (
    accept_plain_numbers,
    answers_may_omit_data,
    apply_fixes,
    drop_unknown_required,
    error_answers_are_envelopes,
    fix_boolean_defaults,
    hoist_inline_request_bodies,
    hoist_inline_tri_state,
    is_tri_state,
    not_modified_answers,
    nullable_job_resources,
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


def test_job_resources_may_be_null_by_reference_or_inline() -> None:
    document = _document(
        {
            "v0.0.45_job_info": {
                "type": "object",
                "properties": {
                    "job_resources": {"$ref": REF + "v0.0.45_job_res", "description": "d"},
                    "name": {"type": "string"},
                },
            },
            "v0.0.41_openapi_job_info_resp": {
                "type": "object",
                "properties": {
                    "jobs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"job_resources": {"type": "object", "properties": {}}},
                        },
                    }
                },
            },
        }
    )
    report = nullable_job_resources("v0.0.45", document)
    schemas = document["components"]["schemas"]
    assert schemas["v0.0.45_job_info"]["properties"]["job_resources"] == {
        "anyOf": [{"$ref": REF + "v0.0.45_job_res"}],
        "nullable": True,
        "description": "d",
    }
    inline = schemas["v0.0.41_openapi_job_info_resp"]["properties"]["jobs"]["items"]
    assert inline["properties"]["job_resources"]["nullable"] is True
    assert len(report.notes) == 2
    assert report.problems == []
    again = nullable_job_resources("v0.0.45", document)
    assert again.notes == []


def _operation(responses: dict[str, Any], **extra: object) -> dict[str, Any]:
    return {"operationId": "op", "responses": responses, **extra}


def _answer(name: str) -> dict[str, Any]:
    return {"description": "d", "content": {"application/json": {"schema": {"$ref": REF + name}}}}


def _envelope() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"meta": {}, "errors": {}, "warnings": {}},
    }


def test_default_answers_become_the_error_envelope() -> None:
    document = _document(
        {
            "v0.0.45_openapi_resp": _envelope(),
            "v0.0.45_openapi_nodes_resp": {"type": "object", "properties": {"nodes": {}}},
        },
        {
            "/slurm/v0.0.45/nodes/": {
                "get": _operation(
                    {
                        "200": _answer("v0.0.45_openapi_nodes_resp"),
                        "default": _answer("v0.0.45_openapi_nodes_resp"),
                    }
                )
            }
        },
    )
    report = error_answers_are_envelopes("v0.0.45", document)
    responses = document["paths"]["/slurm/v0.0.45/nodes/"]["get"]["responses"]
    assert responses["default"]["content"] == {
        "application/json": {"schema": {"$ref": REF + "v0.0.45_openapi_resp"}}
    }
    assert responses["200"] == _answer("v0.0.45_openapi_nodes_resp")
    assert report.notes == ["1 default answers -> v0.0.45_openapi_resp"]
    assert error_answers_are_envelopes("v0.0.45", document).notes == []


def test_default_answers_without_an_envelope_schema_are_a_problem() -> None:
    document = _document(
        {"v0.0.45_openapi_resp": {"type": "object", "properties": {"errors": {}}}},
        {"/slurm/v0.0.45/ping/": {"get": _operation({"default": _answer("v0.0.45_x")})}},
    )
    report = error_answers_are_envelopes("v0.0.45", document)
    assert report.problems == [
        "GET /slurm/v0.0.45/ping/: v0.0.45_openapi_resp is missing or not meta/errors/warnings"
    ]


def test_answers_may_omit_data_unless_the_schema_is_also_a_request_body() -> None:
    required = {"type": "object", "properties": {"nodes": {}}, "required": ["nodes"]}
    document = _document(
        {
            "v0.0.45_openapi_nodes_resp": copy.deepcopy(required),
            "v0.0.45_openapi_accounts_resp": copy.deepcopy(required),
        },
        {
            "/slurm/v0.0.45/nodes/": {
                "get": _operation({"200": _answer("v0.0.45_openapi_nodes_resp")})
            },
            "/slurmdb/v0.0.45/accounts/": {
                "get": _operation({"200": _answer("v0.0.45_openapi_accounts_resp")}),
                "post": _operation(
                    {"200": _answer("v0.0.45_openapi_resp")},
                    requestBody=_answer("v0.0.45_openapi_accounts_resp"),
                ),
            },
            "/slurm/v0.0.41/jobs/": {
                "get": _operation(
                    {
                        "200": {
                            "description": "inline, as v0.0.41 writes some answers",
                            "content": {"application/json": {"schema": copy.deepcopy(required)}},
                        }
                    }
                )
            },
        },
    )
    report = answers_may_omit_data("v0.0.45", document)
    schemas = document["components"]["schemas"]
    assert "required" not in schemas["v0.0.45_openapi_nodes_resp"]
    assert schemas["v0.0.45_openapi_accounts_resp"]["required"] == ["nodes"]
    inline = document["paths"]["/slurm/v0.0.41/jobs/"]["get"]["responses"]["200"]
    assert "required" not in inline["content"]["application/json"]["schema"]
    assert report.notes == [
        "GET /slurm/v0.0.41/jobs/: answers may omit its fields",
        "v0.0.45_openapi_nodes_resp: answers may omit its fields",
    ]


def test_reads_with_update_time_may_answer_304() -> None:
    update_time = {"in": "query", "name": "update_time", "schema": {"type": "string"}}
    document = _document(
        {},
        {
            "/slurm/v0.0.45/nodes/": {
                "get": _operation({"200": _answer("x")}, parameters=[update_time])
            },
            "/slurm/v0.0.45/ping/": {"get": _operation({"200": _answer("x")})},
            "/slurmdb/v0.0.45/clusters/": {
                "post": _operation({"200": _answer("x")}, parameters=[update_time])
            },
        },
    )
    report = not_modified_answers("v0.0.45", document)
    paths = document["paths"]
    assert sorted(paths["/slurm/v0.0.45/nodes/"]["get"]["responses"]) == ["200", "304"]
    assert "content" not in paths["/slurm/v0.0.45/nodes/"]["get"]["responses"]["304"]
    assert sorted(paths["/slurm/v0.0.45/ping/"]["get"]["responses"]) == ["200"]
    assert sorted(paths["/slurmdb/v0.0.45/clusters/"]["post"]["responses"]) == ["200"]
    assert report.notes == ["GET /slurm/v0.0.45/nodes/: 304"]
