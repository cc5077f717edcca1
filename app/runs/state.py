"""A run's state, and the one function that changes it: `apply(message, run, at) -> run`.

`RunState` is a value: everything the server knows about one run, as stored in SQLite plus a few
facts that only matter while the server follows the run. Every change to a run is a message
applied by `apply`, a pure function (tests/app/test_run_state.py checks it with plain values, no
processes). Messages come from the worker (app/protocol.py) or from the run service itself (the
classes below: what it was asked, or that the server is shutting down). The side effects (SQLite,
the live feed, model files, the run list's revision) happen around `apply`, in the run service.

To add a message kind: a dataclass (in app/protocol.py's `Message` if a worker sends it, in
`RunMessage` below if the service does) and one `case` in `apply`. A change of a stored field is
then stored, a change of status streamed and the run list told, by the service, whatever the kind.

A run's name, tags and notes are the user's (`DetailsChanged`): they change whatever the run's
status, also after it ended; everything else is fixed once a run has ended.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from app.protocol import Checkpoint, Ended, Iterations, Message
from engine.events import EpochEvent, LayersEvent, PauseEvent, StartEvent

RunStatus = Literal["queued", "running", "paused", "stopped", "completed", "failed", "interrupted",
                    "pruned"]
STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
ACTIVE_STATUSES: tuple[RunStatus, ...] = ("queued", "running", "paused")  # a worker may change it
# `pruned`: a sweep's trial that its pruner stopped early, as hopeless; its epochs and model are kept.


# --- what the run service itself says about a run ----------------------------------------------------
@dataclass(frozen=True)
class StopRequested:
    """Someone asked the run to stop; its worker will end it (`Ended`, stopped)."""


@dataclass(frozen=True)
class PruneRequested:
    """The run's sweep gave up on it (its pruner ruled it hopeless): it stops like on request, and
    ends `pruned` with this reason."""

    reason: str


@dataclass(frozen=True)
class PauseRequested:
    """Someone asked the run to pause; its worker confirms with a `PauseEvent`."""


@dataclass(frozen=True)
class PauseTimedOut:
    """The worker did not confirm a pause in time: the run counts as paused from now (the worker
    pauses at its next step)."""


@dataclass(frozen=True)
class Resumed:
    """Someone resumed the paused run."""


@dataclass(frozen=True)
class StepRequested:
    """Someone asked the paused run to train `steps` more steps; its worker pauses again after
    them (a `PauseEvent`), and the run stays paused meanwhile."""

    steps: int


@dataclass(frozen=True)
class ShuttingDown:
    """The server is shutting down: however the run ends now, unless it completed, it was
    interrupted."""


class Unchanged(enum.Enum):
    """The value of a `DetailsChanged` field that was not given: keep the run's."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


@dataclass(frozen=True)
class DetailsChanged:
    """Someone set the run's name, tags or notes (PATCH /api/runs/{id}, validated there). A field
    left UNCHANGED keeps its value; None clears a name or notes."""

    name: str | None | Unchanged = UNCHANGED
    tags: tuple[str, ...] | Unchanged = UNCHANGED
    notes: str | None | Unchanged = UNCHANGED


RunMessage = (Message | StopRequested | PruneRequested | PauseRequested | PauseTimedOut | Resumed
               | StepRequested | ShuttingDown | DetailsChanged)


@dataclass(frozen=True)
class Moment:
    """When a message is applied: the time of day for the record (ISO 8601, UTC) and a monotonic
    clock reading for durations."""

    iso: str
    clock: float

    @classmethod
    def now(cls) -> Moment:
        return cls(dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), time.monotonic())


