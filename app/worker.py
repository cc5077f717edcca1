"""The code that runs inside a training process: load MNIST, train, report, checkpoint.

Everything the server learns about a run comes through `events` (a multiprocessing queue) as
plain dicts with an "event" key: `start`, `iterations` (points batched ~20 times a second),
`epoch`, `checkpoint` (a model file was written at `path`; the server moves it into place),
`pause`, and exactly one `end`, last.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BATCH_INTERVAL_S = 0.05
BATCH_POINTS = 256


@dataclass(frozen=True)
class RunJob:
    """What a worker needs to train one run (picklable: it crosses the process boundary)."""

    run_id: int
    config: dict[str, Any]
    data_dir: Path
    model_path: Path
    train_subset: int | None = None
    test_subset: int | None = None
    nice: int = 0
    threads: int = 0


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def run_worker(job: RunJob, events, stop_event, running_event) -> None:
    """Process entry point. Never raises: any failure becomes an `end` event with the reason."""
    if job.threads > 0 and "numpy" not in sys.modules:
        # Before NumPy loads its BLAS: on a small machine a training process that spins several
        # BLAS threads fights the API (and the other runs) for the cores and gets slower, not faster.
        for name in THREAD_VARIABLES:
            os.environ[name] = str(job.threads)
    _exit_with_parent()
    if job.nice:
        try:
            os.nice(job.nice)
        except OSError:
            pass
    try:
        _train(job, events, stop_event, running_event)
    except BaseException as error:  # noqa: BLE001 - reported to the server, which marks the run failed
        events.put({"event": "end", "status": "failed", "epoch": 0, "epochs_completed": 0,
                    "steps_completed": 0, "test_accuracy": None, "duration_s": 0.0,
                    "reason": f"the training process failed: {type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(limit=8)})


def _train(job: RunJob, events, stop_event, running_event) -> None:
    # Imported here so that the parent never pays for what only the worker needs.
    from engine.config import TrainConfig
    from engine.control import TrainingControl
    from engine.data import load_mnist
    from engine.trainer import Trainer

    config = TrainConfig.from_dict(job.config)
    data = load_mnist(job.data_dir, fetch=False, train=job.train_subset, test=job.test_subset)
    control = TrainingControl(stop_event, running_event)
    trainer = Trainer(config, data, [_Forwarder(job, events)], control)
    trainer.run()


class _Forwarder:
    """A trainer listener: batches iteration points, saves a checkpoint after every epoch."""

    def __init__(self, job: RunJob, events):
        from engine.throughput import Throughput

        self.job = job
        self.events = events
        self.model = None
        self.throughput = Throughput()
        self.points: list[tuple[int, int, float]] = []
        self.learning_rate = 0.0
        self.flushed_at = time.monotonic()

    def bind(self, trainer) -> None:
        self.model = trainer.model

    def __call__(self, event) -> None:
        self.throughput(event)
        kind = event.event
        if kind == "start":
            self.events.put({"event": "start", "pid": os.getpid(), **_fields(event)})
            return
        if kind == "iteration":
            self.points.append((event.step, event.epoch, event.loss))
            self.learning_rate = event.learning_rate
            now = time.monotonic()
            if now - self.flushed_at >= BATCH_INTERVAL_S or len(self.points) >= BATCH_POINTS:
                self.flush(now)
            return
        self.flush(time.monotonic())
        if kind == "epoch":
            self.events.put({"event": "epoch", **_fields(event)})
            self.save(event.epoch)
        elif kind == "pause":
            self.events.put({"event": "pause", **_fields(event)})
        elif kind == "end":
            if event.status != "failed" and event.epochs_completed > 0:
                self.save(event.epochs_completed, test_accuracy=event.test_accuracy)
            self.events.put({"event": "end", **_fields(event)})

    def flush(self, now: float) -> None:
        if self.points:
            self.events.put({"event": "iterations", "points": self.points,
                             "samples_per_second": self.throughput.samples_per_second or 0.0,
                             "learning_rate": self.learning_rate})
            self.points = []
        self.flushed_at = now

    def save(self, epoch: int, **extra: Any) -> None:
        from engine.model import save_model

        # Written next to the run's model under a name of its own; the server moves it into place
        # once it has stored the epoch, so the model on disk never runs ahead of the record.
        path = pending_model_path(self.job.model_path, epoch)
        save_model(self.model, path, {"run_id": self.job.run_id, "epoch": epoch, **extra})
        self.events.put({"event": "checkpoint", "epoch": epoch, "path": str(path)})


def pending_model_path(model_path: Path, epoch: int) -> Path:
    """Where a worker saves the checkpoint of `epoch` before the server takes it over."""
    return model_path.with_name(f"{model_path.stem}.epoch-{epoch}{PENDING_SUFFIX}")


PENDING_SUFFIX = ".part.npz"


def _fields(event) -> dict[str, Any]:
    from engine.events import event_to_dict

    fields = event_to_dict(event)
    fields.pop("event", None)
    return fields


def _exit_with_parent() -> None:
    """If the server dies (even by SIGKILL) its training processes end too: no orphans."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
