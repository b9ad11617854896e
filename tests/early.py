"""Slow, self-contained work a fixture needs, started as soon as collection ends and run beside the
other tests at a lower CPU priority.

Building six client packages or importing every module in a fresh process is work for other
processes, mostly; run first and in line, it keeps one of a 2-core machine's cores idle for a
minute. Started early in a thread whose nice value (inherited by its threads and the processes
they start) lets every other test go first, it fills the idle core instead. The fixture waits for
the result and checks exactly what it checked before; without the hook (a run that selects no
test needing it) the fixture does the work itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

__all__ = ["EARLY", "FIXTURES", "NICE", "last", "result", "start", "start_if_wanted"]

T = TypeVar("T")

#: Added to the nice value of the thread doing the work (Linux: nice is per thread).
NICE = 10
#: The fixtures whose work starts early; the tests using them run last, to give it time.
FIXTURES = frozenset({"built_clients", "every_module_imported", "two_regens"})
#: Started work, by fixture name.
EARLY = pytest.StashKey[dict[str, "Future[Any]"]]()


def _lowered(work: Callable[[], T], done: Future[T]) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        done.set_result(work())
    except BaseException as error:  # handed to the fixture, raised there
        done.set_exception(error)


def start(config: pytest.Config, name: str, work: Callable[[], Any]) -> None:
    """Start ``work`` for fixture ``name`` in a daemon thread at a lower priority."""
    done: Future[Any] = Future()
    config.stash.setdefault(EARLY, {})[name] = done
    threading.Thread(target=_lowered, args=(work, done), name=f"early-{name}", daemon=True).start()


def last(items: list[pytest.Item]) -> None:
    """Move the tests that use an early fixture to the end, in their order
    (pytest_collection_modifyitems)."""
    items.sort(key=lambda item: not FIXTURES.isdisjoint(getattr(item, "fixturenames", ())))


def start_if_wanted(session: pytest.Session, name: str, work: Callable[[], Any]) -> None:
    """Start ``work`` early if a selected test uses fixture ``name`` (pytest_collection_finish)."""
    assert name in FIXTURES, f"add {name} to tests.early.FIXTURES"
    if session.config.option.collectonly:
        return
    if any(name in getattr(item, "fixturenames", ()) for item in session.items):
        start(session.config, name, work)


def result(config: pytest.Config, name: str, work: Callable[[], T]) -> T:
    """What the early ``work`` for ``name`` returned (waiting for it), or ``work()`` now."""
    done = config.stash.get(EARLY, {}).pop(name, None)
    if done is None:
        return work()
    found: T = done.result()
    return found
