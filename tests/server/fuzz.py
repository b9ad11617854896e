"""Fuzzing the running gateway with schemathesis, from the gateway's own OpenAPI document.

For each API version the document the gateway serves at ``/openapi/v3/<version>`` is loaded, and
every operation in it gets requests that schemathesis generates, valid ones (positive) and invalid
ones (negative), sent with a valid token until the budget of requests or seconds is spent. Each
answer is checked:

- **no 5xx made by the gateway**: the gateway's own answers carry ``meta.plugin.type ==
  "slurmgate"`` in slurmrestd's envelope (server/errors.py); a 5xx with any other plugin is
  slurmrestd's, relayed untouched, and only counted. A 5xx that is not JSON at all can only be
  aiohttp's own (an error outside the gateway's error middleware): also a failure;
- **no leaked secret**: neither the client's token nor any SlurmUser token (a JWT whose ``sun``
  is the SlurmUser) appears in any header or body; the gateway's log is searched the same way;
- **slurmrestd's failures**: a 502 after which slurmrestd is found dead, and a 504 that came
  within ``upstream.timeout`` (slurmrestd did not answer in time), are the gateway's right
  answers to slurmrestd's failures: counted and reported with the request, not failures;
- **no crash**: every request gets an answer (a refused connection or a reset is a failure) and
  the gateway process stays up (checked by the caller).

Mutating operations are sent with a token that cannot change the lab: :data:`FUZZ_SCOPES` grants
every read, and of the writes only ``slurm:jobs:manage``, limited to :data:`FUZZ_ACCOUNT`, an
account that does not exist in the lab. Every write the fuzzer can reach must then name that
account (refused by slurmctld: no such account) or act on existing jobs, whose accounts the
gateway looks up and refuses (403); writes of every other scope are refused by authorization
(403). :func:`check_fuzz_token_is_harmless` makes sure no write escapes these checks.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.core.result import Ok

from slurmgate.generated import ROUTES
from tests.lab.env import LabSuite
from tests.lab.private_restd import PrivateRestd
from tests.server.faults import GatewayProcess
from tests.server.gateway import create_token

__all__ = [
    "FUZZ_ACCOUNT",
    "FUZZ_SCOPES",
    "FuzzStats",
    "SuiteFuzz",
    "check_fuzz_token_is_harmless",
    "fuzz_suite",
    "fuzz_version",
    "leaked_secrets",
    "settle",
]

#: The only account the fuzzer's token may act on; the lab has no such account.
FUZZ_ACCOUNT = "sgfuzz-no-such-account"
#: Every read scope, the gateway's own scopes, and job writes (limited to FUZZ_ACCOUNT).
FUZZ_SCOPES = (
    "slurm:read",
    "slurmdb:read",
    "util:read",
    "slurm:jobs:manage",
    "slurmgate:meta",
    "slurmgate:health",
    "slurmgate:metrics",
    "slurmgate:hardware",
)
#: Scopes whose POSTs only compute (hostlist expansion): nothing to protect.
_COMPUTE_ONLY = frozenset({"util:read"})
#: What the HTTP client raises for a generated request it will not send (before any byte is).
_UNSENDABLE = (
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    UnicodeError,
    ValueError,
)
#: Headers the fuzzer sets itself: generated credentials would only make every request a 401.
_CREDENTIALS = frozenset({"authorization", "x-slurm-user-token", "x-slurm-user-name"})
_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.(eyJ[A-Za-z0-9_-]{4,})\.[A-Za-z0-9_-]+")
_REQUEST_TIMEOUT = 60.0
#: upstream.timeout of the fuzzed gateway, seconds: a 504 must come within it (plus a margin)
UPSTREAM_TIMEOUT = 30.0

AnyCase = Case[Any]
AnyOperation = APIOperation[Any, Any, Any, Any]


def check_fuzz_token_is_harmless() -> None:
    """Fail unless every mutating operation that :data:`FUZZ_SCOPES` allows is checked against
    the token's accounts (so that :data:`FUZZ_ACCOUNT` bounds what the fuzzer can change)."""
    loose = sorted(
        f"{route.method} {route.path}"
        for routes in ROUTES.values()
        for route in routes
        if route.mutating
        and route.scope in FUZZ_SCOPES
        and route.scope not in _COMPUTE_ONLY
        and not route.accounts
    )
    assert not loose, f"writes the fuzz token could make unchecked: {loose}"


