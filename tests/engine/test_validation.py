"""Honest metrics on synthetic data: the held-out validation set, the clean train metric, the
epoch kept on validation and the test evaluated once for it; step mode; the order of events that
listeners emit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.data import Split, SplitError, hold_out, training_samples
from engine.events import (
    EndEvent,
    EpochEvent,
    IterationEvent,
    PauseEvent,
    StartEvent,
    event_to_dict,
    kept_epoch,
)
from engine.metrics import evaluate
from engine.trainer import Trainer
from tests.engine.synthetic import ScrambleAfterEpoch, synthetic_digits
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def data():
    return synthetic_digits(n_train=1000, n_test=301)


def config(**fields) -> TrainConfig:
    base = {"hidden_layers": [32], "epochs": 2, "batch_size": 128, "optimizer": "momentum",
            "learning_rate": 0.05, "lr_schedule": "constant", "validation_size": 200,
            "augmentation": {}}
    return TrainConfig.from_dict({**base, **fields})


# --- the split ---------------------------------------------------------------------------------
def test_the_validation_set_is_the_last_training_digits_and_never_trained_on(data):
    split = hold_out(data, 200)
    np.testing.assert_array_equal(split.train_images, data.train_images[:800])
    np.testing.assert_array_equal(split.validation_images, data.train_images[800:])
    np.testing.assert_array_equal(split.validation_labels, data.train_labels[800:])
    np.testing.assert_array_equal(split.test_images, data.test_images)
    assert split.has_validation and not hold_out(data, 0).has_validation
    assert len(hold_out(data, 0).train_labels) == 1000


def test_a_slice_trains_on_its_first_digits_and_validates_on_the_same_last_ones(data):
    sliced = hold_out(data, 200, train=300)
    np.testing.assert_array_equal(sliced.train_images, data.train_images[:300])
    np.testing.assert_array_equal(sliced.validation_images, hold_out(data, 200).validation_images)
    assert len(hold_out(data, 200, train=5000).train_labels) == 800  # never into validation
    assert training_samples(1000, 200, 300) == 300
    assert training_samples(1000, 200, 5000) == 800
    assert training_samples(60_000, 5000) == 55_000


@pytest.mark.parametrize("size", [1000, 5000])
def test_a_validation_set_that_leaves_nothing_to_train_on_is_refused(data, size):
    with pytest.raises(SplitError, match="leaves no digit to train on"):
        hold_out(data, size)
    with pytest.raises(SplitError):
        Trainer(config(validation_size=size), data)


def test_the_trainer_takes_a_split_as_it_is(data):
    split = hold_out(data, 100, train=500)
    trainer = Trainer(config(validation_size=300), split)  # the split wins over the config
    assert trainer.data is split and isinstance(trainer.data, Split)


# --- metrics -----------------------------------------------------------------------------------
class ModelAtEachEpoch:
    """Remembers the weights at every EpochEvent and what evaluate() says about them."""

    def __init__(self, data):
        self.data = data
        self.states, self.evaluations = {}, {}

    def bind(self, trainer):
        self.trainer = trainer

    def __call__(self, event):
        if isinstance(event, EpochEvent):
            model, split = self.trainer.model, self.trainer.data
            self.states[event.epoch] = {k: v.copy() for k, v in model.state().items()}
            self.evaluations[event.epoch] = (
                evaluate(model, split.train_images[:5000], split.train_labels[:5000]),
                evaluate(model, split.validation_images, split.validation_labels))


def test_validation_and_clean_train_metrics_measure_the_epochs_model(data):
    events = []
    watcher = ModelAtEachEpoch(data)
    trainer = Trainer(config(epochs=3, dropout=0.5), data, [events.append, watcher])
    end = trainer.run()
    start = events[0]
    assert (start.train_samples, start.validation_samples, start.test_samples) == (800, 200, 301)
    assert sum(e.samples for e in events if isinstance(e, IterationEvent)) == 3 * 800
    for epoch in (e for e in events if isinstance(e, EpochEvent)):
        train, validation = watcher.evaluations[epoch.epoch]
        assert (epoch.train_loss, epoch.train_accuracy) == (train.loss, train.accuracy)
        assert (epoch.val_loss, epoch.val_accuracy) == (validation.loss, validation.accuracy)
        # With dropout 0.5 the running mean over the batches is not the clean figure.
        assert epoch.running_loss != pytest.approx(epoch.train_loss, rel=1e-3)
    assert end.status == "completed" and end.model_epoch in (1, 2, 3)
    kept = watcher.states[end.model_epoch]
    for name, array in trainer.model.state().items():
        np.testing.assert_array_equal(array, kept[name])
    test = evaluate(trainer.model, data.test_images, data.test_labels)
    assert (end.test_accuracy, end.test_loss) == (test.accuracy, test.loss)


def test_the_run_keeps_the_epoch_best_on_validation_not_the_last(data):
    """After epoch 2 the weights are scrambled and the learning rate (divided by 100 each epoch)
    is too small to repair them: epochs 3 and 4 are worse on validation, so the run keeps an
    earlier epoch's weights, and tests those."""
    watcher = ModelAtEachEpoch(data)

    events = []
    trainer = Trainer(config(epochs=4, lr_schedule="step", lr_decay=0.01), data,
                      [events.append, watcher, ScrambleAfterEpoch(2)])
    end = trainer.run()
    accuracies = [e.val_accuracy for e in events if isinstance(e, EpochEvent)]
    assert max(accuracies[2:]) < accuracies[1], accuracies
    assert end.model_epoch == int(np.argmax(accuracies)) + 1 in (1, 2)
    # The rule the server and sweeps apply to stored epochs names the same epoch.
    assert kept_epoch([event_to_dict(e) for e in events if isinstance(e, EpochEvent)])["epoch"] \
        == end.model_epoch
    for name, array in trainer.model.state().items():
        np.testing.assert_array_equal(array, watcher.states[end.model_epoch][name])
    assert end.test_accuracy == evaluate(trainer.model, data.test_images, data.test_labels).accuracy


