"""Property tests: the body parser and the account extractor never fail with anything but their
own errors, whatever the bytes, the Content-Type, the path parameters or the query.

An unexpected exception here would be a 500 in the gateway (and a request that slurmgate neither
refuses nor understands); :class:`AccountsUnknown` (403) and :class:`BodyRefused` (400) are the
answers the gateway has for what it cannot read. The query parser lives in the authorize step
(server/pipeline/authorize.py); its own error is :class:`BadRequest`.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurmgate.generated import ROUTES
from slurmgate.policies.accounts import (
    AccountsUnknown,
    BodyRefused,
    Touches,
    parse_body,
    touched,
)
from slurmgate.policies.routing import Route
from slurmgate.server.errors import BadRequest
from slurmgate.server.pipeline.authorize import query_pairs

ACCOUNT_ROUTES = [route for routes in ROUTES.values() for route in routes if route.accounts]
BODY_ROUTES = [route for route in ACCOUNT_ROUTES if route.body_model is not None]
FUZZ = settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])

#: JSON values, keys drawn partly from the names slurmrestd's bodies use, so that deep paths
#: (job.account, jobs[].account, associations[].account...) are reached, not only noise.
KEYS = st.sampled_from(
    ["job", "jobs", "hetjob", "account", "accounts", "associations", "users", "user_id",
     "name", "script", "partition", "qos", "wckey", "Account", "JOB", "[]", ""]
) | st.text(max_size=8)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)


def _raw_json(value: object) -> bytes:
    return json.dumps(value).encode()


BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(_raw_json),
    st.dictionaries(KEYS, JSON_VALUES, max_size=4).map(_raw_json),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    # A very long number, as text: Python refuses to read more than 4,300 digits as an int.
    st.integers(4000, 6000).map(lambda n: b'{"job": {"account": "a", "nice": ' + b"7" * n + b"}}"),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
)
CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "APPLICATION/JSON", "application/yaml", "text/plain", ""]
)


def _check_touches(route: Route, body: object, params: dict[str, str], query: object) -> None:
    try:
        pairs = query_pairs(query) if isinstance(query, str) else []
    except BadRequest:
        return
    try:
        result = touched(route, body, params, pairs)
    except AccountsUnknown:
        return
    assert isinstance(result, Touches)
    assert all(name == name.lower() for name in result.accounts)


@FUZZ
@given(
    route=st.sampled_from(BODY_ROUTES),
    raw=BODIES,
    content_type=CONTENT_TYPES,
    params=st.dictionaries(st.sampled_from(["job_id", "account_name", "user_name"]), st.text()),
    query=st.text(alphabet=string.printable, max_size=40),
)
def test_parse_body_and_touched_raise_only_their_own_errors(
    route: Route, raw: bytes, content_type: str | None, params: dict[str, str], query: str
) -> None:
    try:
        body = parse_body(raw, content_type, route=route)
    except AccountsUnknown:  # BodyRefused included
        return
    assert isinstance(body, dict)
    _check_touches(route, body, params, query)


@FUZZ
@given(
    route=st.sampled_from(ACCOUNT_ROUTES),
    body=JSON_VALUES,
    params=st.dictionaries(st.sampled_from(["job_id", "account_name", "user_name"]), st.text()),
    query=st.text(max_size=60),
)
def test_touched_on_any_json_raises_only_accounts_unknown(
    route: Route, body: object, params: dict[str, str], query: str
) -> None:
    # touched() is given bodies parse_body did not check against the model: it must still only
    # ever say "cannot tell" about shapes it does not expect.
    _check_touches(route, body, params, query)


@FUZZ
@given(raw=st.text(max_size=80) | st.text(alphabet="%0aAfF+&;=xyz_-.~", max_size=40))
def test_query_pairs_returns_pairs_or_bad_request(raw: str) -> None:
    try:
        pairs = query_pairs(raw)
    except BadRequest:
        return
    assert all(name for name, _ in pairs)


def test_a_number_longer_than_python_reads_is_refused_not_a_crash() -> None:
    # Found by the test above: json.loads raised a bare ValueError (a 500 in the gateway).
    route = next(r for r in BODY_ROUTES if r.path.endswith("/job/submit"))
    raw = b'{"job": {"account": "physics", "nice": ' + b"7" * 5000 + b"}}"
    with pytest.raises(BodyRefused, match="too many digits"):
        parse_body(raw, "application/json", route=route)
