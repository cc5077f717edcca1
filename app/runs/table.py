"""The run table: every run the server knows (a `RunState` by id), and the live part of those that
are queued, running or paused: the feed watchers read and the handle of the worker. Used on the
event loop only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from app.broadcast import RunFeed
from app.executor import RunHandle
from app.runs.errors import RunNotFound
from app.runs.state import RunState
from engine.config import TrainConfig


@dataclass
class LiveRun:
    """What the server holds for a run that a worker may still change."""

    run_id: int
    config: TrainConfig
    feed: RunFeed
    handle: RunHandle | None = None  # None until a worker was asked to train it
    _waiters: set[asyncio.Event] = field(default_factory=set)

    def changed(self) -> None:
        """Wake everyone waiting in `until`: the run's state changed."""
        for waiter in self._waiters:
            waiter.set()

    async def until(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until `condition()` holds (checked after each change), at most `timeout` seconds;
        whether it holds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not condition():
            waiter = asyncio.Event()
            self._waiters.add(waiter)
            try:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), left)
            finally:
                self._waiters.discard(waiter)
        return True


class RunTable:
    def __init__(self):
        self.rows: dict[int, RunState] = {}
        self.live: dict[int, LiveRun] = {}

    def get(self, run_id: int) -> RunState:
        run = self.rows.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    def put(self, run: RunState) -> None:
        self.rows[run.id] = run

    def remove(self, run_id: int) -> None:
        self.rows.pop(run_id, None)
        self.live.pop(run_id, None)

    def newest_first(self) -> list[RunState]:
        return [self.rows[run_id] for run_id in sorted(self.rows, reverse=True)]
