"""The worker boundary: where runs train, and how their messages come back.

`Executor` is the whole interface the run service uses: `submit` a job with a callback and get a
`RunHandle` (stop, pause, resume, step, terminate); the callback receives the run's messages, typed
(app/protocol.py), decoded once from the wire right here. The local implementation trains each run
in a process of its own (multiprocessing, spawn); app/executor_ray.py trains each in a Ray actor
on a cluster instead, without touching routes or storage (app.main.make_executor picks one). Both
keep the guarantee:

    `on_message(run_id, message)` is called from a background thread, in order for each run, and
    the last message of every run is exactly one `Ended`, also when its process crashed or was
    killed (then `Ended.death`).
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queue_module
import threading
import time
from collections.abc import Callable
from typing import Protocol

from app.protocol import Ended, Message, ProtocolError, from_wire
from app.worker import RunJob, run_worker
from engine.control import TrainingControl

logger = logging.getLogger("app.executor")

MessageCallback = Callable[[int, Message], None]


class RunHandle(Protocol):
    run_id: int

    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step(self, steps: int) -> None: ...  # a paused run trains `steps` more, then pauses
    def terminate(self) -> None: ...


class Executor(Protocol):
    def submit(self, job: RunJob, on_message: MessageCallback) -> RunHandle: ...
    def shutdown(self, timeout: float) -> None: ...


class ExecutorError(RuntimeError):
    """An executor that cannot start (a cluster that does not answer, a library not installed)."""


class LocalRunHandle:
    """One training process, its control events and the thread that pumps its queue."""

    def __init__(self, job: RunJob, context, on_message: MessageCallback, stop_timeout: float):
        self.run_id = job.run_id
        self._on_message = on_message
        self._stop_timeout = stop_timeout
        self._queue = context.Queue()
        stop_event, running_event = context.Event(), context.Event()
        step_budget, resumes = context.Value("q", 0), context.Value("q", 0)
        self.control = TrainingControl(stop_event, running_event, step_budget, resumes)
        self.process = context.Process(
            target=run_worker,
            args=(job, self._queue, stop_event, running_event, step_budget, resumes),
            name=f"mnist-lab-run-{job.run_id}", daemon=True,
        )
        self._pump = threading.Thread(target=self._pump_messages, name=f"run-{job.run_id}-messages",
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

    def step(self, steps: int) -> None:
        self.control.step(steps)

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def join(self, timeout: float | None = None) -> bool:
        self._pump.join(timeout)
        return not self._pump.is_alive()

    def _pump_messages(self) -> None:
        ended = False
        try:
            while not ended:
                try:
                    wire = self._queue.get(timeout=0.2)
                except queue_module.Empty:
                    if self.process.is_alive():
                        continue
                    wire = self._drain_one()
                    if wire is None:
                        break
                try:
                    message = from_wire(wire)
                except ProtocolError:
                    logger.exception("run %s: the worker sent a message this server does not "
                                     "understand; ignored", self.run_id)
                    continue
                self._on_message(self.run_id, message)
                ended = isinstance(message, Ended)
        except (EOFError, OSError, ValueError):  # a worker killed mid-message: reported below
            pass
        self._reap()
        if not ended:
            self._on_message(self.run_id, Ended.death(self.process.exitcode))
        self._queue.close()
        self._queue.cancel_join_thread()

    def _drain_one(self) -> dict | None:
        try:
            return self._queue.get(timeout=0.1)
        except queue_module.Empty:
            return None

    def _reap(self) -> None:
        """Wait for the process to exit after its `Ended`; end it if it hangs."""
        self.process.join(self._stop_timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2.0)


class LocalProcessExecutor:
    """Each run in its own spawned process on this machine."""

    def __init__(self, stop_timeout: float = 10.0):
        self._context = multiprocessing.get_context("spawn")
        self._stop_timeout = stop_timeout
        self._handles: dict[int, LocalRunHandle] = {}
        self._lock = threading.Lock()

    def submit(self, job: RunJob, on_message: MessageCallback) -> LocalRunHandle:
        def forget_when_ended(run_id: int, message: Message) -> None:
            if isinstance(message, Ended):
                with self._lock:
                    self._handles.pop(run_id, None)
            on_message(run_id, message)

        handle = LocalRunHandle(job, self._context, forget_when_ended, self._stop_timeout)
        with self._lock:
            self._handles[job.run_id] = handle
        handle.start()
        return handle

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every run, wait for the processes to exit, kill those that do not."""
        with self._lock:
            handles = list(self._handles.values())
        stop_all(handles, timeout, lambda handle, seconds: handle.process.join(seconds))


def stop_all(handles: list, timeout: float, wait: Callable[[RunHandle, float], object]) -> None:
    """An executor's shutdown: stop every run, give them `timeout` seconds in all to end
    (`wait(handle, seconds)`), end those still going, and wait for each run's last message
    (`handle.join`)."""
    for handle in handles:
        handle.stop()
    deadline = time.monotonic() + timeout
    for handle in handles:
        wait(handle, max(0.0, deadline - time.monotonic()))
    for handle in handles:
        handle.terminate()
        handle.join(max(2.0, deadline - time.monotonic()))
