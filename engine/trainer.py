"""The training loop. It knows nothing about who listens: it reports through events.

    for each epoch:
        shuffle the training set (seeded)
        for each mini-batch (the last one may be partial):
            x = batch / 255 (or a randomly distorted batch)    forward  → logits
            L = cross-entropy(softmax(logits), y)               loss
            dL/dθ by backpropagation                            backward
            θ ← optimiser(θ, dL/dθ, η(t))                       update
            → IterationEvent
        evaluate on the validation digits and on a fixed sample of training digits
        keep θ if its validation accuracy is the best so far    → EpochEvent
    θ ← the kept θ; evaluate it once on the test set
    → EndEvent (completed, stopped, or failed with a reason)

The validation digits are the last `validation_size` training digits, held out (never trained on,
never distorted: engine/data/split.py); with none held out the latest epoch is kept.

Listeners are given to the constructor; one that needs the trainer itself (its model, say) has a
`bind(trainer)` method, called once before any event, and may emit events of its own through
`emit` (engine.inside.LayerWatch does). The loop measures nothing about its own speed:
`engine.throughput.Throughput` is a listener that times the steps.

The batches are shuffled, gathered and distorted ahead in a second process (engine/pipeline.py),
and the evaluation runs on two threads: the second core works while this one trains.

Stop and pause requests (`TrainingControl`) take effect between iterations. A non-finite loss (or one
above DIVERGED_LOSS) ends the run as failed ("diverged"), before any NaN reaches an event or the
weights' last checkpoint; the EndEvent says at which step (`Divergence`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable

import numpy as np

from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.data.split import hold_out
from engine.events import (
    Binding,
    Divergence,
    EndEvent,
    EpochEvent,
    Event,
    IterationEvent,
    Listener,
    PauseEvent,
    StartEvent,
    validation_score,
)
from engine.losses import SoftmaxCrossEntropy
from engine.metrics import EVALUATION_BATCH, evaluate
from engine.model import Sequential, build_model
from engine.optimizers import make_optimizer
from engine.pipeline import BatchPipeline
from engine.schedules import learning_rate

# An untrained network scores ln 10 ≈ 2.3. A mean cross-entropy above 100 means the right digit gets
# probability below e^-100 on average: the weights have blown up. With the fused, stable loss this
# stays finite (dead ReLUs keep it so), hence a bound and not only a NaN check.
DIVERGED_LOSS = 100.0
TRAIN_METRIC_SAMPLES = 5000  # training digits the clean train metric is measured on
# Evaluation runs on the trainer's thread and a second one (the core that prepares batches is idle
# then, every slot it may fill full), each on half an evaluation batch: the memory of one.
EVALUATION_THREADS = 2


class Trainer:
    """Trains `model` on `data` as `config` says, calling every listener with every event.

    `data`: anything with uint8 `train_images`, `train_labels`, `test_images`, `test_labels` (the
    last `config.validation_size` training digits are held out for validation), or a
    `engine.data.Split` whose validation set is already held out."""

    def __init__(
        self,
        config: TrainConfig,
        data,
        listeners: Iterable[Listener] = (),
        control: TrainingControl | None = None,
        model: Sequential | None = None,
    ):
        self.config = config
        self.data = hold_out(data, config.validation_size)
        self.listeners = list(listeners)
        self.control = control or TrainingControl()
        # One seed drives everything, through independent streams: init, dropout, shuffling,
        # augmentation. Same seed, config and data => the same run, bit for bit.
        init_rng, self._shuffle_rng, self._augment_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3)
        )
        self.model = model if model is not None else build_model(config, init_rng)
        self.loss = SoftmaxCrossEntropy()
        self.optimizer = make_optimizer(
            config.optimizer, self.model.parameters(), config.momentum, config.weight_decay
        )
        self.step = 0
        self.last_iteration_epoch = 1  # the epoch EndEvent reports: where the last step began
        self.epochs_completed = 0
        self.diverged: Divergence | None = None  # where the loss blew up, if it did
        # The weights the run keeps: those of the epoch with the best validation accuracy (the
        # latest epoch when nothing is held out), as (epoch, (accuracy, -loss), arrays).
        self.kept: tuple[int, tuple[float, float], dict[str, np.ndarray]] | None = None
        self._pending: deque[Event] = deque()
        self._emitting = False
        for listener in self.listeners:
            if isinstance(listener, Binding):
                listener.bind(self)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train_labels) / self.config.batch_size)

    @property
    def model_epoch(self) -> int | None:
        """The epoch whose weights the run keeps (None before the first epoch ends)."""
        return None if self.kept is None else self.kept[0]

    def emit(self, event: Event) -> None:
        """Give `event` to every listener, in order. An event a listener emits meanwhile waits
        until this one has reached every listener, so all see the events in the same order."""
        self._pending.append(event)
        if self._emitting:
            return
        self._emitting = True
        try:
            while self._pending:
                pending = self._pending.popleft()
                for listener in self.listeners:
                    listener(pending)
        finally:
            self._emitting = False
            self._pending.clear()

    def _prepare_batches(self) -> BatchPipeline:
        """Every epoch's shuffled (and distorted) batches, prepared ahead in a second process when
        they are distorted. Undistorted batches are a gather and a scaling, cheaper than handing
        them over between processes: prepared inline, the engine's epoch is 4% from the flat NumPy
        floor (`mnist-lab bench`), through the second process it was 8-12%."""
        config = self.config
        return BatchPipeline(self.data.train_images, self.data.train_labels, config.batch_size,
                             config.epochs, config.augmentation, self._shuffle_rng,
                             self._augment_rng, self.model.dtype,
                             ahead=config.augmentation.enabled)

    def _evaluate(self, images: np.ndarray, labels: np.ndarray):
        return evaluate(self.model, images, labels, batch_size=EVALUATION_BATCH // EVALUATION_THREADS,
                        threads=EVALUATION_THREADS)

    def run(self) -> EndEvent:
        """Train until done, stopped or diverged; the final EndEvent is also returned."""
        started = time.perf_counter()
        status, reason = "completed", None
        try:
            self.emit(StartEvent(epochs=self.config.epochs, steps_per_epoch=self.steps_per_epoch,
                                 train_samples=len(self.data.train_labels),
                                 test_samples=len(self.data.test_labels),
                                 validation_samples=len(self.data.validation_labels)))
            with self._prepare_batches() as batches:
                for epoch in range(1, self.config.epochs + 1):
                    outcome = self._train_epoch(epoch, batches)
                    if outcome is not None:
                        status, reason = outcome
                        break
        except Exception as error:  # reported to listeners through the EndEvent
            status, reason = "failed", f"{type(error).__name__}: {error}"
        test = None
        if status != "failed" and self.kept is not None:
            self.model.load_state(self.kept[2])  # the epoch selected on validation
            test = self._evaluate(self.data.test_images, self.data.test_labels)
        end = EndEvent(
            epoch=self.last_iteration_epoch,
            status=status,
            reason=reason,
            epochs_completed=self.epochs_completed,
            steps_completed=self.step,
            test_accuracy=None if test is None else test.accuracy,
            duration_s=time.perf_counter() - started,
            diverged=self.diverged,
            test_loss=None if test is None else test.loss,
            model_epoch=self.model_epoch,
        )
        self.emit(end)
        return end

    def _train_epoch(self, epoch: int, batches: BatchPipeline) -> tuple[str, str | None] | None:
        """One pass over the shuffled training set; returns (status, reason) if the run must end."""
        config, data = self.config, self.data
        n = len(data.train_labels)
        started = time.perf_counter()
        loss_sum, correct = 0.0, 0
        for index, (x, y) in enumerate(batches.epoch(epoch)):
            if self.control.checkpoint(lambda paused: self.emit(
                    PauseEvent(epoch=epoch, step=self.step, paused=paused))):
                return "stopped", "stopped on request"
            self.last_iteration_epoch = epoch
            lr = learning_rate(config, epoch - 1 + index / self.steps_per_epoch,
                               1 / self.steps_per_epoch)

            logits = self.model.forward(x, training=True)
            loss = self.loss.forward(logits, y)
            if not math.isfinite(loss) or loss > DIVERGED_LOSS:
                self.diverged = Divergence(self.step, loss if math.isfinite(loss) else None)
                hint = config.learning_rate / 10
                return "failed", (
                    f"diverged: the loss became {loss:g} at step {self.step} (epoch {epoch}) with "
                    f"learning rate {lr:g}; lower the learning rate (try {hint:g})"
                )
            self.model.backward(self.loss.backward())
            self.optimizer.step(lr)

            loss_sum += loss * len(y)
            correct += int(np.count_nonzero(self.loss.probabilities.argmax(axis=1) == y))
            self.emit(IterationEvent(epoch=epoch, step=self.step, loss=loss, learning_rate=lr,
                                     samples=len(y)))
            self.step += 1

        train = self._evaluate(data.train_images[:TRAIN_METRIC_SAMPLES],
                               data.train_labels[:TRAIN_METRIC_SAMPLES])
        validation = None
        if data.has_validation:
            validation = self._evaluate(data.validation_images, data.validation_labels)
        for name, measured in (("validation", validation), ("training-digit", train)):
            if measured is not None and not math.isfinite(measured.loss):
                self.diverged = Divergence(self.step, None)  # the weights the next step would use
                return "failed", (f"diverged: the {name} loss is not finite; lower the "
                                  "learning rate")
        self.epochs_completed = epoch
        self._keep(epoch, validation)
        self.emit(EpochEvent(
            epoch=epoch,
            train_loss=train.loss,
            train_accuracy=train.accuracy,
            val_loss=None if validation is None else validation.loss,
            val_accuracy=None if validation is None else validation.accuracy,
            running_loss=loss_sum / n,
            running_accuracy=correct / n,
            duration_s=time.perf_counter() - started,
            learning_rate=learning_rate(config, epoch - 1),
        ))
        return None

    def _keep(self, epoch: int, validation) -> None:
        """Keep this epoch's weights if they are the best on validation so far (higher accuracy,
        then lower loss), or if nothing is held out (the latest epoch)."""
        score = (0.0, 0.0) if validation is None else validation_score(validation.accuracy,
                                                                        validation.loss)
        if self.kept is not None and validation is not None and score <= self.kept[1]:
            return
        arrays = self.kept[2] if self.kept is not None else {
            name: np.empty_like(array) for name, array in self.model.state().items()}
        for name, array in self.model.state().items():
            np.copyto(arrays[name], array)
        self.kept = (epoch, score, arrays)


def train(config: TrainConfig, data, listeners: Iterable[Listener] = (),
          control: TrainingControl | None = None) -> tuple[Sequential, EndEvent]:
    """Convenience: build the model from `config`, train it, return it with the EndEvent."""
    trainer = Trainer(config, data, listeners, control)
    end = trainer.run()
    return trainer.model, end
