"""The CLI's listeners: how `mnist-lab train` shows a run in a terminal, or as JSON lines."""

from __future__ import annotations

import json
import sys

from engine.events import EndEvent, EpochEvent, Event, IterationEvent, StartEvent, event_to_dict


class JsonLines:
    """Every event as one JSON object on a line of `stream` (its kind under "event")."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event_to_dict(event), allow_nan=False) + "\n")
        if not isinstance(event, IterationEvent):
            self.stream.flush()


class EpochReport:
    """A progress bar per epoch (stderr, with ETA) and one line per finished epoch, in the
    notebook's words: `epoch 3/10  training_loss 0.1234  validation_acc 0.9712 ...` (training_*:
    the clean metric on training digits; running_loss: the mean over the epoch's batches)."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.epochs = 0
        self.steps_per_epoch = 0
        self.validated = False
        self.bar = None

    @property
    def _selection(self) -> str:
        return ", selected on validation" if self.validated else ", the last"

    def __call__(self, event: Event) -> None:
        match event:
            case StartEvent(epochs=epochs, steps_per_epoch=steps_per_epoch):
                self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
                self.validated = event.validation_samples > 0
            case IterationEvent():
                self._advance(event)
            case EpochEvent():
                self.close()
                validation = "" if event.val_loss is None else (
                    f"  validation_loss {event.val_loss:.4f}  validation_acc {event.val_accuracy:.4f}")
                self._print(f"epoch {event.epoch}/{self.epochs}  training_loss {event.train_loss:.4f}  "
                            f"training_acc {event.train_accuracy:.4f}{validation}  running_loss "
                            f"{event.running_loss:.4f}  lr {event.learning_rate:.4g}  "
                            f"{event.duration_s:.1f}s")
            case EndEvent(status="completed"):
                self.close()
                self._print(f"test_accuracy {event.test_accuracy:.4f}  test_loss "
                            f"{event.test_loss:.4f}  (model of epoch {event.model_epoch}"
                            f"{self._selection}; {event.epochs_completed} epochs in "
                            f"{event.duration_s:.1f}s)")
            case EndEvent(status="stopped"):
                self.close()
                accuracy = "" if event.test_accuracy is None else (
                    f"  test_accuracy {event.test_accuracy:.4f} (model of epoch "
                    f"{event.model_epoch}{self._selection})")
                self._print(f"stopped after {event.steps_completed} steps ({event.epochs_completed} "
                            f"full epochs){accuracy}")
            case _:
                self.close()

    def _advance(self, event: IterationEvent) -> None:
        from tqdm import tqdm  # only a terminal run needs it

        if self.bar is None:
            self.bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {event.epoch}/{self.epochs}",
                            unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True,
                            disable=None)  # no bar when stderr is not a terminal
        self.bar.update(1)
        if event.step % 25 == 0:
            self.bar.set_postfix_str(f"loss {event.loss:.4f}", refresh=False)

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
