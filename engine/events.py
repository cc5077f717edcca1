"""What the trainer reports. One mechanism: the trainer calls each listener with these events.

The CLI's progress bar, the server's worker (which forwards them to the WebSocket stream) and the
tests are all just listeners. Every float in an event is finite: NaN never leaks out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class IterationEvent:
    """One optimisation step. `step` counts from 0 across the whole run; `epoch` from 1."""

    epoch: int
    step: int
    loss: float
    learning_rate: float
    samples_per_second: float
    event: Literal["iteration"] = "iteration"


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
    event: Literal["epoch"] = "epoch"


@dataclass(frozen=True)
class EndEvent:
    """The end of a run: completed, stopped on request, or failed with a reason and a hint.
    `epoch` is the epoch of the last step begun (1 if none was): a run stopped between two epochs
    ends in the one it finished, not in the next."""

    epoch: int
    status: Literal["completed", "stopped", "failed"]
    reason: str | None
    epochs_completed: int
    steps_completed: int
    test_accuracy: float | None
    duration_s: float
    event: Literal["end"] = "end"


@dataclass(frozen=True)
class PauseEvent:
    """A pause took effect (`paused` True) or the run resumed (`paused` False), between iterations."""

    epoch: int
    step: int
    paused: bool
    event: Literal["pause"] = "pause"


Event = IterationEvent | EpochEvent | PauseEvent | EndEvent


class Listener(Protocol):
    def __call__(self, event: Event) -> None: ...


def event_to_dict(event: Event) -> dict[str, Any]:
    return dataclasses.asdict(event)
