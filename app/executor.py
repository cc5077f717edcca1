"""The worker boundary: where runs train, and how their events come back.

`Executor` is the whole interface the run service uses: submit a job and get a `RunHandle`
(stop, pause, resume, terminate), and receive the run's events through a callback. The local
implementation trains each run in a process of its own (multiprocessing, spawn); another
implementation (a Ray cluster, say) can replace it without touching routes or storage.

Guarantee to the caller: `on_event` is called from a background thread, in order, and the last
event of every run is exactly one `end`, also when the process crashed or was killed.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from app.worker import RunJob, run_worker
from engine.control import TrainingControl

EventCallback = Callable[[int, dict[str, Any]], None]


class RunHandle(Protocol):
    run_id: int

    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def terminate(self) -> None: ...


class Executor(Protocol):
    def submit(self, job: RunJob, on_event: EventCallback) -> RunHandle: ...
    def shutdown(self, timeout: float) -> None: ...


class LocalRunHandle:
    """One training process, its control events and the thread that pumps its queue."""

    def __init__(self, job: RunJob, context, on_event: EventCallback, stop_timeout: float):
        self.run_id = job.run_id
        self._on_event = on_event
        self._stop_timeout = stop_timeout
        self._events = context.Queue()
        stop_event, running_event = context.Event(), context.Event()
        self.control = TrainingControl(stop_event, running_event)
        self.process = context.Process(
            target=run_worker, args=(job, self._events, stop_event, running_event),
            name=f"mnist-lab-run-{job.run_id}", daemon=True,
        )
        self._pump = threading.Thread(target=self._pump_events, name=f"run-{job.run_id}-events",
                                      daemon=True)

    def start(self) -> None:
        self.process.start()
        self._pump.start()

    def stop(self) -> None:
        self.control.stop()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def join(self, timeout: float | None = None) -> bool:
        self._pump.join(timeout)
        return not self._pump.is_alive()

    def _pump_events(self) -> None:
        ended = False
        try:
            while not ended:
                try:
                    event = self._events.get(timeout=0.2)
                except queue_module.Empty:
                    if self.process.is_alive():
                        continue
                    event = self._drain_one()
                    if event is None:
                        break
                self._on_event(self.run_id, event)
                ended = event.get("event") == "end"
        except (EOFError, OSError, ValueError):  # a worker killed mid-message: report below
            pass
        self._reap()
        if not ended:
            self._on_event(self.run_id, {
                "event": "end", "status": "failed", "reason": _describe_exit(self.process.exitcode),
                "epoch": 0, "epochs_completed": None, "steps_completed": None,
                "test_accuracy": None, "duration_s": None,
            })
        self._events.close()
        self._events.cancel_join_thread()

    def _drain_one(self) -> dict[str, Any] | None:
        try:
            return self._events.get(timeout=0.1)
        except queue_module.Empty:
            return None

    def _reap(self) -> None:
        """Wait for the process to exit after its `end`; end it if it hangs."""
        self.process.join(self._stop_timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2.0)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return (f"the training process was killed by {name}; this happens when the machine runs "
                "out of memory or the process is ended from outside. Metrics and the model of "
                "the epochs finished before are kept; start a new run to train again")
    return (f"the training process exited unexpectedly (exit code {code}) without finishing "
            "the run; the server log may say why. Start a new run to train again")


class LocalProcessExecutor:
    """Each run in its own spawned process on this machine."""

    def __init__(self, stop_timeout: float = 10.0):
        self._context = multiprocessing.get_context("spawn")
        self._stop_timeout = stop_timeout
        self._handles: dict[int, LocalRunHandle] = {}
        self._lock = threading.Lock()

    def submit(self, job: RunJob, on_event: EventCallback) -> LocalRunHandle:
        def forget_when_ended(run_id: int, event: dict[str, Any]) -> None:
            if event.get("event") == "end":
                with self._lock:
                    self._handles.pop(run_id, None)
            on_event(run_id, event)

        handle = LocalRunHandle(job, self._context, forget_when_ended, self._stop_timeout)
        with self._lock:
            self._handles[job.run_id] = handle
        handle.start()
        return handle

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every run, wait for the processes to exit, kill those that do not."""
        with self._lock:
            handles = list(self._handles.values())
        for handle in handles:
            handle.stop()
        deadline = time.monotonic() + timeout
        for handle in handles:
            handle.process.join(max(0.0, deadline - time.monotonic()))
            handle.terminate()
            handle.join(max(0.5, deadline - time.monotonic()))
