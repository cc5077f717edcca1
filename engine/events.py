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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class StartEvent:
    """Training begins: `epochs` of `steps_per_epoch` steps over `train_samples` digits, validated
    on `validation_samples` held-out ones (0: no validation), tested on `test_samples` at the end."""

    epochs: int
    steps_per_epoch: int
    train_samples: int
    test_samples: int
    validation_samples: int = 0
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
    """One finished epoch, measured three ways:

    - `train_loss`, `train_accuracy`: the model at the end of the epoch on a fixed sample of its
      training digits (the first 5,000), as they are: no distortion, no dropout. Comparable with
      validation: the gap between the two is over-fitting. (None only in epochs stored before it
      was measured.)
    - `val_loss`, `val_accuracy`: the same model on the held-out validation digits (None when
      the run holds none out: validation_size 0).
    - `running_loss`, `running_accuracy`: the mean over the epoch's mini-batches as they were
      trained on, distorted and with dropout, while the weights changed: what the loss curve
      shows, and below the clean figures whenever augmentation or dropout is on.
    """

    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    running_loss: float
    running_accuracy: float
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
    its loss blew up did so (None for any other end).

    The run keeps the weights of one epoch, `model_epoch`: the one with the best validation
    accuracy (selected on validation; the latest epoch when nothing is held out), None if no
    epoch finished. `test_accuracy` and `test_loss` are that model's, on the test set, measured
    here once."""

    epoch: int
    status: Literal["completed", "stopped", "failed"]
    reason: str | None
    epochs_completed: int
    steps_completed: int
    test_accuracy: float | None
    duration_s: float
    diverged: Divergence | None = None
    test_loss: float | None = None
    model_epoch: int | None = None
    event: ClassVar[str] = "end"


# --- the inside of the network (engine/inside.py computes these) ----------------------------------
@dataclass(frozen=True)
class Histogram:
    """Counts of values in bins: `counts[i]` values fell in [edges[i], edges[i+1]). The edges
    come from one fixed grid (engine/inside.py), so histograms of any layer at any step compare."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class LayerStats:
    """One Dense layer at one step (engine/inside.py states each quantity)."""

    name: str
    shape: tuple[int, int]  # (inputs, units)
    weights: Histogram
    gradients: Histogram
    activations: Histogram
    grad_norm: float
    update_ratio: float
    dead_fraction: float | None  # None: not a ReLU-like layer (the output layer, tanh, sigmoid)


@dataclass(frozen=True)
class FirstLayer:
    """What the first hidden layer has learned, at the end of an epoch: the incoming weights of
    its first `len(images)` of `units` units as 28x28 images, and how strongly each of those
    units responds to each digit class of the probe batch."""

    units: int
    images: tuple[str, ...]  # per unit: 784 signed bytes, w / max|w| * 127, base64
    class_activations: tuple[tuple[float, ...] | None, ...]  # [digit][unit]; None: no such digit


@dataclass(frozen=True)
class LayersEvent:
    """The inside of the network after step `step` (of `epoch`, trained with `learning_rate`):
    per Dense layer, from input to output. `epoch_end`: the epoch's last step, measured after its
    validation, with `first_layer` (None otherwise)."""

    epoch: int
    step: int
    learning_rate: float
    epoch_end: bool
    layers: tuple[LayerStats, ...]
    first_layer: FirstLayer | None = None
    event: ClassVar[str] = "layers"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayersEvent:
        """The event from its JSON form (`event_to_dict`, or the worker's wire)."""
        def histogram(value: dict[str, Any]) -> Histogram:
            return Histogram(tuple(value["edges"]), tuple(value["counts"]))

        layers = tuple(
            LayerStats(**{**layer, "shape": tuple(layer["shape"]),
                          **{kind: histogram(layer[kind])
                             for kind in ("weights", "gradients", "activations")}})
            for layer in data["layers"])
        first = data.get("first_layer")
        first_layer = None if first is None else FirstLayer(
            first["units"], tuple(first["images"]),
            tuple(None if row is None else tuple(row) for row in first["class_activations"]))
        return cls(**{**data, "layers": layers, "first_layer": first_layer})


Event = StartEvent | IterationEvent | EpochEvent | LayersEvent | PauseEvent | EndEvent

EPOCH_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(EpochEvent))
"""An epoch's metrics, in order: the one list the store's columns, the API's Epoch schema and the
CSV export are made from."""


def validation_score(accuracy: float, loss: float) -> tuple[float, float]:
    """How a run ranks its epochs to keep one's weights: higher validation accuracy, then lower
    validation loss (the trainer keeps the earliest of equal epochs)."""
    return (accuracy, -loss)


def kept_epoch(epochs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of a run's epochs (EpochEvent fields, in order), the one whose weights it keeps: the best
    on validation, or the latest when nothing is held out; None before the first."""
    kept = None
    for epoch in epochs:
        if kept is None or epoch["val_accuracy"] is None or (
                validation_score(epoch["val_accuracy"], epoch["val_loss"])
                > validation_score(kept["val_accuracy"], kept["val_loss"])):
            kept = epoch
    return kept


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