@dataclass
class FuzzStats:
    """What one version's run did and found."""

    version: str
    operations: int = 0
    sent: int = 0
    #: generated requests the HTTP client would not send (a header it cannot encode, say)
    unsendable: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    #: 5xx answers slurmrestd made, relayed untouched (by status)
    upstream_5xx: Counter[int] = field(default_factory=Counter)
    #: what went wrong: the gateway's own 5xx, leaks, requests without an answer
    failures: list[str] = field(default_factory=list)
    #: requests after which slurmrestd was found dead (the gateway's 502 then says so
    #: rightly); slurmrestd was started again each time
    upstream_crashes: list[str] = field(default_factory=list)
    #: requests slurmrestd did not answer within upstream.timeout (the gateway's 504 then says
    #: so rightly, within that time)
    upstream_timeouts: list[str] = field(default_factory=list)
    #: 5xx answers that are not JSON, by X-Request-ID: slurmrestd's (26.05 answers some failures
    #: with a bare "Unspecified error") if the gateway's access log shows that slurmrestd
    #: answered this status to that request (see :func:`settle`), the gateway's otherwise
    unsettled: dict[str, tuple[int, str]] = field(default_factory=dict)

    def line(self) -> str:
        """One line for reports."""
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        relayed = sum(self.upstream_5xx.values())
        return (
            f"{self.version}: {self.sent} requests over {self.operations} operations in "
            f"{self.seconds:.0f} s ({statuses}); slurmrestd's own 5xx relayed: {relayed}; "
            f"slurmrestd crashes: {len(self.upstream_crashes)}; "
            f"slurmrestd timeouts: {len(self.upstream_timeouts)}; "
            f"gateway failures: {len(self.failures)}"
        )


def _jwt_users(data: bytes) -> Iterator[str]:
    """The ``sun`` claim of every JWT-shaped string in ``data``."""
    for match in _JWT.finditer(data):
        payload = match.group(1)
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except (binascii.Error, ValueError):
            continue
        if isinstance(claims, dict) and isinstance(claims.get("sun"), str):
            yield claims["sun"]


def leaked_secrets(data: bytes, token: str, slurm_user: str = "slurm") -> list[str]:
    """What ``data`` gives away: the client's token, or a SlurmUser token."""
    found = []
    if token.encode() in data:
        found.append("the client's token")
    if slurm_user in _jwt_users(data):
        found.append(f"a token of the SlurmUser ({slurm_user})")
    return found


def _gateway_5xx(response: Response) -> str | None:
    """Why a 5xx answer in JSON is the gateway's own, or None when slurmrestd made it."""
    data: Any = response.json()
    plugin = data.get("meta", {}).get("plugin", {}) if isinstance(data, dict) else {}
    if not isinstance(plugin, dict) or plugin.get("type") == "slurmgate":
        errors = data.get("errors") if isinstance(data, dict) else None
        return f"the gateway's own {response.status_code}: {json.dumps(errors)[:300]}"
    return None


def _clean(case: AnyCase) -> None:
    if case.headers:
        for name in [n for n in case.headers if n.lower() in _CREDENTIALS]:
            del case.headers[name]


def _operations(spec: dict[str, Any]) -> list[AnyOperation]:
    schema = schemathesis.openapi.from_dict(spec)
    return [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]


def fuzz_version(
    base_url: str,
    version: str,
    token: str,
    *,
    budget: int,
    seconds: float,
    upstream_died: Callable[[], bool] = lambda: False,
) -> FuzzStats:
    """Send at least ``budget`` generated requests for ``version`` (fewer only if ``seconds``
    run out first), spread evenly over its operations, positive and negative; see the module
    docstring for what is checked. ``upstream_died`` is asked after each of the gateway's own
    502s: True means slurmrestd died (and has been started again), so the 502 was right."""
    spec = requests.get(f"{base_url}/openapi/v3/{version}", timeout=_REQUEST_TIMEOUT).json()
    operations = _operations(spec)
    stats = FuzzStats(version, operations=len(operations))
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    per_round = max(1, math.ceil(budget / len(operations) / 2))

    def send(case: AnyCase) -> None:
        if time.monotonic() > deadline:
            return
        _clean(case)
        try:
            response = case.call(
                base_url=base_url, session=session, headers=headers, timeout=_REQUEST_TIMEOUT
            )
        except _UNSENDABLE:
            stats.unsendable += 1
            return
        except requests.RequestException as error:
            # Refused, reset, cut short, timed out: no (complete) answer.
            stats.sent += 1
            stats.failures.append(f"{case.method} {case.formatted_path}: no answer: {error!r}")
            return
        stats.sent += 1
        _check(stats, case, response, token, upstream_died)

    rounds = 0
    while stats.sent < budget and time.monotonic() < deadline:
        before = stats.sent
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _draw(operation, mode, per_round, send)
        rounds += 1
        if stats.sent == before:
            break  # nothing sendable: do not spin until the deadline
    stats.seconds = time.monotonic() - started
    return stats


def _draw(
    operation: AnyOperation, mode: GenerationMode, count: int, send: Callable[[AnyCase], None]
) -> None:
    """Run ``send`` on ``count`` cases of ``operation`` in ``mode`` (hypothesis, no shrinking:
    failures are recorded, not raised)."""
    try:
        strategy = operation.as_strategy(generation_mode=mode)
    except Exception:  # a mode schemathesis cannot generate for this operation
        return

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
        verbosity=Verbosity.quiet,
    )
    @given(case=strategy)
    def run(case: AnyCase) -> None:
        send(case)

    try:
        run()
    except Exception as error:  # generation trouble is schemathesis', not ours
        name = type(error).__name__
        if name not in ("Unsatisfiable", "FailedHealthCheck"):
            raise


