"""Which Slurm accounts a request touches: strict body parsing and the extractor. Pure, no I/O.

The gateway checks what it reads and forwards the same bytes, so it must read them exactly as
slurmrestd will, or refuse them. :func:`parse_body` accepts only what both parsers read alike
(measured against slurmrestd 24.11 and 26.05, see docs/authorization.md); :func:`touched` walks the
route's account locations over the parsed body, path and query and says which accounts the request
names, whether it falls back to the caller's default account or covers every account, and which
existing entities must be looked up upstream. Anything it cannot read raises
:class:`AccountsUnknown`: the caller refuses the request (fail closed).
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pydantic

from slurmgate.policies.routing import AccountLocation, LocationKind, Route, ValueForm, WhenAbsent

__all__ = [
    "ACCOUNT_NAME",
    "LOOKUP_KEY",
    "AccountsUnknown",
    "BodyRefused",
    "Lookup",
    "Touches",
    "parse_body",
    "touched",
    "validate_body",
]

#: What the gateway accepts as an account name. Slurm itself allows more, but every character
#: outside this set is a place where two parsers can disagree: ``,`` splits lists, ``;`` and ``&``
#: split slurmrestd's URL query, spaces are trimmed by some parsers and not others (slurmrestd's
#: query parser drops a trailing one, slurmctld keeps it), NUL truncates C strings (slurmrestd reads
#: ``"chem\u0000x"`` as ``chem``), a leading ``-`` excludes an account in reservations. Case is
#: allowed and folded: Slurm lowercases account names (``CHEM`` runs a job under ``chem``).
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: What the gateway accepts as the key of an entity to look up (job ids ``123``, ``123_4``,
#: ``123+1``; user names). Array ranges (``123_[1-3]``) and lists are refused, not guessed at.
LOOKUP_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")

_JSON_MEDIA_TYPE = "application/json"
_BOM = b"\xef\xbb\xbf"
# Reservation account lists mark an excluded account with a leading "-": it still names the account.
_EXCLUDABLE = ("accounts", "[]")


class AccountsUnknown(ValueError):
    """The request's accounts cannot be determined; the caller must refuse it (fail closed)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


class BodyRefused(AccountsUnknown):
    """The body is not one the gateway and slurmrestd are sure to read alike (answer 400)."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """An existing entity whose current account(s) must be fetched upstream (``job``, ``123``)."""

    entity: str
    key: str


@dataclass(frozen=True, slots=True)
class Touches:
    """What a request acts on, as far as the request itself says."""

    #: account names found in the request, lowercased as Slurm stores them
    accounts: frozenset[str]
    #: the request relies on the caller's default account somewhere (a job without account)
    default_account: bool
    #: a filter was left out: the request covers every account (bulk DELETE jobs without account)
    all_accounts: bool
    #: entities whose current account must be looked up upstream, in request order, no repeats
    lookups: tuple[Lookup, ...]


# --- parsing ---------------------------------------------------------------------------------


def parse_body(raw: bytes, content_type: str | None, *, route: Route) -> object:
    """Parse a body strictly and check it against the route's model; ``None`` when there is none.

    Raises :class:`BodyRefused` for bytes slurmrestd might read differently, and
    :class:`AccountsUnknown` for a shape the route's generated request model rejects.

    A route without a body model must come without a body: slurmrestd reads a body sent with a
    query-less URL *as its query* (``DELETE .../associations/`` with ``{"account": "x"}``).
    """
    if route.body_model is None:
        if raw:
            raise BodyRefused("body", f"{route.method} {route.path} takes no body")
        return None
    if not raw:
        raise BodyRefused("body", f"{route.method} {route.path} needs a JSON body")
    if content_type is None or content_type.lower() != _JSON_MEDIA_TYPE:
        # slurmrestd also parses YAML (application/x-yaml, application/yaml, text/yaml), whose
        # readings of the same bytes differ from JSON's (a JSON true became the string "true").
        raise BodyRefused(
            "Content-Type", f"must be exactly {_JSON_MEDIA_TYPE}, not {content_type!r}"
        )
    if raw.startswith(_BOM):
        raise BodyRefused("body", "starts with a byte order mark")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyRefused("body", f"not UTF-8 at byte {error.start}") from None
    try:
        value: object = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_readable_int,
        )
    except _Refused as error:
        raise BodyRefused("body", str(error)) from None
    except RecursionError:
        raise BodyRefused("body", "nested too deeply") from None
    except json.JSONDecodeError as error:
        raise BodyRefused("body", f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise BodyRefused("body", f"must be a JSON object, not {_json_type(value)}")
    _check_strings(value, "body")
    validate_body(route, value)
    return value


class _Refused(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # slurmrestd keeps the LAST of duplicate keys (measured); refusing them removes the question.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> object:
    raise _Refused(f"{name} is not JSON")


def _readable_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits, 4300)
        raise _Refused(f"number {text[:20]}... has too many digits") from None


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refused(f"number {text[:40]} is out of range")
    return number


def _check_strings(value: object, where: str) -> None:
    """Refuse NUL (slurmrestd cuts keys and values there) and lone surrogates (not UTF-8)."""
    stack: list[tuple[object, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, f"{at}.{key!r}")
                stack.append((child, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, at)


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise BodyRefused(where, "contains NUL (\\u0000), which slurmrestd reads as the end")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyRefused(where, "contains a lone surrogate escape") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- model validation ------------------------------------------------------------------------


def validate_body(route: Route, body: object) -> None:
    """Refuse a body the route's generated request model rejects (extra fields are allowed)."""
    if route.body_model is None:
        if body is not None:
            raise AccountsUnknown("body", f"{route.method} {route.path} takes no body")
        return
    model = _model(route.path, route.body_model)
    try:
        model.model_validate(body)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = "body" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in first["loc"])
        raise AccountsUnknown(where, f"{first['msg']} ({error.error_count()} problem(s))") from None