@dataclass(frozen=True)
class RunState:
    """One run. The fields down to `has_model` are the stored record (app/store.py's columns)."""

    id: int
    config: Mapping[str, Any]  # the resolved TrainConfig, as stored
    created_at: str
    status: RunStatus = "queued"
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None  # from the start of training, pauses included
    reason: str | None = None  # why it ended (or was interrupted)
    epoch: int = 0  # the epoch of the latest step (0 before the first)
    step: int = -1  # the latest step (-1 before the first)
    steps_per_epoch: int | None = None  # known once it started
    samples_per_second: float | None = None
    best_val_accuracy: float | None = None  # on the held-out validation digits
    test_accuracy: float | None = None  # of the kept model, measured once at the end
    has_model: bool = False
    name: str | None = None  # the user's: None until given (the page then names it by its config)
    tags: tuple[str, ...] = ()
    notes: str | None = None
    diverged_step: int | None = None  # the step whose loss blew up, for a run that diverged
    diverged_loss: float | None = None  # that loss; None also when it was not finite
    sweep_id: int | None = None  # the sweep this run is a trial of (None: a run of its own)
    trial: int | None = None  # its trial number in that sweep (Optuna's, from 0)
    test_loss: float | None = None
    model_epoch: int | None = None  # the epoch whose weights the model file holds
    # Known only while this server follows the run (not stored):
    started_clock: float | None = None  # Moment.clock when training started
    stop_requested: bool = False
    prune_reason: str | None = None  # set when its sweep pruned it
    pause_requested: bool = False
    stepping: bool = False  # a step request is under way (the run stays paused)
    shutting_down: bool = False

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunState:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in record.items() if key in names}
        if "tags" in values:
            values["tags"] = tuple(values["tags"])
        return cls(**values)


def apply(message: RunMessage, run: RunState, at: Moment) -> RunState:
    """The run after `message`, applied at `at`. Pure: no I/O, no clock of its own. A run that
    ended stays as it ended, but for its name, tags and notes, and a model that is in place only
    now (its epoch could be stored only after the run ended: the disk was full)."""
    if isinstance(message, DetailsChanged):
        given = {field.name: getattr(message, field.name) for field in dataclasses.fields(message)}
        return replace(run, **{name: value for name, value in given.items()
                               if value is not UNCHANGED})
    if isinstance(message, Checkpoint):
        return replace(run, has_model=True, model_epoch=message.epoch)
    if not run.active:
        return run
    match message:
        case StartEvent(steps_per_epoch=steps_per_epoch):
            return replace(run, status="running" if run.status == "queued" else run.status,
                           started_at=at.iso, started_clock=at.clock,
                           steps_per_epoch=steps_per_epoch)
        case Iterations(points=points, samples_per_second=rate) if points:
            step, epoch, _ = points[-1]
            return replace(run, step=step, epoch=epoch, samples_per_second=rate)
        case EpochEvent(val_accuracy=accuracy) if accuracy is not None:
            return replace(run, best_val_accuracy=max(run.best_val_accuracy or 0.0, accuracy))
        case LayersEvent():
            return run  # stored and streamed as it is; the run's record does not change
        case PauseRequested() if run.status == "running":
            return replace(run, pause_requested=True)
        case PauseEvent(paused=True) | PauseTimedOut() if run.pause_requested:
            return replace(run, status="paused", pause_requested=False)
        case StepRequested() if run.status == "paused" and not run.stepping:
            return replace(run, stepping=True)
        case PauseEvent(paused=True) if run.stepping:
            return replace(run, stepping=False)
        case Resumed() if run.status == "paused":
            return replace(run, status="running", pause_requested=False, stepping=False)
        case StopRequested():
            return replace(run, stop_requested=True)
        case PruneRequested(reason=reason):
            return replace(run, stop_requested=True, prune_reason=reason)
        case ShuttingDown():
            return replace(run, shutting_down=True)
        case Ended():
            return _ended(message, run, at)
    return run


def _ended(message: Ended, run: RunState, at: Moment) -> RunState:
    status, reason = message.status, message.reason
    if run.prune_reason is not None and (status == "stopped" or message.died):
        # Pruned: its sweep already counted it so, whether the stop or a shutdown ended it.
        status = "pruned"
        reason = run.prune_reason + (" (the process did not stop in time and was ended)"
                                     if message.died else "")
    elif run.shutting_down and status != "completed":  # a run that just finished keeps its result
        status = "interrupted"
        reason = f"the server shut down while this run was {run.status}; start a new run to train again"
    elif run.stop_requested and message.died:
        status, reason = "stopped", "stopped on request (the process did not stop in time and was ended)"
    elif run.stop_requested and status == "stopped":
        reason = "stopped on request"
    duration = message.duration_s
    if duration is None and run.started_clock is not None:
        duration = at.clock - run.started_clock
    diverged = message.diverged
    return replace(run, status=status, reason=reason, finished_at=at.iso,
                   duration_s=run.duration_s if duration is None else duration,
                   test_accuracy=message.test_accuracy, test_loss=message.test_loss,
                   samples_per_second=None, stop_requested=False, pause_requested=False,
                   prune_reason=None, stepping=False,
                   diverged_step=None if diverged is None else diverged.step,
                   diverged_loss=None if diverged is None else diverged.loss)