def _check(
    stats: FuzzStats,
    case: AnyCase,
    response: Response,
    token: str,
    upstream_died: Callable[[], bool],
) -> None:
    status = response.status_code
    stats.statuses[status] += 1
    where = f"{case.method} {case.formatted_path}"
    header_bytes = "\n".join(
        f"{name}: {value}" for name, values in response.headers.items() for value in values
    ).encode()
    for leak in leaked_secrets(header_bytes + b"\n" + response.content, token):
        stats.failures.append(f"{where}: {status} leaks {leak}")
    if status >= 500 and not _is_json(response):
        request_id = next(
            (v[0] for k, v in response.headers.items() if k.lower() == "x-request-id" and v), ""
        )
        stats.unsettled[request_id] = (status, f"{where}: {response.content[:100]!r}")
    elif status >= 500:
        own = _gateway_5xx(response)
        if own is None:
            stats.upstream_5xx[status] += 1
        elif status == 502 and upstream_died():
            stats.upstream_crashes.append(_curl(case))
        elif status == 504 and response.elapsed < UPSTREAM_TIMEOUT + 5:
            stats.upstream_timeouts.append(_curl(case))
        else:
            stats.failures.append(f"{where}: {own}")


def _is_json(response: Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def settle(stats: FuzzStats, log: bytes) -> None:
    """Move each non-JSON 5xx to :attr:`FuzzStats.upstream_5xx` when the gateway's access log
    says slurmrestd answered it so, to :attr:`FuzzStats.failures` otherwise."""
    upstream: dict[str, object] = {}
    for line in log.splitlines():
        if line.startswith(b"{") and b'"request_id"' in line:
            entry = json.loads(line)
            upstream[entry["request_id"]] = entry.get("upstream_status")
    for request_id, (status, where) in stats.unsettled.items():
        if upstream.get(request_id) == status:
            stats.upstream_5xx[status] += 1
        else:
            stats.failures.append(
                f"{where}: a {status} that is not JSON nor slurmrestd's "
                f"(request {request_id}: upstream {upstream.get(request_id, 'not logged')})"
            )
    stats.unsettled.clear()


def _curl(case: AnyCase) -> str:
    try:
        return case.as_curl_command()
    except Exception as error:  # the command is for the report only
        return f"{case.method} {case.formatted_path} (no curl line: {type(error).__name__})"


@dataclass
class SuiteFuzz:
    """A suite's run: each version's stats, and what the gateway process did meanwhile."""

    suite: str
    versions: list[FuzzStats]
    #: the gateway was still running at the end
    alive: bool
    #: tracebacks and unhandled errors in its log
    crashes: list[str]
    #: secrets found in its log
    log_leaks: list[str]
    #: how often slurmrestd (ours) died under the fuzzer and was started again
    restd_deaths: int


def fuzz_suite(
    suite: LabSuite, versions: Sequence[str], workdir: Path, *, budget: int, seconds: float
) -> SuiteFuzz:
    """Fuzz ``versions`` through a ``slurmgate serve`` of our own in front of a slurmrestd of our
    own (a request that crashed slurmrestd must not take the lab's shared one down)."""
    check_fuzz_token_is_harmless()
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = workdir / "tokens.toml"
    token = create_token(tokens, "bob", scopes=FUZZ_SCOPES, accounts=(FUZZ_ACCOUNT,))
    restd = PrivateRestd(suite.root, workdir / "slurmrestd.log")
    restd.start()
    deaths = 0
    try:
        gateway = GatewayProcess(
            workdir,
            {
                "upstream": {"url": restd.url, "timeout": UPSTREAM_TIMEOUT},
                "slurm_user_token": {"jwt_key": str(suite.jwt_key)},
                "auth": {"tokens_file": str(tokens)},
                "cache": {"backend": "memory"},
            },
        )
        try:
            results = []

            def died() -> bool:
                nonlocal deaths
                if restd.is_slurmrestd() and restd.answers():
                    return False
                deaths += 1
                restd.stop()
                restd.start()
                return True

            for version in versions:
                results.append(
                    fuzz_version(
                        gateway.url,
                        version,
                        token,
                        budget=budget,
                        seconds=seconds,
                        upstream_died=died,
                    )
                )
            alive = gateway.alive()
        finally:
            gateway.stop()
        log = gateway.log.read_bytes()
        for stats in results:
            settle(stats, log)
        return SuiteFuzz(
            suite.name,
            results,
            alive,
            gateway.crashes(),
            leaked_secrets(log, token),
            deaths,
        )
    finally:
        restd.stop()