@functools.cache
def _model(path: str, name: str) -> type[pydantic.BaseModel]:
    version = path.split("/")[2]  # "/slurm/v0.0.45/..." -> "v0.0.45"
    module = importlib.import_module(f"slurmgate.generated.{version.replace('.', '_')}.models")
    model = vars(module).get(name)
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        raise AccountsUnknown("body", f"no request model {name} for {version}")
    return model


# --- extraction ------------------------------------------------------------------------------


def touched(
    route: Route,
    body: object,
    path_params: Mapping[str, str],
    query: Sequence[tuple[str, str]],
) -> Touches:
    """Every account ``route`` would act on for this request, per its account locations.

    ``body`` is what :func:`parse_body` returned (so already checked against the route's request
    model); ``query`` holds every (name, value) pair in order, repeats included.
    """
    if route.accounts:
        for name, value in query:
            if ";" in name or ";" in value:
                # slurmrestd splits its URL query on ";" as well as "&": "x=1;account=a" is two.
                raise AccountsUnknown(f"query:{name}", "contains ';', which slurmrestd splits on")
    accounts: set[str] = set()
    lookups: dict[Lookup, None] = {}
    default_account = all_accounts = False
    for location in route.accounts:
        found = _Found()
        if location.kind is LocationKind.BODY:
            _from_body(location, body, found)
        elif location.kind is LocationKind.PATH:
            _from_path(location, path_params, found)
        elif location.kind is LocationKind.QUERY:
            _from_query(location, query, found)
        else:
            _from_lookup(location, body, path_params, query, found)
        accounts |= found.accounts
        lookups.update(dict.fromkeys(found.lookups))
        if found.absent:
            default_account |= location.when_absent is WhenAbsent.DEFAULT_ACCOUNT
            all_accounts |= location.when_absent is WhenAbsent.ALL_ACCOUNTS
    return Touches(frozenset(accounts), default_account, all_accounts, tuple(lookups))


class _Found:
    """What one location yielded; ``absent`` when a slot it describes was empty."""

    __slots__ = ("absent", "accounts", "lookups")

    def __init__(self) -> None:
        self.accounts: set[str] = set()
        self.lookups: list[Lookup] = []
        self.absent = False


def _from_body(location: AccountLocation, body: object, found: _Found) -> None:
    excludable = location.path[-2:] == _EXCLUDABLE
    for where, value in _walk(body, location.path, "body", found):
        _add_names(value, location.form, where, excludable, found)


