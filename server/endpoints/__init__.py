"""The gateway's own endpoints: one handler module each, bound to their generated rows here.

``generated/endpoints.py`` lists the endpoints ``policies/endpoints/*.yaml`` declare (method,
path, access, scope, cache policy); :data:`HANDLERS` names the handler of each by operation id, and
:func:`bind` pairs rows and handlers, refusing a row without a handler or a handler without a row.
Adding an endpoint: its declaration, its handler module, and its line here (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from aiohttp.typedefs import Handler

from slurmgate.policies.routing import OwnEndpoint
from slurmgate.server.endpoints import events, hardware, health, meta, metrics, openapi, usage

__all__ = ["HANDLERS", "bind"]

#: operation id (as declared) -> the handler that answers it
HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "slurmgate_get_events_jobs": events.jobs,
        "slurmgate_get_hardware_avail": hardware.avail,
        "slurmgate_get_hardware_stats": hardware.stats,
        "slurmgate_get_hardware_table": hardware.table,
        "slurmgate_get_health": health.health,
        "slurmgate_get_meta_versions": meta.versions,
        "slurmgate_get_metrics": metrics.metrics,
        "slurmgate_get_openapi": openapi.openapi,
        "slurmgate_get_openapi_version": openapi.openapi_version,
        "slurmgate_get_usage": usage.usage,
    }
)


def bind(
    rows: Iterable[OwnEndpoint], handlers: Mapping[str, Handler] = HANDLERS
) -> list[tuple[OwnEndpoint, Handler]]:
    """Each row with its handler; ValueError naming every row without a handler and every
    handler without a row (a declaration or a handler forgotten, or ``make regen`` not run)."""
    rows = tuple(rows)
    declared = {row.operation_id for row in rows}
    unhandled = sorted(declared - set(handlers))
    undeclared = sorted(set(handlers) - declared)
    if unhandled or undeclared:
        lines = [f"{name}: declared, but no handler in HANDLERS" for name in unhandled]
        lines += [f"{name}: in HANDLERS, but declared nowhere" for name in undeclared]
        raise ValueError("own endpoints and handlers do not match:\n  " + "\n  ".join(lines))
    return [(row, handlers[row.operation_id]) for row in rows]
