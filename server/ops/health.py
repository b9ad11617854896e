"""The checks behind ``GET /health``: slurmctld, slurmdbd, the cache backend, the SlurmUser token.

- ``slurmctld`` and ``slurmdbd``: slurmrestd's ``ping`` of the newest API version served that has
  one, sent as SlurmUser through the upstream transport. slurmrestd answers 200 even when a
  controller does not respond, so the body decides: every entry of ``pings`` responding (and
  ``pinged`` "UP" where the version reports it) is ok, some is degraded, none is failing.
- ``cache``: one read from the backend (Redis is reachable and not being left alone after a
  failure); memory is always ok, no cache is ok.
- ``slurm_user_token``: the manager holds a token that has not expired.

Each check may take ``health.timeout`` seconds. The report is ``failing`` when slurmctld or the
token fails (nothing can be served), ``degraded`` when anything else is not ok (slurmdbd, a
backup controller, the cache: requests are still served), else ``ok``. Concurrent requests share
one run of the checks, and a report is reused for ``health.max_age`` seconds, so that probes, even
anonymous ones, cost slurmctld at most one ping per replica per ``max_age``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from slurmgate.generated import ROUTES
from slurmgate.policies.routing import Namespace
from slurmgate.server.cache.flight import SingleFlight
from slurmgate.server.config import HealthSettings
from slurmgate.server.errors import SlurmgateError
from slurmgate.server.keys import CACHE, HEALTH, SETTINGS, SLURM_USER_TOKEN, UPSTREAM_VERSIONS
from slurmgate.server.upstream.acting import send_as

__all__ = ["HealthMonitor", "Report", "health_ctx", "judge_pings"]

log = logging.getLogger("slurmgate.health")

OK, DEGRADED, FAILING, SKIPPED = "ok", "degraded", "failing", "skipped"
#: Checks without which the gateway cannot answer any request.
_CRITICAL = ("slurmctld", "slurm_user_token")
#: the single-flight key of runs: every caller wants the same checks
_RUN = "checks"
Check = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Report:
    """One run of the checks."""

    status: str
    checks: dict[str, Check]
    #: when the checks started (seconds since the epoch)
    checked_at: float
    #: when the report was made (monotonic), to reuse it for max_age
    made: float = field(default=0.0, compare=False)

    def details(self) -> dict[str, object]:
        """The report with every check, for callers with the ``slurmgate:health`` scope."""
        when = datetime.fromtimestamp(self.checked_at, UTC).isoformat(timespec="milliseconds")
        return {"status": self.status, "checked_at": when[:-6] + "Z", "checks": self.checks}


def _ping_versions(namespace: Namespace) -> dict[str, str]:
    """API version -> the path of its GET ping in ``namespace``, for versions that have one."""
    found = {}
    for version, routes in ROUTES.items():
        for route in routes:
            ping = route.method == "GET" and route.path.rstrip("/").endswith("/ping")
            if ping and route.namespace is namespace:
                found[version] = route.path
    return found


_PINGS = {
    "slurmctld": _ping_versions(Namespace.SLURM),
    "slurmdbd": _ping_versions(Namespace.SLURMDB),
}


def judge_pings(body: bytes) -> Check:
    """A ping answer's verdict: ok, degraded (some controller not responding) or failing."""
    try:
        data = json.loads(body)
    except ValueError:
        return {"status": FAILING, "error": "the ping answer is not JSON"}
    if not isinstance(data, dict):
        return {"status": FAILING, "error": "the ping answer is not a JSON object"}
    errors = data.get("errors")
    if errors:
        return {
            "status": FAILING,
            "error": f"slurmrestd reports errors: {json.dumps(errors)[:300]}",
        }
    pings = data.get("pings")
    if not isinstance(pings, list) or not pings:
        return {"status": FAILING, "error": "the ping answer lists no controller"}
    controllers = []
    for ping in pings:
        entry = ping if isinstance(ping, dict) else {}
        # v0.0.40 to v0.0.42 also say "pinged": "UP"/"DOWN"; responding is in every version.
        up = entry.get("responding") is True and entry.get("pinged", "UP") == "UP"
        controllers.append(
            {
                "hostname": entry.get("hostname"),
                "primary": entry.get("primary"),
                "responding": up,
                "latency": entry.get("latency"),
            }
        )
    responding = sum(1 for c in controllers if c["responding"])
    if responding == len(controllers):
        status = OK
    elif responding:
        status = DEGRADED
    else:
        status = FAILING
    return {"status": status, "controllers": controllers}


