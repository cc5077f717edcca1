"""What the server knows about its runs but has not stored yet, and storing it, in order.

A full or read-only data dir must not lose a step, and nothing may be told (streamed, or shown
as a model) before it is stored, or a restart would contradict what clients saw. So what a worker
reports goes through here: each run's steps, epochs, checkpoints and changes to its record wait
in the order they came, and `write` stores them in that order whenever it is asked (at once,
normally: then nothing waits at all; after a failure, on every new message and every
`flush_interval_s`, until the disk takes them). A checkpoint is moved into place only once its
epoch is stored, a run's record is updated only once its steps and epochs are, and what one
`write` stored is handed back for the run service to stream. Used on the event loop only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from app.protocol import Checkpoint, Point
from app.runs.models import ModelFiles
from app.store import Store, storage_problem

logger = logging.getLogger("app.runs")

WRITE_POINTS = 20_000  # at most this many steps in one transaction (the event loop waits for it)


@dataclass
class Unstored:
    """One run's reports that are not stored yet, oldest first."""

    points: list[Point] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # run columns, latest values

    def __bool__(self) -> bool:
        return bool(self.points or self.epochs or self.checkpoints or self.record)


@dataclass
class Stored:
    """What one `write` stored (for the service to stream and apply)."""

    points: list[Point] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)


class Backlog:
    def __init__(self, store: Store, models: ModelFiles):
        self.store = store
        self.models = models
        self.runs: dict[int, Unstored] = {}
        self.problem: str | None = None  # why the last write failed; None once one works
        self.error: Exception | None = None  # that failure

    # --- what waits --------------------------------------------------------------------------
    def _of(self, run_id: int) -> Unstored:
        return self.runs.setdefault(run_id, Unstored())

    def add_points(self, run_id: int, points) -> None:
        self._of(run_id).points.extend(points)

    def add_epoch(self, run_id: int, epoch: dict[str, Any]) -> None:
        self._of(run_id).epochs.append(epoch)

    def add_checkpoint(self, run_id: int, checkpoint: Checkpoint) -> None:
        self._of(run_id).checkpoints.append(checkpoint)

    def add_record(self, run_id: int, changes: dict[str, Any]) -> None:
        self._of(run_id).record.update(changes)

    def unstored(self, run_id: int) -> Unstored | None:
        pending = self.runs.get(run_id)
        return pending if pending else None

    def checkpoint_paths(self, run_id: int) -> set[str]:
        pending = self.runs.get(run_id)
        return {checkpoint.path for checkpoint in pending.checkpoints} if pending else set()

    def forget(self, run_id: int) -> None:
        """The run was deleted: nothing of it is to be written any more."""
        pending = self.runs.pop(run_id, None)
        for checkpoint in pending.checkpoints if pending else ():
            self.models.discard(checkpoint.path)

    # --- writing ------------------------------------------------------------------------------
    def write(self, run_id: int) -> Stored:
        """Store what waits for the run, in order, as far as the disk takes it; what was stored.
        A full or read-only disk stops it where it failed (remembered in `problem`, logged once);
        any other error is raised."""
        stored = Stored()
        pending = self.runs.get(run_id)
        if not pending:
            self.runs.pop(run_id, None)
            return stored
        try:
            while pending.points:
                batch = pending.points[:WRITE_POINTS]
                self.store.add_iterations(run_id, batch)
                del pending.points[:len(batch)]
                stored.points.extend(batch)
            while pending.epochs:
                self.store.add_epoch(run_id, pending.epochs[0])
                stored.epochs.append(pending.epochs.pop(0))
            while pending.checkpoints:  # their epochs are stored: the models may show
                checkpoint = pending.checkpoints[0]
                try:
                    self.models.take_over(run_id, checkpoint.path)
                except FileNotFoundError:
                    logger.error("run %s: its checkpoint %s is gone; the model stays as it was",
                                 run_id, checkpoint.path)
                else:
                    stored.checkpoints.append(checkpoint)
                pending.checkpoints.pop(0)
            if pending.record:
                self.store.update_run(run_id, **pending.record)
                pending.record.clear()
        except Exception as error:
            problem = storage_problem(error)
            if problem is None:
                raise
            self._failed(run_id, problem, error)
            return stored
        if not pending:
            del self.runs[run_id]
        self._worked()
        return stored

    def _failed(self, run_id: int, problem: str, error: Exception) -> None:
        if self.problem is None:
            logger.error("cannot write to the data dir (%s: %s); the reports of run %s and any "
                         "later ones are kept and written once it works again", problem, error,
                         run_id)
        self.problem, self.error = problem, error

    def _worked(self) -> None:
        if self.problem is not None and not any(self.runs.values()):
            logger.warning("the data dir can be written again; every report kept meanwhile is "
                           "stored")
            self.problem = self.error = None
