"""The gateway's settings: one TOML file, validated at start, frozen afterwards.

Every key is documented in docs/configuration.md; ``slurmgate.example.toml`` is a complete example.
Validation reports every problem at once, each naming the file, the key and what is wrong.
pydantic does the checking (it is already a dependency, and its error locations name the key).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from slurmgate.generated import ROUTES, VERSIONS
from slurmgate.generated.endpoints import ENDPOINTS
from slurmgate.policies.requirements import Requirement
from slurmgate.policies.rules import load_scope_rules
from slurmgate.server.cache.settings import CacheSettings
from slurmgate.server.config_types import (
    ConfigPath,
    PositiveSeconds,
    Section,
    Text,
    Texts,
    parse_url,
)
from slurmgate.server.errors import ConfigError
from slurmgate.server.events.settings import EventsSettings

__all__ = [
    "AuthSettings",
    "AuthorizationSettings",
    "HealthSettings",
    "LimitsSettings",
    "ListenSettings",
    "MungeSettings",
    "RequirementSettings",
    "Settings",
    "SlurmUserTokenSettings",
    "TlsSettings",
    "UpstreamSettings",
    "load_settings",
    "parse_settings",
]


def _check_url(value: str) -> str:
    """An http(s) base URL: scheme, host, port, maybe a path prefix; no user, query, fragment."""
    url = parse_url(value)
    port = url.port
    if url.scheme not in ("http", "https") or not url.host or " " in value:
        raise ValueError(
            "must be http:// or https:// followed by a host, e.g. http://127.0.0.1:6820"
        )
    if url.user or url.query_string or url.fragment or port is None:
        raise ValueError(
            "must be scheme, host, port and optionally a path prefix, e.g. http://127.0.0.1:6820"
        )
    return value


class TlsSettings(Section):
    """HTTPS served by the gateway itself, for sites without a front proxy (server/cli/tls.py)."""

    #: PEM certificate chain, the server's certificate first; None = plain HTTP
    certificate: ConfigPath | None = None
    #: PEM private key of that certificate, not encrypted (the gateway starts unattended)
    key: ConfigPath | None = None
    #: PEM CA certificates: clients must present a certificate one of them signed; None = none asked
    client_ca: ConfigPath | None = None
    #: oldest TLS version accepted
    minimum_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _certificate_and_key(self) -> TlsSettings:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("'certificate' and 'key' go together: give both, or neither")
        if self.client_ca is not None and self.certificate is None:
            raise ValueError("'client_ca' needs 'certificate' and 'key' (TLS)")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the gateway serves HTTPS."""
        return self.certificate is not None


class ListenSettings(Section):
    """Where the gateway accepts clients."""

    host: Text = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    #: seconds requests under way may take to finish after SIGTERM/SIGINT, before they are cut
    shutdown_timeout: float = Field(30.0, ge=0, le=3600)
    tls: TlsSettings = TlsSettings()


