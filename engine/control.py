"""Stop, pause and resume requests for a training run, honoured between iterations.

Thread-safe. A worker process passes `multiprocessing` objects (two Events and a counter) so that
its parent can steer it across the process boundary; the trainer only ever calls `checkpoint()`.

A resume followed at once by a pause can set and clear the running event before the paused
trainer wakes up: a `multiprocessing.Event` then looks as if nothing happened, and the trainer
would never report the second pause (its parent waited for it in vain). So every resume also
counts itself, and a paused trainer that finds the count changed reports that it went on and
paused again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class _Counter:
    """An int behind a lock: the in-process stand-in for a `multiprocessing.Value('q')`, which
    has the same `value` and `get_lock()`."""

    def __init__(self):
        self.value = 0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


class TrainingControl:
    def __init__(self, stop_event=None, running_event=None, resumes=None):
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._running = running_event if running_event is not None else threading.Event()
        self._resumes = resumes if resumes is not None else _Counter()  # resumes asked so far
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        if not self._stop.is_set():
            self._running.clear()

    def resume(self) -> None:
        with self._resumes.get_lock():
            self._resumes.value += 1
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def pause_requested(self) -> bool:
        return not self._running.is_set()

    def checkpoint(self, on_pause: Callable[[bool], None] | None = None) -> bool:
        """Block while paused; return True when the run should stop.

        `on_pause(True)` is called when the pause takes effect and `on_pause(False)` on resume.
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
        return self._stop.is_set()
