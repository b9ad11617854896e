"""The generated pydantic models of every API version, used the way the gateway will use them:
validate a client's body, keep what the model does not know, dump it back for slurmrestd."""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from slurmgate.generated import ROUTES, VERSIONS

VERSION_IDS = [api.version for api in VERSIONS]

JOB: dict[str, Any] = {
    "script": "#!/bin/sh\nsleep 1",
    "account": "physics",
    "current_working_directory": "/tmp",  # noqa: S108 - a field value, no file is opened
    "environment": ["PATH=/bin"],
}


def _models(version: str) -> ModuleType:
    return importlib.import_module(f"slurmgate.generated.{version.replace('.', '_')}.models")


def _body_model(version: str, method: str, suffix: str) -> type[BaseModel]:
    route = next(r for r in ROUTES[version] if r.method == method and r.path.endswith(suffix))
    assert route.body_model is not None
    model = getattr(_models(version), route.body_model)
    assert isinstance(model, type)
    assert issubclass(model, BaseModel)
    return model


def _submit(version: str) -> type[BaseModel]:
    return _body_model(version, "POST", "/job/submit")


def _round_trip(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """Validate, dump by alias without defaults, and parse the JSON again."""
    dumped: dict[str, Any] = json.loads(
        model.model_validate(body).model_dump_json(by_alias=True, exclude_unset=True)
    )
    return dumped


@pytest.mark.parametrize("version", VERSION_IDS)
def test_every_body_model_of_the_routing_table_exists(version: str) -> None:
    models = _models(version)
    for route in ROUTES[version]:
        if route.body_model is not None:
            model = getattr(models, route.body_model)
            assert issubclass(model, BaseModel), route.path


@pytest.mark.parametrize("version", VERSION_IDS)
def test_minimal_job_submit(version: str) -> None:
    submit = _submit(version).model_validate({"job": JOB})
    job: Any = getattr(submit, "job")  # noqa: B009 - the field exists only at run time
    assert job.account == "physics"
    assert job.script == "#!/bin/sh\nsleep 1"
    assert job.environment == ["PATH=/bin"]
    assert _round_trip(_submit(version), {"job": JOB}) == {"job": JOB}


@pytest.mark.parametrize("version", VERSION_IDS)
def test_hetjob_submit(version: str) -> None:
    body = {"jobs": [JOB, {**JOB, "account": "chemistry", "script": None}]}
    body["jobs"][1].pop("script")
    assert _round_trip(_submit(version), body) == body


@pytest.mark.parametrize("version", VERSION_IDS)
def test_tri_state_numbers_take_plain_numbers_and_structs(version: str) -> None:
    model = _submit(version)
    plain: Any = model.model_validate({"job": {**JOB, "time_limit": 60, "priority": 0}})
    assert plain.job.time_limit == 60
    assert plain.job.priority == 0
    struct: Any = model.model_validate({"job": {**JOB, "time_limit": {"set": True, "number": 60}}})
    limit: Any = struct.job.time_limit
    assert isinstance(limit, BaseModel)
    assert (getattr(limit, "set"), getattr(limit, "number")) == (True, 60)  # noqa: B009
    infinite = {"job": {**JOB, "time_limit": {"infinite": True}}}
    assert _round_trip(model, infinite) == infinite
    with pytest.raises(ValidationError):
        model.model_validate({"job": {**JOB, "time_limit": "an hour"}})


@pytest.mark.parametrize("version", VERSION_IDS)
def test_unknown_fields_are_kept_and_dumped(version: str) -> None:
    body = {
        "job": {**JOB, "added_in_a_later_release": {"nested": [1, 2]}},
        "top_level_extension": True,
    }
    model = _submit(version)
    parsed: Any = model.model_validate(body)
    assert parsed.job.model_extra == {"added_in_a_later_release": {"nested": [1, 2]}}
    assert _round_trip(model, body) == body


@pytest.mark.parametrize("version", VERSION_IDS)
def test_fields_named_like_python_keywords_dump_by_their_json_name(version: str) -> None:
    """``rlimits.as`` is the attribute ``as_``: only a dump by alias gives slurmrestd ``as``."""
    body = {"job": {**JOB, "rlimits": {"as": 1024, "nofile": 64}}}
    model = _submit(version)
    parsed = model.model_validate(body)
    assert _round_trip(model, body) == body
    by_name = json.loads(parsed.model_dump_json(exclude_unset=True))
    assert by_name["job"]["rlimits"] == {"as_": 1024, "nofile": 64}


@pytest.mark.parametrize("version", VERSION_IDS)
def test_wrong_types_are_rejected(version: str) -> None:
    with pytest.raises(ValidationError):
        _submit(version).model_validate({"job": {**JOB, "environment": "PATH=/bin"}})
    with pytest.raises(ValidationError):
        _submit(version).model_validate({"jobs": {"account": "physics"}})


@pytest.mark.parametrize("version", VERSION_IDS)
def test_association_bodies_carry_accounts_where_the_table_says(version: str) -> None:
    model = _body_model(version, "POST", "/associations/")
    body = {"associations": [{"account": "physics", "user": "alice", "cluster": "lab"}]}
    parsed: Any = model.model_validate(body)
    assert parsed.associations[0].account == "physics"
