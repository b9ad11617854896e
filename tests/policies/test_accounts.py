"""The account extractor and the strict body parser, over hand-built and generated routes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurmgate.generated import ROUTES
from slurmgate.policies.accounts import (
    AccountsUnknown,
    BodyRefused,
    Lookup,
    Touches,
    parse_body,
    touched,
    validate_body,
)
from slurmgate.policies.routing import (
    AccountLocation,
    CachePolicy,
    LocationKind,
    Namespace,
    Route,
    ValueForm,
    WhenAbsent,
)

VERSIONS = sorted(ROUTES)
JSON = "application/json"
BODY, PATH, QUERY, LOOKUP = (
    LocationKind.BODY,
    LocationKind.PATH,
    LocationKind.QUERY,
    LocationKind.LOOKUP,
)
CSV = ValueForm.CSV
DEFAULT, ALL = WhenAbsent.DEFAULT_ACCOUNT, WhenAbsent.ALL_ACCOUNTS


def hand_route(*locations: AccountLocation, body_model: str | None = None) -> Route:
    return Route(
        method="POST",
        path="/slurm/v0.0.45/test",
        operation_id="test",
        namespace=Namespace.SLURM,
        tag="test",
        body_model=body_model,
        mutating=True,
        scope="test",
        cache=CachePolicy.NONE,
        cache_group="",
        invalidates=(),
        accounts=locations,
    )


def body_at(
    *path: str, form: ValueForm = ValueForm.NAME, when: WhenAbsent = WhenAbsent.NOTHING
) -> AccountLocation:
    return AccountLocation(BODY, path, form, when)


def run(
    route: Route,
    body: object = None,
    path: Mapping[str, str] | None = None,
    query: Sequence[tuple[str, str]] = (),
) -> Touches:
    return touched(route, body, path or {}, query)


def touches(
    accounts: set[str] | None = None,
    *,
    default: bool = False,
    every: bool = False,
    lookups: tuple[Lookup, ...] = (),
) -> Touches:
    return Touches(frozenset(accounts or set()), default, every, lookups)


# --- body locations --------------------------------------------------------------------------


def test_body_name_every_item_and_lowercase() -> None:
    route = hand_route(body_at("jobs", "[]", "account", when=DEFAULT))
    body = {"jobs": [{"account": "Chem"}, {"account": "physics"}, {"account": "chem"}]}
    assert run(route, body) == touches({"chem", "physics"})


def test_body_missing_or_null_leaf_is_absent() -> None:
    route = hand_route(body_at("jobs", "[]", "account", when=DEFAULT))
    assert run(route, {"jobs": [{"account": "chem"}, {}]}) == touches({"chem"}, default=True)
    # slurmrestd treats "account": null as no account: the job runs under the default account.
    assert run(route, {"jobs": [{"account": None}]}) == touches(default=True)
    assert run(hand_route(body_at("account", when=ALL)), {}) == touches(every=True)


def test_body_missing_container_means_the_location_does_not_apply() -> None:
    route = hand_route(
        body_at("job", "account", when=DEFAULT), body_at("jobs", "[]", "account", when=DEFAULT)
    )
    assert run(route, {"job": {"account": "chem"}}) == touches({"chem"})
    assert run(route, {"jobs": [{"account": "chem"}]}) == touches({"chem"})
    assert run(route, {"jobs": []}) == touches()
    assert run(route, {"job": None}) == touches()


def test_when_absent_nothing_stays_silent() -> None:
    assert run(hand_route(body_at("a", "account")), {"a": {}}) == touches()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"jobs": {"account": "chem"}}, "body.jobs"),  # not an array
        ({"jobs": ["chem"]}, "body.jobs[0]"),  # an item that is not an object
        ({"jobs": [{"account": 7}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": ["chem"]}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": ""}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": "chem,physics"}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": " chem"}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": "chem "}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": "-chem"}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": "ch\u00e9m"}]}, "body.jobs[0].account"),
        ({"jobs": [{"account": "chem;x"}]}, "body.jobs[0].account"),
        ({"jobs": [{"Account": "chem"}]}, "body.jobs[0].Account"),
        ({"jobs": [{"account": "chem", "ACCOUNT": "physics"}]}, "body.jobs[0].ACCOUNT"),
        ({"JOBS": [], "jobs": []}, "body.JOBS"),
    ],
)
def test_body_refusals(body: object, where: str) -> None:
    route = hand_route(body_at("jobs", "[]", "account", when=DEFAULT))
    with pytest.raises(AccountsUnknown) as caught:
        run(route, body)
    assert caught.value.where == where


def test_body_csv_strings_and_lists() -> None:
    route = hand_route(body_at("p", "[]", "allowed", form=CSV))
    assert run(route, {"p": [{"allowed": "chem,Physics"}]}) == touches({"chem", "physics"})
    assert run(route, {"p": [{"allowed": ["chem", "bio,geo"]}]}) == touches({"chem", "bio", "geo"})
    for bad in ("chem,,physics", "chem,", "", "chem, physics", ["chem", 3]):
        with pytest.raises(AccountsUnknown):
            run(route, {"p": [{"allowed": bad}]})


def test_reservation_exclusion_still_names_the_account() -> None:
    route = hand_route(body_at("accounts", "[]"))
    assert run(route, {"accounts": ["-chem", "physics"]}) == touches({"chem", "physics"})
    with pytest.raises(AccountsUnknown):
        run(route, {"accounts": ["--chem"]})


# --- path, query and lookup locations --------------------------------------------------------


def test_path_parameter() -> None:
    route = hand_route(AccountLocation(PATH, ("account_name",)))
    assert run(route, path={"account_name": "CHEM"}) == touches({"chem"})
    for bad in ("chem,physics", "chem physics", "", "a" * 129):
        with pytest.raises(AccountsUnknown):
            run(route, path={"account_name": bad})
    with pytest.raises(AccountsUnknown):
        run(route, path={})


def test_query_csv_repeats_and_absence() -> None:
    route = hand_route(
        AccountLocation(QUERY, ("account",), CSV, ALL), AccountLocation(QUERY, ("parent",), CSV)
    )
    assert run(route, query=[("account", "chem,physics")]) == touches({"chem", "physics"})
    # slurmrestd takes the union of repeated parameters.
    assert run(route, query=[("account", "chem"), ("account", "bio")]) == touches({"chem", "bio"})
    assert run(route, query=[("user", "alice")]) == touches(every=True)
    assert run(route, query=[("account", "chem"), ("parent", "root")]) == touches({"chem", "root"})


@pytest.mark.parametrize(
    "query",
    [
        [("account", "")],  # slurmrestd reads ?account= as no filter at all: every account
        [("account", "chem,")],
        [("account", "chem, physics")],
        [("account", "chem ")],  # slurmrestd trims the trailing space, slurmctld would not
        [("Account", "chem")],  # slurmrestd ignores it: the filter silently disappears
        [("account", "chem;physics")],
        [("user", "alice;account=chem")],  # slurmrestd splits on ";" too
    ],
)
def test_query_refusals(query: list[tuple[str, str]]) -> None:
    route = hand_route(AccountLocation(QUERY, ("account",), CSV, ALL))
    with pytest.raises(AccountsUnknown):
        run(route, query=query)


def test_lookups_from_path_query_and_body() -> None:
    route = hand_route(
        AccountLocation(LOOKUP, ("path", "job_id"), entity="job"),
        AccountLocation(LOOKUP, ("query", "user"), entity="user"),
        AccountLocation(LOOKUP, ("body", "jobs", "[]"), entity="job"),
    )
    result = run(route, {"jobs": ["7", "123_4", "9+1", "7"]}, {"job_id": "7"}, [("user", "bob")])
    assert result == touches(
        lookups=(
            Lookup("job", "7"),
            Lookup("user", "bob"),
            Lookup("job", "123_4"),
            Lookup("job", "9+1"),
        )
    )
    assert run(route, {}, {"job_id": "7"}) == touches(lookups=(Lookup("job", "7"),))


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"jobs": [7]}, "7"),
        ({"jobs": ["7,8"]}, "7"),
        ({"jobs": ["123_[1-3]"]}, "7"),
        ({"jobs": "7"}, "7"),
        ({}, "7 "),
        ({}, ""),
    ],
)
def test_lookup_refusals(body: dict[str, Any], path: str) -> None:
    route = hand_route(
        AccountLocation(LOOKUP, ("path", "job_id"), entity="job"),
        AccountLocation(LOOKUP, ("body", "jobs", "[]"), entity="job"),
    )
    with pytest.raises(AccountsUnknown):
        run(route, body, {"job_id": path})


# --- strict parsing --------------------------------------------------------------------------


def generated_route(version: str, method: str, where: str) -> Route:
    """The route of ``method`` at ``where`` (``slurm/job/submit``) in ``version``."""
    namespace, rest = where.split("/", 1)
    path = f"/{namespace}/{version}/{rest}"
    (route,) = (r for r in ROUTES[version] if r.method == method and r.path.rstrip("/") == path)
    return route


SUBMIT = generated_route("v0.0.45", "POST", "slurm/job/submit")


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"job": {"account": "chem"}}', "application/x-yaml"),
        (b'{"job": {"account": "chem"}}', "application/yaml"),
        (b'{"job": {"account": "chem"}}', "text/yaml"),
        (b'{"job": {"account": "chem"}}', "application/json; charset=utf-8"),
        (b'{"job": {"account": "chem"}}', None),
        (b"", JSON),
        (b'{"job": {"account": "physics", "account": "chem"}}', JSON),
        (b'{"job": {}, "job": {}}', JSON),
        (b'{"job": {"time_limit": NaN}}', JSON),
        (b'{"job": {"time_limit": -Infinity}}', JSON),
        (b'{"job": {"time_limit": 1e400}}', JSON),
        (b'\xef\xbb\xbf{"job": {}}', JSON),
        (b'{"job": {"name": "\xe9"}}', JSON),  # Latin-1, not UTF-8
        ('{"job": {}}'.encode("utf-16"), JSON),
        (b'{"job": {"account\\u0000x": "chem"}}', JSON),  # slurmrestd reads the key "account"
        (b'{"job": {"account": "chem\\u0000physics"}}', JSON),
        (b'{"job": {"name": "\\ud800"}}', JSON),
        (b'[{"job": {}}]', JSON),
        (b'"job"', JSON),
        (b'{"job": {}} trailing', JSON),  # slurmrestd ignores what follows the object
        (b'{"job": {} /* comment */}', JSON),
        (b'{"job": "chem"}', JSON),  # the model wants an object
        (b"[" * 100_000 + b"]" * 100_000, JSON),
    ],
)
def test_parse_body_refusals(raw: bytes, content_type: str | None) -> None:
    with pytest.raises(AccountsUnknown):
        parse_body(raw, content_type, route=SUBMIT)


def test_parse_body_accepts_strict_json() -> None:
    raw = b' {"job": {"account": "ch\\u0065m", "script": "#!/bin/sh\\n", "x-noise": [1, 2.5]}}\n'
    assert parse_body(raw, "APPLICATION/JSON", route=SUBMIT) == {
        "job": {"account": "chem", "script": "#!/bin/sh\n", "x-noise": [1, 2.5]}
    }


def test_parse_body_routes_without_a_body_model_take_no_body() -> None:
    # slurmrestd would read this body as the query of DELETE .../associations/ (measured).
    route = generated_route("v0.0.45", "DELETE", "slurmdb/associations")
    assert parse_body(b"", None, route=route) is None
    with pytest.raises(BodyRefused):
        parse_body(b'{"account": "physics"}', JSON, route=route)


def test_validate_body_names_the_field() -> None:
    with pytest.raises(AccountsUnknown) as caught:
        validate_body(SUBMIT, {"jobs": [{"account": 3}]})
    assert caught.value.where == "body.jobs[0].account"


# --- the generated routes of every version ---------------------------------------------------


def from_bytes(
    version: str,
    method: str,
    where: str,
    *,
    body: dict[str, Any] | None = None,
    path: Mapping[str, str] | None = None,
    query: Sequence[tuple[str, str]] = (),
) -> Touches:
    route = generated_route(version, method, where)
    raw = json.dumps(body).encode() if body is not None else b""
    return touched(route, parse_body(raw, JSON, route=route), path or {}, query)


JOB = {"name": "j", "current_working_directory": "/", "environment": ["PATH=/bin"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_job_submit(version: str) -> None:
    def submit(body: dict[str, Any]) -> Touches:
        return from_bytes(version, "POST", "slurm/job/submit", body=body)

    assert submit({"job": {**JOB, "script": "#!/bin/sh\n", "account": "chem"}}) == touches({"chem"})
    assert submit({"job": {**JOB, "script": "#!/bin/sh\n"}}) == touches(default=True)
    # The script-only form: the script beside the job description.
    assert submit({"script": "#!/bin/sh\n", "job": {**JOB, "account": "chem"}}) == touches({"chem"})
    assert submit({"script": "#!/bin/sh\n", "job": JOB}) == touches(default=True)
    hetjob = {"jobs": [{**JOB, "script": "#!/bin/sh\n", "account": "chem"}, JOB]}
    assert submit(hetjob) == touches({"chem"}, default=True)
    with pytest.raises(AccountsUnknown):
        submit({"job": {**JOB, "Account": "physics"}})


@pytest.mark.parametrize("version", [v for v in VERSIONS if v != "v0.0.40"])
def test_job_allocate(version: str) -> None:
    def allocate(body: dict[str, Any]) -> Touches:
        return from_bytes(version, "POST", "slurm/job/allocate", body=body)

    assert allocate({"job": {**JOB, "account": "chem"}}) == touches({"chem"})
    assert allocate({"job": JOB}) == touches(default=True)
    assert allocate({"hetjob": [{**JOB, "account": "bio"}, JOB]}) == touches({"bio"}, default=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_job_update_and_delete(version: str) -> None:
    job = (Lookup("job", "42"),)
    update = from_bytes(
        version, "POST", "slurm/job/{job_id}", body={"account": "bio"}, path={"job_id": "42"}
    )
    assert update == touches({"bio"}, lookups=job)
    assert from_bytes(
        version, "POST", "slurm/job/{job_id}", body={"comment": "x"}, path={"job_id": "42"}
    ) == (touches(lookups=job))
    assert from_bytes(version, "DELETE", "slurm/job/{job_id}", path={"job_id": "42"}) == touches(
        lookups=job
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_bulk_delete_jobs(version: str) -> None:
    def kill(body: dict[str, Any]) -> Touches:
        return from_bytes(version, "DELETE", "slurm/jobs", body=body)

    assert kill({"account": "chem"}) == touches({"chem"})
    assert kill({"user_name": "bob"}) == touches(every=True)  # no account filter: every account
    assert kill({"account": "chem", "jobs": ["1", "2"]}) == touches(
        {"chem"}, lookups=(Lookup("job", "1"), Lookup("job", "2"))
    )
    assert kill({"jobs": ["1"]}) == touches(every=True, lookups=(Lookup("job", "1"),))
    with pytest.raises(AccountsUnknown):
        kill({"account": "chem,physics"})


@pytest.mark.parametrize("version", VERSIONS)
def test_slurmdb_accounts(version: str) -> None:
    body = {
        "accounts": [
            {"name": "Bio", "description": "d", "organization": "o"},
            {
                "name": "geo",
                "description": "d",
                "organization": "o",
                "associations": [{"account": "geo", "cluster": "c", "user": "u"}],
            },
        ]
    }
    assert from_bytes(version, "POST", "slurmdb/accounts", body=body) == touches({"bio", "geo"})
    assert from_bytes(
        version, "DELETE", "slurmdb/account/{account_name}", path={"account_name": "bio"}
    ) == (touches({"bio"}))


@pytest.mark.parametrize("version", VERSIONS)
def test_slurmdb_associations(version: str) -> None:
    body = {
        "associations": [{"account": "chem", "cluster": "c", "user": "u", "parent_account": "root"}]
    }
    assert from_bytes(version, "POST", "slurmdb/associations", body=body) == touches(
        {"chem", "root"}
    )
    assert from_bytes(
        version, "DELETE", "slurmdb/associations", query=[("account", "chem")]
    ) == touches({"chem"})
    assert from_bytes(version, "DELETE", "slurmdb/association", query=[("user", "bob")]) == touches(
        every=True
    )
    assert from_bytes(
        version,
        "DELETE",
        "slurmdb/associations",
        query=[("account", "chem"), ("parent_account", "root")],
    ) == touches({"chem", "root"})


@pytest.mark.parametrize("version", VERSIONS)
def test_slurmdb_users(version: str) -> None:
    body = {
        "users": [
            {
                "name": "eve",
                "default": {"account": "chem"},
                "associations": [{"account": "bio", "cluster": "c", "user": "eve"}],
            }
        ]
    }
    assert from_bytes(version, "POST", "slurmdb/users", body=body) == touches({"chem", "bio"})
    assert from_bytes(version, "DELETE", "slurmdb/user/{name}", path={"name": "eve"}) == touches(
        lookups=(Lookup("user", "eve"),)
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_slurmdb_users_and_accounts_association(version: str) -> None:
    condition = {
        "accounts": ["chem", "bio"],
        "users": ["eve"],
        "clusters": ["c"],
        "association": {"parent": "root"},
    }
    user = {"name": "eve", "defaultaccount": "chem"}
    users = from_bytes(
        version,
        "POST",
        "slurmdb/users_association",
        body={"association_condition": condition, "user": user},
    )
    assert users == touches({"chem", "bio", "root"})
    accounts_condition = {k: v for k, v in condition.items() if k != "users"}
    accounts = from_bytes(
        version,
        "POST",
        "slurmdb/accounts_association",
        body={"association_condition": accounts_condition, "account": {"description": "d"}},
    )
    assert accounts == touches({"chem", "bio", "root"})
    # slurmrestd also takes "chem,bio" here; the models do not, so it is refused, never misread.
    with pytest.raises(AccountsUnknown):
        from_bytes(
            version,
            "POST",
            "slurmdb/accounts_association",
            body={"association_condition": {**accounts_condition, "accounts": "chem,bio"}},
        )


# --- property: never fewer accounts than were placed -----------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
NOISE_KEYS = st.from_regex(r"zz_noise_[a-z]{1,6}", fullmatch=True)
# Noise strings exclude what parse_body refuses on purpose (NUL, lone surrogates).
NOISE_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=5)
NOISE = st.one_of(st.integers(-5, 5), st.booleans(), NOISE_TEXT, st.none())


@st.composite
def placed(draw: st.DrawFn, route: Route) -> tuple[dict[str, Any], set[str], bool]:
    """A body with accounts at every body location of ``route``, plus noise fields."""
    tree: dict[str, Any] = {}
    ends: dict[tuple[str, ...], AccountLocation] = {}
    for location in route.accounts:
        if location.kind is LocationKind.BODY:
            ends[location.path] = location
            node = tree
            for step in location.path:
                node = node.setdefault(step, {})
    names: set[str] = set()
    defaulted = False

    def build(node: dict[str, Any], prefix: tuple[str, ...]) -> object:
        nonlocal defaulted
        if prefix in ends:
            location = ends[prefix]
            if location.when_absent is not WhenAbsent.NOTHING and draw(st.booleans()):
                defaulted |= location.when_absent is WhenAbsent.DEFAULT_ACCOUNT
                return None  # left out
            picked = draw(st.lists(NAMES, min_size=1, max_size=3 if location.form is CSV else 1))
            names.update(picked)
            return ",".join(picked)
        if "[]" in node:
            return [build(node["[]"], (*prefix, "[]")) for _ in range(draw(st.integers(1, 3)))]
        result: dict[str, Any] = {}
        for key, child in node.items():
            value = build(child, (*prefix, key))
            if value is not None:
                result[key] = value
        result.update(draw(st.dictionaries(NOISE_KEYS, NOISE, max_size=2)))
        return result

    body = build(tree, ())
    assert isinstance(body, dict)
    return body, names, defaulted


BODY_ROUTES = [
    route
    for version in VERSIONS
    for route in ROUTES[version]
    if any(location.kind is LocationKind.BODY for location in route.accounts)
]


@settings(deadline=None, max_examples=300)
@given(route=st.sampled_from(BODY_ROUTES), data=st.data())
def test_never_fewer_accounts_than_placed(route: Route, data: st.DataObject) -> None:
    body, names, defaulted = data.draw(placed(route))
    result = touched(route, body, {"job_id": "1"}, [])
    assert result.accounts >= names
    if defaulted:
        assert result.default_account


JOB_ROUTES = [
    route
    for route in BODY_ROUTES
    if route.path.endswith(("/job/submit", "/job/allocate", "/job/{job_id}", "/jobs/"))
]


@settings(deadline=None, max_examples=150)
@given(route=st.sampled_from(JOB_ROUTES), data=st.data())
def test_job_bodies_survive_parsing(route: Route, data: st.DataObject) -> None:
    body, names, defaulted = data.draw(placed(route))
    parsed = parse_body(json.dumps(body).encode(), JSON, route=route)
    assert parsed == body
    result = touched(route, parsed, {"job_id": "1"}, [])
    assert result.accounts >= names
    assert result.default_account or not defaulted
