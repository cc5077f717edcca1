"""Training speed, measured from the outside: a listener that times the steps the trainer reports.

    rate_t = samples_t / (time of step t - time of step t-1)
    samples_per_second ← 0.9 · samples_per_second + 0.1 · rate_t   (the first rate as it is)

The clock restarts whenever time passes that is not training: at the start, after each epoch's
validation pass and on resuming from a pause, so neither counts as a slow step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.events import EpochEvent, Event, IterationEvent, PauseEvent, StartEvent


class Throughput:
    def __init__(self, clock: Callable[[], float] = time.perf_counter, smoothing: float = 0.9):
        self.clock = clock
        self.smoothing = smoothing
        self.samples_per_second: float | None = None  # None until a step was timed
        self._last: float | None = None

    def __call__(self, event: Event) -> None:
        match event:
            case IterationEvent(samples=samples):
                now = self.clock()
                if self._last is not None:
                    rate = samples / max(now - self._last, 1e-9)
                    previous = self.samples_per_second
                    self.samples_per_second = rate if previous is None else (
                        self.smoothing * previous + (1 - self.smoothing) * rate)
                self._last = now
            case StartEvent() | EpochEvent() | PauseEvent():
                self._last = self.clock()
