"""The code that trains one run wherever an executor puts it: load MNIST, train, report, checkpoint.

`run_job(job, send, control)` is all of it, for any executor: it trains `job`, steered by `control`
(stop, pause, resume, step between two steps), and reports through `send`, one protocol message at
a time (app/protocol.py): a `StartEvent`, `Iterations` batched about 20 times a second, the layer
statistics (`LayersEvent`), an `EpochEvent` after every epoch and a `Checkpoint` for each epoch the
run keeps, `PauseEvent`s, and exactly one `Ended`, last, whatever happens. `run_worker` is the
local executor's process entry point around it; a Ray actor (app/executor_ray.py) is another,
which hands `run_job` MNIST from the cluster's object store and asks for checkpoints as bytes in
messages, since it shares no disk with the server.

The run's digits: the validation set is the last `validation_size` of MNIST's 60,000 training
digits, always; a server with `train_subset` N trains on the first N of the others
(engine.data.hold_out), so a quick run on a slice is validated on the same digits as a full one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from app.protocol import Checkpoint, CheckpointBytes, Ended, Iterations, Message, to_wire
from engine.blas import limit_blas_threads
from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.events import (
    EndEvent,
    EpochEvent,
    Event,
    IterationEvent,
    LayersEvent,
    PauseEvent,
    StartEvent,
)
from engine.throughput import Throughput

BATCH_INTERVAL_S = 0.05
BATCH_POINTS = 256
PENDING_SUFFIX = ".part.npz"

if TYPE_CHECKING:  # NumPy must not load before run_worker has set the BLAS threads: see run_job
    from engine.data import MnistData

Send = Callable[[Message], None]
CheckpointsAs = Literal["files", "bytes"]


@dataclass(frozen=True)
class RunJob:
    """What a worker needs to train one run (picklable: it crosses the process boundary)."""

    run_id: int
    config: TrainConfig
    data_dir: Path
    model_path: Path
    train_subset: int | None = None
    test_subset: int | None = None
    nice: int = 0
    threads: int = 0


def run_worker(job: RunJob, queue, stop_event, running_event, step_budget, resumes) -> None:
    """Process entry point of the local executor: messages go to `queue` as wire dicts, the
    parent steers through two multiprocessing Events and two Values (steps left, resumes asked;
    engine/control.py). Never raises."""
    limit_blas_threads(job.threads)
    _exit_with_parent()
    if job.nice:
        try:
            os.nice(job.nice)
        except OSError:
            pass
    run_job(job, lambda message: queue.put(to_wire(message)),
            TrainingControl(stop_event, running_event, step_budget, resumes))


def run_job(job: RunJob, send: Send, control: TrainingControl, *,
            data: Callable[[], MnistData] | None = None, checkpoints: CheckpointsAs = "files") -> None:
    """Train `job`, reporting through `send`. Never raises: a failure becomes the run's `Ended`.

    `data`: where MNIST comes from (default: read, verified, from the job's data dir), its whole
    training set: the validation digits are held out here, then the job's train_subset kept.
    `checkpoints`: "files" saves each one next to the run's model (a worker on the server's disk);
    "bytes" sends it inside the message instead (a worker that shares no disk with the server).
    """
    try:
        # Imported here, not at the top: NumPy must not load before run_worker has set the
        # number of BLAS threads (this module is imported to unpickle the job).
        from engine.data import hold_out, load_mnist
        from engine.inside import LayerWatch
        from engine.trainer import Trainer

        if data is None:
            mnist = load_mnist(job.data_dir, fetch=False, test=job.test_subset)
        else:
            mnist = data()
        split = hold_out(mnist, job.config.validation_size, train=job.train_subset)
        Trainer(job.config, split, [Reporter(job, send, checkpoints=checkpoints),
                                    LayerWatch(job.config.stats_every)], control).run()
    except BaseException as error:  # noqa: BLE001 - reported to the server, which marks the run failed
        send(Ended.failure(error))


class Reporter:
    """Trainer listener: the trainer's events as protocol messages (steps batched), and the model
    saved after every epoch the run keeps (selected on validation) and at the end."""

    def __init__(self, job: RunJob, send: Send, clock: Callable[[], float] = time.monotonic,
                 checkpoints: CheckpointsAs = "files"):
        self.job = job
        self.send = send
        self.checkpoints = checkpoints
        self.clock = clock
        self.trainer = None
        self.throughput = Throughput()
        self.points: list[tuple[int, int, float]] = []
        self.learning_rate = 0.0
        self.flushed_at = clock()

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def __call__(self, event: Event) -> None:
        self.throughput(event)
        match event:
            case IterationEvent():
                self.points.append((event.step, event.epoch, event.loss))
                self.learning_rate = event.learning_rate
                now = self.clock()
                if now - self.flushed_at >= BATCH_INTERVAL_S or len(self.points) >= BATCH_POINTS:
                    self.flush()
            case StartEvent() | PauseEvent() | LayersEvent():
                self.flush()
                self.send(event)
            case EpochEvent():
                self.flush()
                self.send(event)
                if self.trainer.model_epoch == event.epoch:  # kept: the best so far
                    self.save_checkpoint(event.epoch)
            case EndEvent():
                self.flush()
                if event.status != "failed" and event.model_epoch is not None:
                    # The trainer put the kept epoch's weights back: the model tested.
                    self.save(event.model_epoch, test_accuracy=event.test_accuracy,
                              test_loss=event.test_loss, selected_on="validation"
                              if self.trainer.data.has_validation else "last epoch")
                self.send(Ended.of(event))

    def flush(self) -> None:
        if self.points:
            self.send(Iterations(tuple(self.points), self.throughput.samples_per_second,
                                 self.learning_rate))
            self.points = []
        self.flushed_at = self.clock()

    def save_checkpoint(self, epoch: int) -> None:
        """The model after an epoch. A data dir that is full or read-only skips it (the run
        trains on; the next epoch's is tried again, and the last one must be saved or the run
        fails); any other failure ends the run."""
        from app.store import storage_problem

        try:
            self.save(epoch)
        except OSError as error:
            problem = storage_problem(error)
            if problem is None:
                raise
            print(f"run {self.job.run_id}: the model of epoch {epoch} was not saved ({problem}: "
                  f"{error}); training goes on", file=sys.stderr, flush=True)

    def save(self, epoch: int, **extra) -> None:
        from engine.model import model_bytes, save_model  # not at the top, for NumPy: see run_job

        metadata = {"run_id": self.job.run_id, "epoch": epoch, **extra}
        if self.checkpoints == "bytes":
            self.send(CheckpointBytes(epoch, model_bytes(self.trainer.model, metadata)))
            return
        # Written next to the run's model under a name of its own; the server moves it into place
        # once it has stored the epoch, so the model on disk never runs ahead of the record.
        path = pending_model_path(self.job.model_path, epoch)
        save_model(self.trainer.model, path, metadata)
        self.send(Checkpoint(epoch, str(path)))


def pending_model_path(model_path: Path, epoch: int) -> Path:
    """Where a worker saves the checkpoint of `epoch` before the server takes it over."""
    return model_path.with_name(f"{model_path.stem}.epoch-{epoch}{PENDING_SUFFIX}")


def checkpoint_from_bytes(model_path: Path, message: CheckpointBytes) -> Checkpoint:
    """On the server, for a worker that sent its checkpoint as bytes: the file written where that
    worker would have saved it (atomically), and the `Checkpoint` it would have sent. The run
    service then takes it over as any other, once the epoch is stored."""
    from engine.data import atomic_writer  # not at the top, for NumPy's sake: see run_job

    path = pending_model_path(model_path, message.epoch)
    path.parent.mkdir(parents=True, exist_ok=True)  # (a local worker's save_model makes it too)
    with atomic_writer(path) as file:
        file.write(message.content)
    return Checkpoint(message.epoch, str(path))


def _exit_with_parent() -> None:
    """If the server dies (even by SIGKILL) its training processes end too: no orphans."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
