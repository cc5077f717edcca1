"""The run protocol: every message that crosses the worker boundary, as a type.

A worker (a local process today, a Ray actor tomorrow) reports a run with these messages, in this
order: one `StartEvent`, then `Iterations` (steps batched ~20 times a second), `LayersEvent`s
(the layer statistics of a watched step, after the `Iterations` holding that step), an
`EpochEvent` after each epoch (then the epoch's `LayersEvent`, then a `Checkpoint` if the run keeps
that epoch's model), `PauseEvent`s when a pause takes effect or ends, and exactly one `Ended`,
last. `StartEvent`, `EpochEvent`, `LayersEvent` and `PauseEvent` are the engine's own events,
unchanged.
A worker that shares no disk with the server (a Ray actor on another node) sends `CheckpointBytes`
instead of `Checkpoint`: its executor writes them where the worker would have saved the file and
hands the run service the `Checkpoint` it would have sent, so the service never sees the difference.

Inside the program messages are these dataclasses, dispatched with `match` on their type; only at
the boundary do they become plain dicts, through exactly one pair of functions: the worker sends
`to_wire(message)` and the executor decodes `from_wire(wire)` once, before anything else sees it.
A wire dict is JSON-ready: its kind under "event", then the message's fields (bytes as base64).

To add a message kind: a frozen dataclass with an `event` class constant, added to `Message`,
and a `case` for it in the run service's reducer (app/runs/state.py); if it must also be stored
or streamed, a `case` in RunService._receive (into the backlog, app/runs/backlog.py, which
stores it and hands it to the feed) as well.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import signal
import traceback
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from engine.events import Divergence, EndEvent, EpochEvent, LayersEvent, PauseEvent, StartEvent

Point = tuple[int, int, float]  # (step, epoch, loss)
EndStatus = Literal["completed", "stopped", "failed"]


@dataclass(frozen=True)
class Iterations:
    """Steps taken since the last message: `points` in step order, with the training speed and
    the learning rate at the last of them."""

    points: tuple[Point, ...]
    samples_per_second: float | None
    learning_rate: float
    event: ClassVar[str] = "iterations"


@dataclass(frozen=True)
class Checkpoint:
    """The model of `epoch` was saved at `path` (next to the run's model, under a name of its
    own); the server moves it into place once it has stored the epoch. Sent for the epochs the
    run keeps: each one better on validation than the ones before (every epoch when nothing is
    held out), and once more at the end for the kept one, with its test accuracy inside."""

    epoch: int
    path: str
    event: ClassVar[str] = "checkpoint"


@dataclass(frozen=True)
class CheckpointBytes:
    """The model after `epoch`, as the bytes of its file (engine.model.model_bytes), from a worker
    that cannot write next to the run's model; its executor writes them there and hands on the
    `Checkpoint` (app/worker.py: `checkpoint_from_bytes`)."""

    epoch: int
    content: bytes
    event: ClassVar[str] = "checkpoint_bytes"

    def __repr__(self) -> str:  # a log line, not megabytes of weights
        return f"CheckpointBytes(epoch={self.epoch}, content=<{len(self.content)} bytes>)"


@dataclass(frozen=True)
class Ended:
    """How a run ended: the last message of every run, exactly once. Made from the trainer's
    EndEvent (`Ended.of`), from a worker that failed outside the trainer (`Ended.failure`: MNIST
    missing, a model that could not be saved), or by the executor when the process died without
    sending one (`Ended.death`). The server may end a run itself the same way (stopped before it
    started, or a process that could not be started). `diverged`: the trainer's record of the
    step where the loss blew up (engine.events.Divergence), for a run that failed so."""

    status: EndStatus
    reason: str | None
    test_accuracy: float | None = None  # of the kept model (Checkpoint), on the test set
    duration_s: float | None = None  # None: not measured by the worker; the server counts it
    traceback: str | None = None  # for the server's log: where a worker failed
    died: bool = False  # the process ended without reporting how
    diverged: Divergence | None = None
    test_loss: float | None = None
    event: ClassVar[str] = "end"

    @classmethod
    def of(cls, end: EndEvent) -> Ended:
        return cls(end.status, end.reason, end.test_accuracy, end.duration_s,
                   diverged=end.diverged, test_loss=end.test_loss)

    @classmethod
    def failure(cls, error: BaseException) -> Ended:
        return cls("failed", f"the training process failed: {type(error).__name__}: {error}",
                   traceback=traceback.format_exc(limit=8))

    @classmethod
    def death(cls, exit_code: int | None) -> Ended:
        """The end of a process that exited (or was killed) without sending its own."""
        if exit_code is not None and exit_code < 0:
            try:
                name = signal.Signals(-exit_code).name
            except ValueError:
                name = f"signal {-exit_code}"
            reason = (f"the training process was killed by {name}; this happens when the machine "
                      "runs out of memory or the process is ended from outside. Metrics and the "
                      "model of the epochs finished before are kept; start a new run to train again")
        else:
            reason = (f"the training process exited unexpectedly (exit code {exit_code}) without "
                      "finishing the run; the server log may say why. Start a new run to train again")
        return cls("failed", reason, died=True)


Message = (StartEvent | Iterations | EpochEvent | LayersEvent | Checkpoint | CheckpointBytes
           | PauseEvent | Ended)
MESSAGES: dict[str, type] = {kind.event: kind for kind in get_args(Message)}  # by wire name


class ProtocolError(ValueError):
    """A wire dict that is no message of this protocol."""


def to_wire(message: Message) -> dict[str, Any]:
    """The message as a plain, JSON-ready dict: its kind under "event", then its fields."""
    wire = {"event": message.event, **dataclasses.asdict(message)}
    if isinstance(message, CheckpointBytes):
        wire["content"] = base64.b64encode(message.content).decode("ascii")
    return wire


def from_wire(wire: dict[str, Any]) -> Message:
    """The message a wire dict stands for. ProtocolError if it is none."""
    kind = MESSAGES.get(wire.get("event")) if isinstance(wire, dict) else None
    if kind is None:
        raise ProtocolError(f"not a run message: {str(wire)[:200]}")
    fields = {key: value for key, value in wire.items() if key != "event"}
    if kind is CheckpointBytes and "content" in fields:
        fields["content"] = _base64_bytes(fields["content"])
    try:
        if hasattr(kind, "from_dict"):  # nested dataclasses (LayersEvent)
            return kind.from_dict(fields)
        if kind is Iterations and "points" in fields:
            fields["points"] = tuple(tuple(point) for point in fields["points"])
        if kind is Ended and isinstance(fields.get("diverged"), dict):
            fields["diverged"] = Divergence(**fields["diverged"])
        return kind(**fields)
    except (TypeError, KeyError) as error:
        raise ProtocolError(f"a malformed {wire['event']!r} message: {error}") from None


def _base64_bytes(text: Any) -> bytes:
    try:
        if not isinstance(text, str):
            raise TypeError(f"expected base64 text, got {type(text).__name__}")
        return base64.b64decode(text, validate=True)
    except (TypeError, binascii.Error) as error:
        raise ProtocolError(f"a malformed 'checkpoint_bytes' message: {error}") from None
