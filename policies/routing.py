"""The routing tables' row types: what the server knows about one operation.

The generated ``slurmgate.generated.v0_0_XX.routes`` modules hold a tuple of :class:`Route` per API
version; codegen decides every field from the spec plus ``policies/*.toml``. The generated
``slurmgate.generated.endpoints`` holds one :class:`OwnEndpoint` per endpoint of the gateway's own,
decided from ``policies/endpoints/*.yaml``. This module is pure data: no I/O, no aiohttp, no
import of codegen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "MUTATING_METHODS",
    "Access",
    "AccountLocation",
    "ApiVersion",
    "CachePolicy",
    "LocationKind",
    "Namespace",
    "OwnEndpoint",
    "Route",
    "ValueForm",
    "WhenAbsent",
]

#: HTTP methods that change state by definition; a rule can mark a GET as mutating too.
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Namespace(StrEnum):
    """First path segment of a slurmrestd URL: which daemon or plugin answers.

    ``slurmgate`` is the namespace of the gateway's own endpoints in the policy files (their paths
    carry no namespace); it is never a slurmrestd operation's.
    """

    SLURM = "slurm"
    SLURMDB = "slurmdb"
    UTIL = "util"
    SLURMGATE = "slurmgate"


class CachePolicy(StrEnum):
    """How long a response may be reused; the server maps these names to TTLs."""

    NONE = "none"
    SHORT = "short"
    NORMAL = "normal"
    LONG = "long"


class LocationKind(StrEnum):
    """Where in a request an account name is found."""

    BODY = "body"
    PATH = "path"
    QUERY = "query"
    LOOKUP = "lookup"


class ValueForm(StrEnum):
    """How the value found at a location spells accounts."""

    NAME = "name"  # one account name (in a string array: one name per item)
    CSV = "csv"  # comma-separated account names in one string


class WhenAbsent(StrEnum):
    """What a request means for accounts when the location is missing from it."""

    NOTHING = "nothing"  # no account through this location
    DEFAULT_ACCOUNT = "default_account"  # Slurm uses the caller's default account
    ALL_ACCOUNTS = "all_accounts"  # a filter left out: the request covers every account


@dataclass(frozen=True, slots=True)
class AccountLocation:
    """One place in a request that names (or leads to) the Slurm accounts it touches.

    ``path`` depends on ``kind``: for BODY a JSON path whose ``"[]"`` steps stand for every item of
    an array (``("jobs", "[]", "account")``); for PATH and QUERY the one parameter name; for LOOKUP
    the place holding the key of the ``entity`` whose current account must be looked up, led by
    ``"path"``, ``"query"`` or ``"body"`` (``("path", "job_id")``, ``("body", "jobs", "[]")``).
    """

    kind: LocationKind
    path: tuple[str, ...]
    form: ValueForm = ValueForm.NAME
    when_absent: WhenAbsent = WhenAbsent.NOTHING
    entity: str = ""

    def __str__(self) -> str:
        if self.kind is LocationKind.LOOKUP:
            text = f"lookup:{self.entity}<{self.path[0]}:{_dotted(self.path[1:])}"
        else:
            text = f"{self.kind}:{_dotted(self.path)}"
        if self.form is not ValueForm.NAME:
            text += f"({self.form})"
        if self.when_absent is not WhenAbsent.NOTHING:
            text += f"?{self.when_absent}"
        return text

    def as_json(self) -> dict[str, object]:
        """Plain JSON-able form, for ``slurmgate routes --json`` and logs."""
        data: dict[str, object] = {"kind": str(self.kind), "path": list(self.path)}
        if self.entity:
            data["entity"] = self.entity
        data["form"] = str(self.form)
        data["when_absent"] = str(self.when_absent)
        return data


@dataclass(frozen=True, slots=True)
class Route:
    """One slurmrestd operation with every decision the gateway needs about it.

    A gateway's own endpoint that is cached (``namespace`` slurmgate) has one too, made at start
    from its :class:`OwnEndpoint` row, so that authorize and cache treat it like slurmrestd's reads.

    ``cache_group`` and ``invalidates`` carry read-your-writes: a cached read belongs to one cache
    group (a version-independent name such as ``"jobs"``), and a mutating operation names the
    groups whose cached reads it makes stale, in every API version.
    """

    method: str
    path: str  # template as in the spec, e.g. "/slurm/v0.0.45/job/{job_id}"
    operation_id: str
    namespace: Namespace
    tag: str
    body_model: str | None  # class name in the version's models.py
    mutating: bool
    scope: str
    cache: CachePolicy
    cache_group: str  # the group of a cached read; "" when mutating or never cached
    invalidates: tuple[str, ...]  # groups a mutating operation makes stale, sorted; () for reads
    accounts: tuple[AccountLocation, ...]

    def as_json(self) -> dict[str, object]:
        """Plain JSON-able form, for ``slurmgate routes --json``."""
        return {
            "method": self.method,
            "path": self.path,
            "operation_id": self.operation_id,
            "namespace": str(self.namespace),
            "tag": self.tag,
            "body_model": self.body_model,
            "mutating": self.mutating,
            "scope": self.scope,
            "cache_policy": str(self.cache),
            "cache_group": self.cache_group,
            "invalidates": list(self.invalidates),
            "accounts": [location.as_json() for location in self.accounts],
        }


class Access(StrEnum):
    """Who may call one of the gateway's own endpoints."""

    PUBLIC = "public"  # anyone: credentials are never looked at
    OPTIONAL = "optional"  # anyone; credentials that are sent must be valid and carry the scope
    TOKEN = "token"  # noqa: S105 - credentials with the scope are required (not a secret)


@dataclass(frozen=True, slots=True)
class OwnEndpoint:
    """One of the gateway's own endpoints, as declared in ``policies/endpoints/``.

    ``scope`` is None exactly when ``access`` is public; ``cache_group`` is "" exactly when
    ``cache`` is none, and only a ``token`` endpoint is cached (answers are filled per caller).
    """

    method: str
    path: str  # as in the OpenAPI documents: "/openapi/v3/{version}"
    router_path: str  # as aiohttp registers it, with the path parameters' patterns
    operation_id: str
    access: Access
    scope: str | None
    cache: CachePolicy
    cache_group: str


@dataclass(frozen=True, slots=True)
class ApiVersion:
    """One generated API version and the Slurm release its spec came from."""

    version: str  # "v0.0.45"
    slurm_release: str  # "26.05.5"
    spec_sha256: str


def _dotted(path: tuple[str, ...]) -> str:
    text = ""
    for step in path:
        if step == "[]":
            text += "[]"
        else:
            text += f".{step}" if text else step
    return text
