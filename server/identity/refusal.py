"""Why a credential was not accepted: what the client is told, and what only the log gets."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

__all__ = ["RefusalLog", "Refused"]


class Refused(Exception):
    """A credential was refused.

    ``description`` is safe to send to the client; ``reason`` (for the log) may say more, e.g.
    "wrong secret" versus "unknown token name", which the client must not be able to tell apart.
    ``name`` is the token's name (or "munge:<uid>") when it is known; never a secret or a digest.
    ``trouble`` marks refusals caused by the gateway's side (munged down), logged as errors.
    """

    def __init__(
        self, description: str, *, reason: str, name: str | None = None, trouble: bool = False
    ) -> None:
        super().__init__(description)
        self.description = description
        self.reason = reason
        self.name = name
        self.trouble = trouble


@dataclass
class _Window:
    #: loop time at which the window closes
    until: float
    #: refusals not logged in it
    left_out: int = 0
    #: closes the window when something was left out
    timer: asyncio.TimerHandle | None = None


class RefusalLog:
    """Logs refusals: at most one line per description and level every ``interval`` seconds.

    Anyone can get refusals for free (garbage credentials), so one line each would let a flood
    fill the disk and bury everything else. Lines are limited per description, not per reason:
    descriptions are a small fixed set, while reasons name tokens and addresses, which a flood
    could vary. Refusals left out are counted; when the interval is over, one more line says how
    many there were.
    """

    def __init__(self, logger: logging.Logger, *, interval: float = 1.0) -> None:
        self._logger = logger
        self._interval = interval
        # (level, description) -> its current window; only log() and _close() touch it (guarded
        # by: the event loop, no await in either).
        self._windows: dict[tuple[int, str], _Window] = {}

    def log(self, level: int, description: str, message: str, *args: object) -> None:
        """Log ``message % args`` unless a line for ``description`` was logged just before."""
        key = (level, description)
        loop = asyncio.get_running_loop()
        now = loop.time()
        window = self._windows.get(key)
        if window is not None and now < window.until:
            window.left_out += 1
            if window.timer is None:
                window.timer = loop.call_at(window.until, self._close, key)
            return
        self._close(key)
        self._logger.log(level, message, *args)
        self._windows[key] = _Window(until=now + self._interval)

    def _close(self, key: tuple[int, str]) -> None:
        window = self._windows.pop(key, None)
        if window is None:
            return
        if window.timer is not None:
            window.timer.cancel()
        if window.left_out:
            level, description = key
            self._logger.log(
                level,
                "%d more refusals within %g s: %s (not logged one by one)",
                window.left_out,
                self._interval,
                description,
            )
