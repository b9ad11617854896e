"""Every change codegen makes to a slurmrestd spec before using it, in one place.

Each fix is a function ``(version, document) -> FixReport`` that edits the document in place (parse
hands it a private deep copy) and says what it did. :data:`FIXES` runs them in order; the order
matters where noted. Each fix says why it exists; a fix that finds nothing to do is harmless, so
all fixes run on every version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeGuard

__all__ = [
    "FIXES",
    "FixReport",
    "accept_plain_numbers",
    "answers_may_omit_data",
    "apply_fixes",
    "drop_unknown_required",
    "error_answers_are_envelopes",
    "fix_boolean_defaults",
    "hoist_inline_request_bodies",
    "hoist_inline_tri_state",
    "is_tri_state",
    "not_modified_answers",
    "nullable_job_resources",
]

Json = dict[str, Any]


@dataclass
class FixReport:
    """What one fix did (``notes``) and what it could not fix (``problems``)."""

    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _nodes(node: object, pointer: str = "") -> Iterator[tuple[str, Json]]:
    """Every JSON object in the document, depth first, keys in sorted order, with a JSON pointer."""
    if isinstance(node, dict):
        yield pointer, node
        for key in sorted(node):
            yield from _nodes(node[key], f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _nodes(item, f"{pointer}/{index}")


def _schemas(document: Json) -> Json:
    schemas: Json = document.setdefault("components", {}).setdefault("schemas", {})
    return schemas


def is_tri_state(schema: object) -> TypeGuard[Json]:
    """Slurm's "number with flags" struct: an object of exactly ``set``, ``infinite``, ``number``.

    slurmrestd names it ``*_no_val`` (v0.0.40) or ``*_no_val_struct`` (v0.0.42+) and writes it
    inline in v0.0.41, so it is recognised by shape, not by name.
    """
    if not isinstance(schema, dict) or "$ref" in schema:
        return False
    properties = schema.get("properties")
    return isinstance(properties, dict) and set(properties) == {"set", "infinite", "number"}


_OPERATION_VERSION = re.compile(r"_v\d{4}_")

# v0.0.41 writes every request body inline, so datamodel-code-generator gives them no class and the
# routing table could not name one. Hoist them into components under the names v0.0.40 and v0.0.42
# use for the same bodies (keyed by operationId without its version), so models stay comparable.
_BODY_NAMES = {
    "slurm_post_job_submit": "job_submit_req",
    "slurm_post_job_allocate": "job_alloc_req",
    "slurm_post_job": "job_desc_msg",
    "slurm_delete_jobs": "kill_jobs_msg",
    "slurmdb_post_accounts_association": "openapi_accounts_add_cond_resp",
    "slurmdb_post_users_association": "openapi_users_add_cond_resp",
}


def hoist_inline_request_bodies(version: str, document: Json) -> FixReport:
    """Move inline request body schemas into ``components/schemas`` and reference them."""
    report = FixReport()
    schemas = _schemas(document)
    for url in sorted(document.get("paths", {})):
        for method, operation in sorted(document["paths"][url].items()):
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            op_id = str(operation.get("operationId", f"{method}_{url}"))
            generic = _OPERATION_VERSION.sub("_", op_id, count=1)
            name = f"{version}_{_BODY_NAMES.get(generic, generic + '_body')}"
            for content_type, media in sorted(operation["requestBody"].get("content", {}).items()):
                schema = media.get("schema")
                if not isinstance(schema, dict) or "$ref" in schema:
                    continue
                if name in schemas and schemas[name] != schema:
                    report.problems.append(
                        f"{method.upper()} {url}: inline {content_type} body cannot be hoisted, "
                        f"{name} already exists"
                    )
                    continue
                schemas[name] = schema
                media["schema"] = {"$ref": f"#/components/schemas/{name}"}
                report.notes.append(f"{method.upper()} {url}: inline body -> {name}")
    return report


_TRI_STATE_NAMES = {"int32": "uint32", "int64": "uint64", "double": "float64"}


def hoist_inline_tri_state(version: str, document: Json) -> FixReport:
    """Replace inline tri-state structs (v0.0.41 has ~290) by references to one component each.

    Without this every occurrence becomes its own class, and :func:`accept_plain_numbers` would
    have to widen each one. The components get v0.0.42's names (``uint32_no_val_struct``...);
    the occurrence's own description and deprecation stay beside the reference.
    """
    report = FixReport()
    schemas = _schemas(document)
    replaced = 0
    for _pointer, node in list(_nodes(document)):
        for key, child in sorted(_children(node)):
            if not is_tri_state(child) or _is_component(schemas, child):
                continue
            number = child["properties"]["number"]
            kind = _TRI_STATE_NAMES.get(str(number.get("format")))
            if kind is None:
                report.problems.append(f"tri-state struct with number format {number!r}")
                continue
            name = f"{version}_{kind}_no_val_struct"
            shared = {k: v for k, v in child.items() if k not in {"description", "deprecated"}}
            if schemas.setdefault(name, shared) != shared:
                report.problems.append(f"inline tri-state struct differs from {name}")
                continue
            ref: Json = {"$ref": f"#/components/schemas/{name}"}
            ref.update({k: child[k] for k in ("description", "deprecated") if k in child})
            _replace(node, key, ref)
            replaced += 1
    if replaced:
        report.notes.append(f"{replaced} inline tri-state structs -> *_no_val_struct components")
    return report


def _children(node: Json) -> Iterator[tuple[str | int, object]]:
    """Schema positions directly under ``node`` that may hold a sub-schema."""
    for key in ("items", "additionalProperties", "schema"):
        if key in node:
            yield key, node[key]
    for key in ("properties",):
        if isinstance(node.get(key), dict):
            for name, child in node[key].items():
                yield f"{key}/{name}", child
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(node.get(key), list):
            for index, child in enumerate(node[key]):
                yield f"{key}/{index:04d}", child


def _replace(node: Json, key: str | int, value: object) -> None:
    text = str(key)
    if "/" in text:
        group, name = text.split("/", 1)
        if group in ("anyOf", "oneOf", "allOf"):
            node[group][int(name)] = value
        else:
            node[group][name] = value
    else:
        node[text] = value


def _is_component(schemas: Json, schema: object) -> bool:
    return any(candidate is schema for candidate in schemas.values())


def fix_boolean_defaults(version: str, document: Json) -> FixReport:
    """Turn the numeric defaults of boolean properties (``"default": 0``) into booleans.

    slurmrestd 24.11 writes v0.0.40's ``infinite`` flags as booleans defaulting to ``0`` / ``0.0``;
    pydantic would keep the int as the default and mypy rejects it. Any other type/default
    mismatch is reported, not guessed at.
    """
    report = FixReport()
    expected: dict[str, tuple[type, ...]] = {
        "boolean": (bool,),
        "integer": (int,),
        "number": (int, float),
        "string": (str,),
        "array": (list,),
        "object": (dict,),
    }
    for pointer, node in _nodes(document):
        kind = node.get("type")
        if "default" not in node or not isinstance(kind, str) or kind not in expected:
            continue
        value = node["default"]
        is_bool = isinstance(value, bool)
        fits = isinstance(value, expected[kind]) and (kind == "boolean" or not is_bool)
        if fits:
            continue
        if kind == "boolean" and isinstance(value, int | float) and value in (0, 1):
            node["default"] = bool(value)
            report.notes.append(f"{pointer}: boolean default {value!r} -> {bool(value)}")
        else:
            report.problems.append(f"{pointer}: {kind} with default {value!r}")
    return report


def drop_unknown_required(version: str, document: Json) -> FixReport:
    """Drop ``required`` names that are not properties of the object, and empty ``required``.

    slurmrestd lists nested fields as paths (``"nodes/count"`` in ``job_res``); they name no
    property, so a generator either ignores them or invents fields. The plain names stay required.
    slurmrestd also writes ``"required": []`` (44 to 61 objects per version), which OpenAPI 3.0
    forbids (at least one name), so validators reject the whole document.
    """
    report = FixReport()
    emptied = 0
    for pointer, node in list(_nodes(document)):
        required = node.get("required")
        if not isinstance(required, list):
            continue
        properties = node.get("properties")
        if isinstance(properties, dict):
            unknown = [name for name in required if name not in properties]
            if unknown:
                required = [name for name in required if name in properties]
                node["required"] = required
                report.notes.append(f"{pointer}: dropped required {', '.join(map(str, unknown))}")
        if not required:
            del node["required"]
            emptied += 1
    if emptied:
        report.notes.append(f"{emptied} empty required lists dropped")
    return report


def accept_plain_numbers(version: str, document: Json) -> FixReport:
    """Let every tri-state field also take a plain number, as slurmrestd's parser does.

    slurmrestd reads ``"time_limit": 60`` as ``{"set": true, "number": 60}`` (data_parser
    ``*_NO_VAL`` parse functions accept a number) and clients rely on it. Each reference to a
    tri-state component becomes ``anyOf: [reference, number]``, keeping description and
    deprecation outside. Runs after :func:`hoist_inline_tri_state`, which turns the inline structs
    of v0.0.41 into references.
    """
    report = FixReport()
    schemas = _schemas(document)
    numbers: dict[str, Json] = {}
    for name in sorted(schemas):
        if is_tri_state(schemas[name]):
            number = schemas[name]["properties"]["number"]
            plain: Json = {"type": number.get("type", "integer")}
            if "format" in number:
                plain["format"] = number["format"]
            numbers[f"#/components/schemas/{name}"] = plain
    widened = 0
    for _pointer, node in list(_nodes(document)):
        for key, child in sorted(_children(node)):
            if not isinstance(child, dict) or child.get("$ref") not in numbers:
                continue
            if str(key).startswith(("anyOf/", "oneOf/")):
                continue  # already one branch of a union
            ref = child["$ref"]
            wrapper: Json = {k: v for k, v in child.items() if k != "$ref"}
            wrapper["anyOf"] = [{"$ref": ref}, dict(numbers[ref])]
            _replace(node, key, wrapper)
            widened += 1
    if widened:
        report.notes.append(f"{widened} tri-state fields also accept a plain number")
    return report


def nullable_job_resources(version: str, document: Json) -> FixReport:
    """Let ``job_resources`` be ``null``, as slurmrestd dumps a job that holds no resources.

    slurmrestd (v0.0.41 to v0.0.45; Slurm 24.11.5, 26.05.5) sends ``"job_resources": null`` for a
    pending, held or cancelled-before-start job: the data_parser's ``DUMP_FUNC(JOB_RES_PTR)``
    (src/plugins/data_parser/v0.0.4X/parsers.c) sets no value when the pointer is NULL. The spec
    makes it a plain ``job_res`` object, so a generated client raises ``TypeError`` reading any
    pending job. A reference becomes ``anyOf: [ref]`` + ``nullable`` (``nullable`` beside ``$ref``
    is ignored in OpenAPI 3.0); v0.0.41's inline object gets ``nullable`` itself. Found by shape
    (every property of that name), so v0.0.40 is covered too. No SchedMD bug number known.
    """
    report = FixReport()
    for pointer, node in list(_nodes(document)):
        properties = node.get("properties")
        schema = properties.get("job_resources") if isinstance(properties, dict) else None
        if not isinstance(properties, dict) or not isinstance(schema, dict):
            continue
        if schema.get("nullable") is True:
            continue
        if "$ref" in schema:
            wrapper: Json = {k: v for k, v in schema.items() if k != "$ref"}
            wrapper["anyOf"] = [{"$ref": schema["$ref"]}]
            wrapper["nullable"] = True
            properties["job_resources"] = wrapper
        elif schema.get("type") == "object":
            schema["nullable"] = True
        else:
            report.problems.append(f"{pointer}/properties/job_resources: unexpected {schema!r}")
            continue
        report.notes.append(f"{pointer}/properties/job_resources: nullable")
    return report


def _responses(document: Json) -> Iterator[tuple[str, Json]]:
    """``("GET /slurm/v0.0.44/jobs/", responses)`` of every operation, sorted."""
    for url in sorted(document.get("paths", {})):
        for method, operation in sorted(document["paths"][url].items()):
            if isinstance(operation, dict) and isinstance(operation.get("responses"), dict):
                yield f"{method.upper()} {url}", operation["responses"]


def error_answers_are_envelopes(version: str, document: Json) -> FixReport:
    """Describe the ``default`` (error) answer as slurmrestd's envelope, not the success schema.

    When an operation fails, slurmrestd's handlers skip the ``DATA_DUMP`` of their answer (``goto
    done`` in src/slurmrestd/plugins/openapi/*/...c) and send only ``meta``, ``errors`` and
    ``warnings``; the gateway's own errors (401, 403, 404, 502...) are the same envelope. The spec
    reuses the success schema, whose data fields are required (``nodes``, ``last_update``,
    ``accounts``...), so a generated client raises ``KeyError`` instead of returning the error.
    ``default`` now references ``<version>_openapi_resp`` (exactly the envelope); data fields
    slurmrestd sends anyway (``"jobs": []`` on a 404) are kept as additional properties.
    """
    report = FixReport()
    envelope = f"{version}_openapi_resp"
    shape = set(_schemas(document).get(envelope, {}).get("properties", {}))
    ref = {"$ref": f"#/components/schemas/{envelope}"}
    changed = 0
    for where, responses in _responses(document):
        default = responses.get("default")
        if not isinstance(default, dict):
            continue
        if shape != {"meta", "errors", "warnings"}:
            report.problems.append(f"{where}: {envelope} is missing or not meta/errors/warnings")
            continue
        content = default.get("content", {})
        if set(content) - {"application/json"}:
            report.problems.append(f"{where}: default answer of type {sorted(content)}")
            continue
        if content.get("application/json", {}).get("schema") == ref:
            continue
        default["content"] = {"application/json": {"schema": dict(ref)}}
        default["description"] = f"an error: {envelope} (meta, errors, warnings)"
        changed += 1
    if changed:
        report.notes.append(f"{changed} default answers -> {envelope}")
    return report


def answers_may_omit_data(version: str, document: Json) -> FixReport:
    """Drop ``required`` from the schemas of successful answers that are not also request bodies.

    slurmrestd answers ``200`` with only ``meta``/``errors``/``warnings`` when a handler fails with
    ``errno`` 0 (``GET /slurm/.../node/nope``, ``/reservation/nope``: "Failure to query node") or
    finds nothing (``GET /slurmdb/.../instances/``), and ``GET /slurm/.../jobs/state/`` answers
    ``jobs`` without the ``last_backfill``/``last_update`` its schema requires (measured on the
    lab, Slurm 24.11.5 and 26.05.5). A generated client raises ``KeyError`` on every such answer.
    Schemas also used as request bodies (the slurmdb ``*_resp`` that POST takes) keep
    ``required``: slurmrestd enforces it when parsing a body, and slurmdbd's handlers always dump
    their data (``DUMP_OPENAPI_RESP_SINGLE`` after a failed query: ``"accounts": []``).
    """
    report = FixReport()
    schemas = _schemas(document)
    bodies: set[str] = set()
    for url in document.get("paths", {}):
        for operation in document["paths"][url].values():
            if isinstance(operation, dict):
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    bodies.add(str(media.get("schema", {}).get("$ref", "")))
    for where, responses in _responses(document):
        answer = responses.get("200")
        if not isinstance(answer, dict):
            continue
        for media in answer.get("content", {}).values():
            schema = media.get("schema")
            name = where
            if isinstance(schema, dict) and "$ref" in schema:
                if schema["$ref"] in bodies:
                    continue
                name = schema["$ref"].removeprefix("#/components/schemas/")
                schema = schemas.get(name)
            if isinstance(schema, dict) and schema.pop("required", None):
                report.notes.append(f"{name}: answers may omit its fields")
    return report


def not_modified_answers(version: str, document: Json) -> FixReport:
    """Declare the empty ``304 Not Modified`` that an ``update_time`` query can get.

    With ``?update_time=T`` and nothing changed since T, slurmctld returns
    ``SLURM_NO_CHANGE_IN_DATA`` and slurmrestd answers ``304`` with no body
    (src/slurmrestd/operations.c, RFC 7232 4.1): seen on ``/nodes``, ``/partitions`` and
    ``/reservations`` of the lab. Undeclared, it falls to ``default`` and a generated client fails
    decoding an empty body as JSON; declared without content, it returns ``parsed=None``.
    """
    report = FixReport()
    for url in sorted(document.get("paths", {})):
        item = document["paths"][url]
        shared = item.get("parameters", [])
        for method, operation in sorted(item.items()):
            if not isinstance(operation, dict) or method != "get":
                continue
            parameters = [*shared, *operation.get("parameters", [])]
            if ("query", "update_time") not in {(p.get("in"), p.get("name")) for p in parameters}:
                continue
            responses = operation.setdefault("responses", {})
            if "304" not in responses:
                responses["304"] = {"description": "nothing changed since update_time (no body)"}
                report.notes.append(f"GET {url}: 304")
    return report


#: The fixes, in the order they run.
FIXES: tuple[Callable[[str, Json], FixReport], ...] = (
    hoist_inline_request_bodies,
    hoist_inline_tri_state,
    fix_boolean_defaults,
    drop_unknown_required,
    accept_plain_numbers,
    nullable_job_resources,
    error_answers_are_envelopes,
    answers_may_omit_data,
    not_modified_answers,
)


def apply_fixes(version: str, document: Json) -> FixReport:
    """Run every fix on ``document`` (edited in place) and merge their reports."""
    merged = FixReport()
    for fix in FIXES:
        report = fix(version, document)
        merged.notes.extend(f"{fix.__name__}: {note}" for note in report.notes)
        merged.problems.extend(f"{fix.__name__}: {problem}" for problem in report.problems)
    return merged