class UpstreamSettings(Section):
    """How the gateway reaches slurmrestd."""

    transport: Literal["http", "unix", "inetd"] = "http"
    #: http: slurmrestd's base URL, e.g. http://127.0.0.1:6820
    url: Annotated[str, AfterValidator(_check_url)] | None = None
    #: unix: path of slurmrestd's unix socket (slurmrestd unix:/run/slurmrestd/slurmrestd.socket)
    socket: ConfigPath | None = None
    #: inetd: the command that runs slurmrestd with no listen address (one process per request)
    command: Texts = ()
    #: seconds to wait for a whole answer; then 504
    timeout: PositiveSeconds = 60.0
    #: seconds to wait for a connection (http, unix) or process start (inetd); then 502
    connect_timeout: PositiveSeconds = 5.0
    #: connections kept open to slurmrestd (http, unix)
    max_connections: int = Field(64, ge=1, le=4096)
    #: inetd: slurmrestd processes running at once; further requests wait (within timeout)
    max_processes: int = Field(16, ge=1, le=1024)
    #: largest answer taken from slurmrestd, in bytes; a larger one gets 502
    max_response_bytes: int = Field(256 << 20, ge=1 << 16, le=1 << 34)
    #: calls to slurmrestd under way at once, for every purpose but /health's pings
    max_concurrency: int = Field(32, ge=1, le=4096)
    #: slots one Slurm user may hold at once; beyond, its calls wait
    max_concurrency_per_caller: int = Field(16, ge=1, le=4096)
    #: calls waiting for one of those slots; beyond, 503
    max_queue: int = Field(256, ge=0, le=1 << 20)
    #: places in that queue one Slurm user may hold; beyond, 503
    max_queue_per_caller: int = Field(64, ge=0, le=1 << 20)
    #: seconds a call may wait for a slot; then 503
    queue_timeout: float = Field(10.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _transport_has_its_target(self) -> UpstreamSettings:
        needed = {"http": ("url", self.url), "unix": ("socket", self.socket)}
        if self.transport in needed:
            key, value = needed[self.transport]
            if not value:
                raise ValueError(f"transport {self.transport!r} needs 'upstream.{key}'")
        if self.transport == "inetd" and not self.command:
            raise ValueError("transport 'inetd' needs 'upstream.command' (a list of strings)")
        return self


class SlurmUserTokenSettings(Section):
    """Where the SlurmUser token that the gateway sends upstream comes from."""

    source: Literal["jwt_key", "command", "file"] = "jwt_key"
    #: the Slurm user the token is for: SlurmUser (or root), so that X-SLURM-USER-NAME is honoured
    user: Text = "slurm"
    #: jwt_key: Slurm's HS256 key file (AuthAltParameters=jwt_key=...)
    jwt_key: ConfigPath | None = None
    #: jwt_key: lifespan of each minted token, in seconds
    lifespan: int = Field(600, ge=10, le=86400)
    #: command: prints a token (or SLURM_JWT=...) on stdout, e.g. scontrol token lifespan=600
    command: Texts = ()
    #: file: holds the token (or SLURM_JWT=...), re-read when it changes
    file: ConfigPath | None = None
    #: renew when this fraction of the token's lifetime has passed
    renew_at: float = Field(0.5, gt=0, lt=1)
    #: seconds between attempts after a failed renewal
    retry_interval: PositiveSeconds = 5.0
    #: command: seconds the command may run before it is killed (a failed renewal)
    command_timeout: PositiveSeconds = 30.0
    #: file: seconds between checks whether the file changed
    poll_interval: PositiveSeconds = 5.0

    @model_validator(mode="after")
    def _source_has_its_input(self) -> SlurmUserTokenSettings:
        if self.source == "jwt_key" and self.jwt_key is None:
            raise ValueError("source 'jwt_key' needs 'slurm_user_token.jwt_key'")
        if self.source == "command" and not self.command:
            raise ValueError("source 'command' needs 'slurm_user_token.command'")
        if self.source == "file" and self.file is None:
            raise ValueError("source 'file' needs 'slurm_user_token.file'")
        return self


class MungeSettings(Section):
    """``Authorization: MUNGE <credential>`` for callers on the cluster."""

    enabled: bool = False
    #: the unmunge program (Debian's munge package)
    unmunge: Text = "unmunge"
    #: munged's socket; None = unmunge's default
    socket: ConfigPath | None = None
    #: oldest credential accepted, in seconds (also bounds the replay cache)
    max_age: int = Field(5, ge=1, le=300)
    #: scopes every MUNGE caller gets
    scopes: Texts = ()
    #: account patterns every MUNGE caller gets (empty = no restriction)
    accounts: Texts = ()
    #: passwd(5)-format file mapping a credential's uid to a user name; None = the system's
    #: user database (getpwuid). For users that exist only elsewhere, e.g. a chroot's /etc/passwd
    passwd_file: ConfigPath | None = None
    #: users MUNGE may not act as: root and SlurmUser are Slurm administrators, and any node's
    #: root can make credentials; give them bearer tokens instead
    deny_users: Texts = ("root", "slurm")
    #: requests per second of each MUNGE user (inf: no limit); None: limits.rate
    rate: float | None = Field(None, gt=0)
    #: requests at once of each MUNGE user; None: limits.burst, or one second's worth of rate
    burst: int | None = Field(None, ge=1, le=1 << 20)


class AuthSettings(Section):
    """How callers prove who they are."""

    #: the tokens file (TOML) managed by `slurmgate token`
    tokens_file: ConfigPath
    munge: MungeSettings = MungeSettings()


#: Unix group names as rules may list them (POSIX portable names; no ':' or ',' of group(5)).
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}")


@cache
def _declared_scopes() -> frozenset[str]:
    return frozenset(load_scope_rules().scopes)


@cache
def _operation_ids() -> frozenset[str]:
    own = (row.operation_id for row in ENDPOINTS if row.scope is not None)
    return frozenset(route.operation_id for routes in ROUTES.values() for route in routes) | set(
        own
    )


