"""The one way tests wait: for a condition, never for a fixed time.

Machines differ by 2x in speed and the CI machine is shared, so a test polls for what it needs
(with a generous deadline that only bounds a failure) instead of sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
             what: str | Callable[[], str] = "condition",
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `predicate` until it returns something truthy; return that. AssertionError (naming
    `what`, or what `what()` says then) once `timeout` seconds have passed without it. `sleep`:
    how to pass the time between calls (a browser page passes its own, to keep serving events)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what() if callable(what) else what}")
        sleep(interval)


async def wait_for_async(predicate: Callable[[], T | Awaitable[T]], timeout: float = 30.0,
                         interval: float = 0.005, what: str = "condition") -> T:
    """`wait_for` on an event loop: the loop keeps running while it polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