def _from_path(location: AccountLocation, params: Mapping[str, str], found: _Found) -> None:
    (name,) = location.path
    if name not in params:
        raise AccountsUnknown(f"path:{name}", "missing from the request path")
    _add_names(params[name], location.form, f"path:{name}", False, found)


def _from_query(location: AccountLocation, query: Sequence[tuple[str, str]], found: _Found) -> None:
    (name,) = location.path
    values = _query_values(query, name)
    if not values:
        found.absent = True
    for value in values:
        _add_names(value, location.form, f"query:{name}", False, found)


def _from_lookup(
    location: AccountLocation,
    body: object,
    params: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    found: _Found,
) -> None:
    source, *rest = location.path
    keys: list[tuple[str, object]]
    if source == "path":
        (name,) = rest
        if name not in params:
            raise AccountsUnknown(f"path:{name}", "missing from the request path")
        keys = [(f"path:{name}", params[name])]
    elif source == "query":
        (name,) = rest
        keys = [(f"query:{name}", v) for v in _query_values(query, name)]
    elif source == "body":
        keys = list(_walk(body, tuple(rest), "body", found))
    else:
        raise AccountsUnknown(str(location), f"unknown lookup source {source!r}")
    for where, key in keys:
        if not isinstance(key, str) or LOOKUP_KEY.fullmatch(key) is None:
            raise AccountsUnknown(where, f"{key!r} is not a {location.entity} key slurmgate reads")
        found.lookups.append(Lookup(location.entity, key))


def _query_values(query: Sequence[tuple[str, str]], name: str) -> list[str]:
    # Every repeat counts: slurmrestd takes the union of ?account=a&account=b (measured).
    values = []
    for key, value in query:
        if key == name:
            values.append(value)
        elif key.casefold() == name.casefold():
            raise AccountsUnknown(f"query:{key}", f"spelled unlike the parameter {name!r}")
    return values


def _walk(
    value: object, path: tuple[str, ...], where: str, found: _Found
) -> Iterator[tuple[str, object]]:
    """Yield (where, value) for each leaf ``path`` reaches; mark ``found.absent`` for empty ones.

    A missing or null *last* key is an empty slot (a job without ``account``); a missing or null
    container before it means the location does not apply (no ``job`` at all), so nothing.
    """
    if not path:
        yield where, value
        return
    step, rest = path[0], path[1:]
    if step == "[]":
        if not isinstance(value, list):
            raise AccountsUnknown(where, f"must be an array, not {_json_type(value)}")
        for index, item in enumerate(value):
            yield from _walk(item, rest, f"{where}[{index}]", found)
        return
    if not isinstance(value, dict):
        raise AccountsUnknown(where, f"must be an object, not {_json_type(value)}")
    for key in value:
        if key != step and key.casefold() == step.casefold():
            raise AccountsUnknown(f"{where}.{key}", f"spelled unlike the field {step!r}")
    child = value.get(step)
    if child is None:  # slurmrestd treats null as absent (measured: "account": null)
        found.absent |= not rest
        return
    yield from _walk(child, rest, f"{where}.{step}", found)


def _add_names(value: object, form: ValueForm, where: str, excludable: bool, found: _Found) -> None:
    if form is ValueForm.CSV:
        # slurmrestd's CSV fields also take an array of strings, each of which may be a list.
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            at = f"{where}[{index}]" if isinstance(value, list) else where
            if not isinstance(item, str):
                raise AccountsUnknown(at, f"must be a string, not {_json_type(item)}")
            for name in item.split(","):
                found.accounts.add(_account(name, at, excludable))
        return
    if not isinstance(value, str):
        raise AccountsUnknown(where, f"must be a string, not {_json_type(value)}")
    found.accounts.add(_account(value, where, excludable))


def _account(name: str, where: str, excludable: bool) -> str:
    if excludable and name.startswith("-"):
        name = name[1:]
    if ACCOUNT_NAME.fullmatch(name) is None:
        shown = repr(name) if len(name) <= 40 else repr(name[:40]) + "..."
        raise AccountsUnknown(where, f"{shown} is not an account name slurmgate accepts")
    return name.lower()
