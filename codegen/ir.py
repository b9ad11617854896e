"""The intermediate representation: the only thing parse hands to render.

Parse reads specs and policies and produces these frozen values; render turns them into files and
never looks at a spec or a policy file. Value types that also exist at run time (account locations,
cache policies, namespaces) come from :mod:`slurmgate.policies.routing`, so the generated table and
the IR cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from slurmgate.policies.routing import AccountLocation, CachePolicy, Namespace, OwnEndpoint

__all__ = [
    "NO_OWN_ENDPOINTS",
    "ApiSpec",
    "Build",
    "Operation",
    "OwnEndpoints",
    "OwnOperation",
    "Parameter",
    "Problem",
    "Route",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with an input, reported with every other problem at the end of a run."""

    where: str  # "v0.0.44 POST /slurm/v0.0.44/job/submit", "specs/MANIFEST line 3", ...
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Parameter:
    """A path or query parameter of an operation."""

    location: str  # "path" or "query"
    name: str
    required: bool


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation as the (fixed) spec describes it."""

    method: str  # upper case
    path: str  # template, as in the spec
    operation_id: str
    namespace: Namespace
    tag: str
    summary: str
    parameters: tuple[Parameter, ...]
    body_schema: str | None  # component name of the request body schema
    body_model: str | None  # class name of that schema in models.py


@dataclass(frozen=True, slots=True)
class Route:
    """An operation plus everything codegen decided about it from the policy files."""

    operation: Operation
    mutating: bool
    scope: str
    cache: CachePolicy
    cache_group: str  # "" unless cached
    invalidates: tuple[str, ...]  # sorted; () unless mutating
    accounts: tuple[AccountLocation, ...]


@dataclass(frozen=True, slots=True)
class OwnOperation:
    """One of the gateway's own endpoints: its row of ``generated/endpoints.py`` and its OpenAPI."""

    row: OwnEndpoint
    #: the declared OpenAPI fields (summary, description, parameters, responses), canonical JSON
    openapi: str
    origin: str  # "endpoints/hardware.yaml endpoints[0]", for messages


@dataclass(frozen=True, slots=True)
class OwnEndpoints:
    """The gateway's own endpoints and the component schemas they add, the same in every version."""

    operations: tuple[OwnOperation, ...]  # sorted by path, then method
    schemas: str  # canonical JSON: component name -> schema

    def schema_names(self) -> frozenset[str]:
        """The component schemas the declarations add."""
        names: dict[str, object] = json.loads(self.schemas)
        return frozenset(names)


#: No own endpoint at all (parse tests on hand-made specs).
NO_OWN_ENDPOINTS = OwnEndpoints((), "{}")


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """One API version, ready to render.

    ``document`` is the fixed OpenAPI document as canonical JSON text (sorted keys), which is what
    the models renderer feeds to datamodel-code-generator.
    """

    version: str  # "v0.0.44"
    slurm_release: str  # "26.05.5"
    spec_sha256: str
    document: str
    fixes: tuple[str, ...]  # one line per fix applied, for the log
    routes: tuple[Route, ...]  # sorted by path, then method
    own: OwnEndpoints  # added to the document of every version

    @property
    def module(self) -> str:
        """Python package name of the version: ``v0_0_44``."""
        return self.version.replace(".", "_")


@dataclass(frozen=True, slots=True)
class Build:
    """Every API version of one regen run, sorted by version, and the gateway's own endpoints."""

    apis: tuple[ApiSpec, ...]
    own: OwnEndpoints
