"""What the trainer reports. One mechanism: the trainer calls each listener with these events.

The CLI's reporters, the server's worker (which forwards them across the process boundary) and the
tests are all just listeners; a listener dispatches on the event's type (`match event: case
EpochEvent(): ...`). Each class's `event` names its kind where an event becomes JSON (`--json`, the
worker's wire); it is a class constant, not a field, so `dataclasses.fields(EpochEvent)` are
exactly an epoch's metrics (the server's store, API schema and CSV are built from them). Every
float in an event is finite: NaN never leaks out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class StartEvent:
    """Training begins: `epochs` of `steps_per_epoch` steps over `train_samples` digits."""

    epochs: int
    steps_per_epoch: int
    train_samples: int
    test_samples: int
    event: ClassVar[str] = "start"


@dataclass(frozen=True)
class IterationEvent:
    """One optimisation step on `samples` digits. `step` counts from 0 across the whole run;
    `epoch` from 1."""

    epoch: int
    step: int
    loss: float
    learning_rate: float
    samples: int
    event: ClassVar[str] = "iteration"


@dataclass(frozen=True)
class EpochEvent:
    """One finished epoch; validation is on every test sample."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    duration_s: float
    learning_rate: float
    event: ClassVar[str] = "epoch"


@dataclass(frozen=True)
class PauseEvent:
    """A pause took effect (`paused` True) or the run resumed (`paused` False), between iterations."""

    epoch: int
    step: int
    paused: bool
    event: ClassVar[str] = "pause"


@dataclass(frozen=True)
class Divergence:
    """Where a run diverged: `step`, the first step whose loss was not finite or above the
    trainer's bound (engine.trainer.DIVERGED_LOSS), and that loss, None when it was not finite.
    The step was not taken: no update was made from it, so it is not among the IterationEvents.
    (A validation loss that is not finite at the end of an epoch counts as the next step's, with
    loss None: the weights that step would have used are the ones that failed.)"""

    step: int
    loss: float | None


@dataclass(frozen=True)
class EndEvent:
    """The end of a run: completed, stopped on request, or failed with a reason and a hint.
    `epoch` is the epoch of the last step begun (1 if none was): a run stopped between two epochs
    ends in the one it finished, not in the next. `diverged` says where a run that failed because
    its loss blew up did so (None for any other end)."""

    epoch: int
    status: Literal["completed", "stopped", "failed"]
    reason: str | None
    epochs_completed: int
    steps_completed: int
    test_accuracy: float | None
    duration_s: float
    diverged: Divergence | None = None
    event: ClassVar[str] = "end"


Event = StartEvent | IterationEvent | EpochEvent | PauseEvent | EndEvent

EPOCH_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(EpochEvent))
"""An epoch's metrics, in order: the one list the store's columns, the API's Epoch schema and the
CSV export are made from."""


class Listener(Protocol):
    def __call__(self, event: Event) -> None: ...


@runtime_checkable
class Binding(Protocol):
    """A listener that needs the trainer itself (to read its model, say: a checkpoint writer)
    defines `bind`; the trainer calls it once, when it is built, before any event."""

    def bind(self, trainer: Any) -> None: ...


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data: its kind under "event", then its fields."""
    return {"event": event.event, **dataclasses.asdict(event)}