def test_without_validation_the_last_epoch_is_kept_and_validation_is_none(data):
    events = []
    end = Trainer(config(epochs=2, validation_size=0), data, [events.append]).run()
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [(e.val_loss, e.val_accuracy) for e in epochs] == [(None, None)] * 2
    assert all(e.train_accuracy is not None for e in epochs)
    assert end.model_epoch == 2 and end.test_accuracy is not None


def test_a_run_stopped_mid_epoch_keeps_and_tests_its_last_full_epoch(data):
    control = TrainingControl()
    watcher = ModelAtEachEpoch(data)

    def stop_in_epoch_two(event):
        if isinstance(event, IterationEvent) and event.epoch == 2 and event.step == 9:
            control.stop()

    trainer = Trainer(config(epochs=3), data, [watcher, stop_in_epoch_two], control)
    end = trainer.run()
    assert (end.status, end.epochs_completed, end.model_epoch) == ("stopped", 1, 1)
    for name, array in trainer.model.state().items():
        np.testing.assert_array_equal(array, watcher.states[1][name])


# --- events a listener emits ---------------------------------------------------------------------
def test_an_event_emitted_by_a_listener_reaches_everyone_after_the_one_being_delivered(data):
    class Echo:
        """Emits a PauseEvent whenever it sees step 2: a stand-in for LayerWatch."""

        def bind(self, trainer):
            self.trainer = trainer

        def __call__(self, event):
            if isinstance(event, IterationEvent) and event.step == 2:
                self.trainer.emit(PauseEvent(epoch=1, step=99, paused=True))

    first, last = [], []
    Trainer(config(epochs=1), data, [first.append, Echo(), last.append]).run()
    for seen in (first, last):
        kinds = [(type(e).__name__, getattr(e, "step", None)) for e in seen]
        at = kinds.index(("IterationEvent", 2))
        assert kinds[at + 1] == ("PauseEvent", 99)
        assert kinds[at + 2] == ("IterationEvent", 3)


# --- step mode -----------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 3, 9])
def test_a_step_request_trains_exactly_that_many_steps_then_pauses(data, steps):
    control = TrainingControl()
    events: list = []
    lock = threading.Lock()

    def listener(event):
        with lock:
            events.append(event)
        if isinstance(event, IterationEvent) and event.step == 2:
            control.pause()

    def pauses():
        with lock:
            return [e for e in events if isinstance(e, PauseEvent) and e.paused]

    trainer = Trainer(config(epochs=3), data, [listener], control)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    try:
        wait_for(lambda: len(pauses()) == 1, what="the first pause")
        assert control.steps_left == 0
        control.step(steps)
        wait_for(lambda: len(pauses()) == 2, what="the pause after the steps")
        with lock:
            taken = [e.step for e in events if isinstance(e, IterationEvent)]
        assert taken == list(range(3 + steps))  # steps 3 .. 2 + steps, then paused again
        assert pauses()[1].step == 3 + steps
        assert control.pause_requested and control.steps_left == 0
        control.resume()
        worker.join(timeout=30)
    finally:
        control.stop()
        worker.join(timeout=30)
    assert isinstance(events[-1], EndEvent) and events[-1].status == "completed"
    # 7 steps an epoch (800 digits): a request of 9 crosses the end of epoch 1, which finishes.
    assert sum(isinstance(e, EpochEvent) for e in events) == 3


def test_step_needs_at_least_one_step():
    with pytest.raises(ValueError, match="at least 1"):
        TrainingControl().step(0)


def test_start_event_reports_the_split(data):
    events = []
    Trainer(config(epochs=1, validation_size=100), data, [events.append]).run()
    assert events[0] == StartEvent(epochs=1, steps_per_epoch=8, train_samples=900,
                                   test_samples=301, validation_samples=100)


def test_of_equal_epochs_the_earliest_is_kept_and_without_validation_the_latest():
    def epoch(number, accuracy, loss):
        return {"epoch": number, "val_accuracy": accuracy, "val_loss": loss}

    assert kept_epoch([]) is None
    assert kept_epoch([epoch(1, 0.9, 0.3), epoch(2, 0.9, 0.3), epoch(3, 0.9, 0.4)])["epoch"] == 1
    assert kept_epoch([epoch(1, 0.9, 0.3), epoch(2, 0.9, 0.2), epoch(3, 0.8, 0.1)])["epoch"] == 2
    assert kept_epoch([epoch(1, None, None), epoch(2, None, None)])["epoch"] == 2
