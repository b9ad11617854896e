"""SIGHUP: reload the tokens file and what of the configuration can change while serving.

Reloaded from the configuration file (:data:`RELOADABLE`): the group and network rules
(``[[authorization.require]]``), the rate limits (``limits.rate``, ``burst``, ``anonymous_*``,
``max_tracked``, ``auth.munge.rate`` and ``burst``), the upstream gate's bounds
(``upstream.max_concurrency``, ``max_concurrency_per_caller``, ``max_queue``,
``max_queue_per_caller``, ``queue_timeout``) and ``log_level``. They live in objects the
pipeline reads on every request (``app[RATE_LIMITS]``, ``app[UPSTREAM_GATE]``,
``app[REQUIREMENTS]``), each replaced or reconfigured without an await, so a request sees the
old policy or the new one, never a mix. Everything else (listen address, transport, SlurmUser
token source, the cache, MUNGE's scopes and accounts, health, versions, body size) is built into
connections, processes or routes at start and needs a restart: a reload that finds such a key
changed keeps its old value and logs a warning naming it.

Fail closed, but not to nothing: a configuration file that cannot be read or is not valid keeps
every policy as it was and logs each problem at ``error``; the tokens file is reloaded on its
own terms (server/identity/tokens.py: a broken one keeps the tokens loaded before). SIGHUPs that
arrive during a reload are merged into one more reload after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import web

from slurmgate.server.config import Settings, load_settings
from slurmgate.server.errors import ConfigError
from slurmgate.server.keys import (
    CONFIG_FILE,
    RATE_LIMITS,
    RELOADER,
    REQUIREMENTS,
    SETTINGS,
    TOKENS,
    UPSTREAM_GATE,
)
from slurmgate.server.ops.limits import RateLimits
from slurmgate.server.upstream.gate import UpstreamGate

__all__ = ["RELOADABLE", "Reloader", "apply_policies", "reload_ctx"]

log = logging.getLogger("slurmgate.reload")

#: Dotted keys (or tables: every key under them) that a reload applies.
RELOADABLE = (
    "authorization.require",
    "limits.rate",
    "limits.burst",
    "limits.anonymous_rate",
    "limits.anonymous_burst",
    "limits.max_tracked",
    "auth.munge.rate",
    "auth.munge.burst",
    "upstream.max_concurrency",
    "upstream.max_concurrency_per_caller",
    "upstream.max_queue",
    "upstream.max_queue_per_caller",
    "upstream.queue_timeout",
    "log_level",
)


def make_limits(settings: Settings) -> RateLimits:
    """The rate limits ``settings`` describe (no buckets yet)."""
    limits = RateLimits()
    _configure_limits(limits, settings)
    return limits


def make_gate(settings: Settings) -> UpstreamGate:
    """The upstream gate ``settings`` describe."""
    up = settings.upstream
    return UpstreamGate(
        max_concurrency=up.max_concurrency,
        max_concurrency_per_caller=up.max_concurrency_per_caller,
        max_queue=up.max_queue,
        max_queue_per_caller=up.max_queue_per_caller,
        queue_timeout=up.queue_timeout,
    )


def _configure_limits(limits: RateLimits, settings: Settings) -> None:
    own, munge = settings.limits, settings.auth.munge
    limits.configure(
        rate=own.rate,
        burst=own.burst,
        munge_rate=munge.rate,
        munge_burst=munge.burst,
        anonymous_rate=own.anonymous_rate,
        anonymous_burst=own.anonymous_burst,
        max_tracked=own.max_tracked,
    )


def apply_policies(app: web.Application, settings: Settings) -> None:
    """Put the reloadable part of ``settings`` in force (no await: all at once)."""
    _configure_limits(app[RATE_LIMITS], settings)
    up = settings.upstream
    app[UPSTREAM_GATE].configure(
        max_concurrency=up.max_concurrency,
        max_concurrency_per_caller=up.max_concurrency_per_caller,
        max_queue=up.max_queue,
        max_queue_per_caller=up.max_queue_per_caller,
        queue_timeout=up.queue_timeout,
    )
    # In place: the authorize step holds this very list.
    app[REQUIREMENTS][:] = settings.authorization.requirements()


def _flatten(data: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _reloadable(key: str) -> bool:
    return any(key == name or key.startswith(name + ".") for name in RELOADABLE)


def changed_keys(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """Keys whose values differ: (reloadable ones, ones that need a restart), sorted."""
    # Lists of tables (authorization.require) compare as a whole, under their own key.
    before, after = _flatten(old.model_dump()), _flatten(new.model_dump())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [k for k in changed if _reloadable(k)], [k for k in changed if not _reloadable(k)]


class Reloader:
    """Reloads on request (SIGHUP); see the module docstring."""

    def __init__(self, app: web.Application, config_file: Path | None) -> None:
        self._app = app
        self._config_file = config_file
        #: the settings the gateway started with (in force for the keys that need a restart)
        self._started = app[SETTINGS]
        #: the settings last loaded (in force for the reloadable keys)
        self._current = self._started
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sighup = False
        #: reloads completed (whatever their outcome), for tests and logs
        self.completed = 0

    async def reload(self) -> bool:
        """Reload the tokens file and the configuration; False if the configuration was kept."""
        tokens = self._app.get(TOKENS)
        if tokens is not None:
            try:
                await tokens.refresh(force=True)
            except Exception:
                log.exception("tokens file: reload failed")
        try:
            return await self._reload_config()
        finally:
            self.completed += 1

    async def _reload_config(self) -> bool:
        path = self._config_file
        if path is None:
            return True
        try:
            new = await asyncio.to_thread(load_settings, path)
        except ConfigError as error:
            log.error(
                "configuration %s not reloaded, keeping the policies in force; %d problem(s):\n%s",
                path,
                len(error.problems),
                "\n".join(error.problems),
            )
            return False
        reloaded, _ = changed_keys(self._current, new)
        _, restart = changed_keys(self._started, new)
        apply_policies(self._app, new)
        if new.log_level != self._current.log_level:
            logging.getLogger().setLevel(new.log_level.upper())  # as configure_logging set it
        self._current = new
        log.info(
            "configuration %s reloaded: %s",
            path,
            ", ".join(reloaded) if reloaded else "no reloadable key changed",
        )
        if restart:
            log.warning(
                "configuration %s: changed but applied only by a restart, old values kept: %s",
                path,
                ", ".join(restart),
            )
        return True

    def start(self) -> None:
        """Reload on every SIGHUP until :meth:`stop`."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError, ValueError) as error:
            # Not the main thread, or no signals here: serve anyway, the tokens file's watcher
            # still reloads it; only the configuration's policies need a restart then.
            log.warning(
                "SIGHUP cannot reload here (%s): configuration changes need a restart", error
            )
        else:
            self._sighup = True
        self._task = asyncio.create_task(self._run(), name="slurmgate reload")

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading the tokens file and the configuration")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()  # before: a SIGHUP during this reload asks for one more
            try:
                await self.reload()
            except Exception:
                log.exception("reload failed")

    async def stop(self) -> None:
        """Stop reloading; SIGHUP is then ignored (never the default action: ending the process)."""
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            self._sighup = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def reload_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[RELOADER]``, reloading on SIGHUP while the app runs."""
    reloader = Reloader(app, app[CONFIG_FILE])
    app[RELOADER] = reloader
    reloader.start()
    try:
        yield
    finally:
        await reloader.stop()
