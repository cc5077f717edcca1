"""Stop, pause, resume and step requests for a training run, honoured between iterations.

Thread-safe. A worker process passes `multiprocessing` objects (two Events and a Value) so that
its parent can steer it across the process boundary; the trainer only ever calls `checkpoint()`.

Step mode, as in TensorFlow Playground: `step(n)` on a paused run lets exactly n more iterations
through, then the run pauses again by itself (the next `checkpoint()` reports the pause).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class _Budget:
    """The steps a paused run may still take (an int behind a lock): the in-process stand-in for
    a `multiprocessing.Value('q')`, which has the same `value` and `get_lock()`."""

    def __init__(self):
        self.value = 0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


class TrainingControl:
    def __init__(self, stop_event=None, running_event=None, step_budget=None):
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._running = running_event if running_event is not None else threading.Event()
        self._budget = step_budget if step_budget is not None else _Budget()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        if not self._stop.is_set():
            with self._budget.get_lock():
                self._budget.value = 0
                self._running.clear()

    def resume(self) -> None:
        with self._budget.get_lock():
            self._budget.value = 0  # no longer stepping: it runs on
            self._running.set()

    def step(self, steps: int) -> None:
        """Let a paused run take exactly `steps` more iterations, then pause again."""
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        with self._budget.get_lock():
            self._budget.value = steps
            self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def pause_requested(self) -> bool:
        return not self._running.is_set()

    @property
    def steps_left(self) -> int:
        """Iterations a step request still lets through (0: not stepping)."""
        return self._budget.value

    def checkpoint(self, on_pause: Callable[[bool], None] | None = None) -> bool:
        """Block while paused; return True when the run should stop.

        `on_pause(True)` is called when the pause takes effect and `on_pause(False)` when the run
        goes on (resumed, or stepped: then `steps_left` already counts the steps it may take).
        """
        if not self._running.is_set():
            if on_pause:
                on_pause(True)
            while not self._running.wait(timeout=0.5):
                pass
            if on_pause and not self._stop.is_set():
                on_pause(False)
        with self._budget.get_lock():
            if self._budget.value > 0:  # this iteration is one of a step request's
                self._budget.value -= 1
                if self._budget.value == 0 and not self._stop.is_set():
                    self._running.clear()  # the last one: pause before the next
        return self._stop.is_set()
