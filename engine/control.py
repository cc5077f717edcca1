"""Stop, pause and resume requests for a training run, honoured between iterations.

Thread-safe. A worker process passes `multiprocessing` Event objects so that its parent can
steer it across the process boundary; the trainer only ever calls `checkpoint()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class TrainingControl:
    def __init__(self, stop_event=None, running_event=None):
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._running = running_event if running_event is not None else threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        if not self._stop.is_set():
            self._running.clear()

    def resume(self) -> None:
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
            if on_pause:
                on_pause(True)
            while not self._running.wait(timeout=0.5):
                pass
            if on_pause and not self._stop.is_set():
                on_pause(False)
        return self._stop.is_set()
