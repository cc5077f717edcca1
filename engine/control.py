"""Stop, pause, resume and step requests for a training run, honoured between iterations.

Thread-safe. A worker process passes `multiprocessing` objects (two Events and two Values) so that
its parent can steer it across the process boundary; the trainer only ever calls `checkpoint()`.

Step mode, as in TensorFlow Playground: `step(n)` on a paused run lets exactly n more iterations
through, then the run pauses again by itself (the next `checkpoint()` reports the pause).

A resume (or a step) followed at once by a pause can set and clear the running event before the
paused trainer wakes up: a `multiprocessing.Event` then looks as if nothing happened, and the
trainer would never report the second pause (its parent waited for it in vain). So every resume
and step also counts itself, and a paused trainer that finds the count changed reports that it
went on and paused again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class _Value:
    """An int behind a lock: the in-process stand-in for a `multiprocessing.Value('q')`, which
    has the same `value` and `get_lock()`."""

    def __init__(self):
        self.value = 0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


class TrainingControl:
    def __init__(self, stop_event=None, running_event=None, step_budget=None, resumes=None):
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._running = running_event if running_event is not None else threading.Event()
        self._budget = step_budget if step_budget is not None else _Value()  # steps left
        self._resumes = resumes if resumes is not None else _Value()  # resumes asked so far
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
        self._count_resume()
        with self._budget.get_lock():
            self._budget.value = 0  # no longer stepping: it runs on
            self._running.set()

    def step(self, steps: int) -> None:
        """Let a paused run take exactly `steps` more iterations, then pause again."""
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self._count_resume()
        with self._budget.get_lock():
            self._budget.value = steps
            self._running.set()

    def _count_resume(self) -> None:
        with self._resumes.get_lock():
            self._resumes.value += 1

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
            resumed = self._resumes.value  # read before reporting: a resume after it counts
            if on_pause:
                on_pause(True)
            while not self._running.wait(timeout=0.5):
                if self._resumes.value != resumed:  # resumed and paused again while asleep
                    resumed = self._resumes.value
                    if on_pause:
                        on_pause(False)
                        on_pause(True)
            if on_pause and not self._stop.is_set():
                on_pause(False)
        with self._budget.get_lock():
            if self._budget.value > 0:  # this iteration is one of a step request's
                self._budget.value -= 1
                if self._budget.value == 0 and not self._stop.is_set():
                    self._running.clear()  # the last one: pause before the next
        return self._stop.is_set()