class RequirementSettings(Section):
    """One ``[[authorization.require]]`` rule: operations it picks, groups and networks needed."""

    #: operations needing one of these scopes are picked
    scopes: Texts = ()
    #: operations with one of these ids (``slurmgate routes``) are picked
    operations: Texts = ()
    #: the caller's user must be in one of these Unix groups (primary or supplementary)
    groups: Texts = ()
    #: the request's source address must be in one of these CIDR networks
    networks: Texts = ()

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [scope for scope in value if scope not in _declared_scopes()]
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; scopes are declared in scopes.toml")
        return value

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in _operation_ids()]
        if unknown:
            raise ValueError(f"unknown operation id(s) {unknown}; see `slurmgate routes`")
        return value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if _GROUP_NAME.fullmatch(name) is None]
        if bad:
            raise ValueError(f"not group name(s) {bad}; expected {_GROUP_NAME.pattern}")
        return value

    @field_validator("networks")
    @classmethod
    def _cidr(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=True)
            except ValueError as error:
                raise ValueError(f"{text!r} is not a CIDR network: {error}") from None
        return value

    @model_validator(mode="after")
    def _picks_and_requires(self) -> RequirementSettings:
        if not self.scopes and not self.operations:
            raise ValueError("a rule needs 'scopes' or 'operations' to pick operations")
        if not self.groups and not self.networks:
            raise ValueError("a rule needs 'groups' or 'networks' to require something")
        return self


class AuthorizationSettings(Section):
    """What operations require beyond a token's scopes: Unix groups and source networks."""

    #: rules; every rule that picks an operation must be satisfied
    require: tuple[RequirementSettings, ...] = Field((), strict=False)
    #: seconds a user's groups are remembered (0: resolved on every request that needs them)
    group_cache_seconds: float = Field(60.0, ge=0, le=86400)
    #: passwd(5)-format file for users' primary groups; None = the system's user database
    passwd_file: ConfigPath | None = None
    #: group(5)-format file for group members; None = the system's user database
    group_file: ConfigPath | None = None

    def requirements(self) -> tuple[Requirement, ...]:
        """The rules, ready for matching (``policies/requirements.py``)."""
        return tuple(
            Requirement(
                scopes=frozenset(rule.scopes),
                operations=frozenset(rule.operations),
                groups=rule.groups,
                networks=tuple(ipaddress.ip_network(text) for text in rule.networks),
                origin=f"authorization.require.{index}",
            )
            for index, rule in enumerate(self.require)
        )


class LimitsSettings(Section):
    """Limits on what clients may send, and how often (server/ops/limits.py)."""

    #: largest request body accepted, in bytes; larger gets 413
    max_body_bytes: int = Field(1 << 20, ge=1024, le=1 << 30)
    #: requests per second of each token (and MUNGE user) by default (inf: none); None: no limit
    rate: float | None = Field(None, gt=0)
    #: requests at once; None: one second's worth of rate
    burst: int | None = Field(None, ge=1, le=1 << 20)
    #: requests per second without valid credentials, per source address (IPv6: per /64)
    anonymous_rate: float | None = Field(None, gt=0)
    #: requests at once without valid credentials, per source; None: one second's worth
    anonymous_burst: int | None = Field(None, ge=1, le=1 << 20)
    #: callers (tokens, MUNGE users; sources) with buckets in use kept at most, each
    max_tracked: int = Field(100_000, ge=100, le=10_000_000)


class HealthSettings(Section):
    """``GET /health``: how long its checks may take, how long a report is reused."""

    #: seconds each check may take (slurmrestd's pings, the cache backend); a slower one fails
    timeout: float = Field(5.0, gt=0, le=300)
    #: seconds a report is reused by later requests (0: checked for every request)
    max_age: float = Field(2.0, ge=0, le=300)
    #: the status of a degraded answer (some checks fail, requests are still served)
    degraded_status: Literal[200, 503] = 200


class Settings(Section):
    """The whole configuration file."""

    listen: ListenSettings = ListenSettings()
    upstream: UpstreamSettings
    slurm_user_token: SlurmUserTokenSettings
    auth: AuthSettings
    authorization: AuthorizationSettings = AuthorizationSettings()
    limits: LimitsSettings = LimitsSettings()
    cache: CacheSettings = CacheSettings()
    health: HealthSettings = HealthSettings()
    events: EventsSettings = EventsSettings()
    #: API versions to serve (default: every generated version the upstream serves)
    versions: Texts = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("versions")
    @classmethod
    def _known_versions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = [api.version for api in VERSIONS]
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"unknown API version(s) {unknown}; known: {', '.join(known)}")
        if len(set(value)) != len(value):
            raise ValueError("a version is listed twice")
        return value


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_settings(data: dict[str, object], *, origin: str, base: Path | None = None) -> Settings:
    """Validate parsed TOML; raise :class:`ConfigError` naming every bad key.

    Relative paths are taken from ``base`` (the configuration file's folder) when given.
    """
    try:
        return Settings.model_validate(data, context={"base": base})
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{origin}: {_where(item['loc'])}: {message}")
        raise ConfigError(problems) from None


def load_settings(path: Path) -> Settings:
    """Read and validate the configuration file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: not UTF-8 text (byte {error.start})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: not valid TOML: {error}"]) from None
    return parse_settings(data, origin=str(path), base=path.resolve().parent)