class HealthMonitor:
    """Runs the checks for ``app``; see the module docstring."""

    def __init__(
        self,
        app: web.Application,
        settings: HealthSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._settings = settings
        self._clock = clock
        #: the last report; replaced only by a finished run
        self._last: Report | None = None
        #: the run under way, under the one key _RUN (close() cancels it)
        self._runs: SingleFlight[str, Report] = SingleFlight(name="slurmgate health checks")

    async def report(self) -> Report:
        """A report at most ``max_age`` old, or the one under way, or a new one."""
        last = self._last
        if last is not None and self._clock() - last.made < self._settings.max_age:
            return last
        # A client that goes away does not cancel the checks the others wait for.
        report, _ = await self._runs.do(_RUN, self._check)
        return report

    async def close(self) -> None:
        """Cancel a run under way."""
        await self._runs.cancel()

    async def _check(self) -> Report:
        checked_at = time.time()
        ctl, dbd, cache = await asyncio.gather(
            self._bounded(lambda: self._ping("slurmctld")),
            self._bounded(lambda: self._ping("slurmdbd")),
            self._bounded(self._cache),
        )
        # After the pings: a ping may have renewed an expired token on its way.
        checks = {
            "slurmctld": ctl,
            "slurmdbd": dbd,
            "cache": cache,
            "slurm_user_token": self._token(),
        }
        if any(checks[name]["status"] == FAILING for name in _CRITICAL):
            status = FAILING
        elif all(check["status"] in (OK, SKIPPED) for check in checks.values()):
            status = OK
        else:
            status = DEGRADED
        if status != OK:
            failed = ", ".join(f"{n} {c['status']}" for n, c in checks.items() if c["status"] != OK)
            log.warning("health: %s (%s)", status, failed)
        report = Report(status, checks, checked_at, made=self._clock())
        self._last = report
        return report

    async def _bounded(self, check: Callable[[], Awaitable[Check]]) -> Check:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.timeout):
                result = await check()
        except TimeoutError:
            result = {
                "status": FAILING,
                "error": f"no answer within health.timeout ({self._settings.timeout:g} s)",
            }
        except SlurmgateError as error:
            result = {"status": FAILING, "error": error.description}
        except Exception as error:  # a check must answer whatever went wrong
            log.exception("health check failed unexpectedly")
            result = {"status": FAILING, "error": f"unexpected {type(error).__name__}"}
        result["seconds"] = round(time.perf_counter() - started, 6)
        return result

    async def _ping(self, daemon: str) -> Check:
        paths = _PINGS[daemon]
        served = [v for v in self._app[UPSTREAM_VERSIONS].served if v in paths]
        if not served:
            return {"status": SKIPPED, "error": "no API version served here has this ping"}
        version = served[-1]
        answer = await send_as(
            self._app,
            "GET",
            paths[version],
            user=None,
            headers=(("Accept", "application/json"),),
            purpose="health",
        )
        if answer.status != 200:
            result: Check = {"status": FAILING, "error": f"the ping answered {answer.status}"}
        else:
            result = judge_pings(answer.body)
        return {"version": version, **result}

    async def _cache(self) -> Check:
        store = self._app[CACHE]
        backend = self._app[SETTINGS].cache.backend
        if store is None:
            return {"status": OK, "backend": backend}
        # One read of an entry that never exists: a real round trip to Redis, nothing in memory.
        lookup = await store.lookup("slurmgate health check", "slurmgate-health")
        if lookup.backend_ok:
            return {"status": OK, "backend": backend}
        return {
            "status": FAILING,
            "backend": backend,
            "error": "the cache backend is failing; requests go upstream uncached",
        }

    def _token(self) -> Check:
        token = self._app[SLURM_USER_TOKEN]
        result: Check = {
            "status": OK if token.valid else FAILING,
            "source": token.source,
            "renewal_failures": token.failures,
        }
        if token.expires_in is not None and token.age is not None:
            result["expires_in"] = round(token.expires_in, 3)
            result["age"] = round(token.age, 3)
        if not token.valid:
            result["error"] = token.last_error or "no SlurmUser token"
        return result


async def health_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[HEALTH]``; a run of the checks under way is cancelled at shutdown."""
    monitor = HealthMonitor(app, app[SETTINGS].health)
    app[HEALTH] = monitor
    try:
        yield
    finally:
        await monitor.close()
