"""The training loop on synthetic data: events, determinism, convergence, control, divergence."""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.events import (
    EPOCH_FIELDS,
    Divergence,
    EndEvent,
    EpochEvent,
    IterationEvent,
    PauseEvent,
    StartEvent,
    event_to_dict,
)
from engine.metrics import evaluate, normalise
from engine.trainer import DIVERGED_LOSS, Trainer, train
from tests.engine.synthetic import synthetic_digits
from tests.waiting import wait_for

TIMING_FIELDS = {"duration_s"}


@pytest.fixture(scope="module")
def data():
    return synthetic_digits(n_train=1000, n_test=301)


def config(**fields) -> TrainConfig:
    base = {"hidden_layers": [32], "epochs": 2, "batch_size": 128, "optimizer": "momentum",
            "learning_rate": 0.05, "lr_schedule": "constant", "validation_size": 0,
            "augmentation": {}}  # random noise prototypes: shifting them makes another problem
    return TrainConfig.from_dict({**base, **fields})


def run(cfg, data, control=None):
    events = []
    trainer = Trainer(cfg, data, [events.append], control)
    end = trainer.run()
    return trainer, events, end


def all_floats_finite(events) -> bool:
    values = [v for e in events for v in event_to_dict(e).values()]
    return all(math.isfinite(v) for v in values if isinstance(v, float))


def test_events_of_a_complete_run(data):
    trainer, events, end = run(config(epochs=2), data)
    iterations = [e for e in events if isinstance(e, IterationEvent)]
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert events[-1] is end and isinstance(end, EndEvent)
    # 1000 samples in batches of 128: 7 full batches and a last partial one of 104.
    assert trainer.steps_per_epoch == 8
    assert events[0] == StartEvent(epochs=2, steps_per_epoch=8, train_samples=1000, test_samples=301,
                                   validation_samples=0)
    assert [e.step for e in iterations] == list(range(16))
    assert [e.epoch for e in iterations] == [1] * 8 + [2] * 8
    assert [e.samples for e in iterations] == ([128] * 7 + [104]) * 2
    assert [e.epoch for e in epochs] == [1, 2]
    assert events.index(epochs[0]) == 9  # the epoch event follows its last iteration
    assert (end.status, end.reason, end.epochs_completed, end.steps_completed) == (
        "completed", None, 2, 16)
    assert all(e.learning_rate == 0.05 for e in iterations)
    assert all(0 <= e.train_accuracy <= 1 and e.duration_s > 0 for e in epochs)
    assert all(e.val_loss is None and e.val_accuracy is None for e in epochs)  # none held out
    assert end.model_epoch == 2  # nothing to select on: the last epoch
    assert all_floats_finite(events)


def test_every_sample_counts_including_the_last_partial_batch(data):
    trainer, events, end = run(config(epochs=1, batch_size=300), data)  # 300+300+300+100
    epoch = next(e for e in events if isinstance(e, EpochEvent))
    assert end.steps_completed == 4
    assert (epoch.running_accuracy * 1000) == pytest.approx(round(epoch.running_accuracy * 1000))
    # The test covers all 301 test samples, in whatever batches evaluate() uses.
    full = evaluate(trainer.model, data.test_images, data.test_labels)
    in_small_batches = evaluate(trainer.model, data.test_images, data.test_labels, batch_size=64)
    assert len(full.predictions) == len(in_small_batches.predictions) == 301
    np.testing.assert_array_equal(full.predictions, in_small_batches.predictions)
    assert full.accuracy == pytest.approx(np.mean(full.predictions == data.test_labels))
    assert full.accuracy == end.test_accuracy
    assert full.loss == pytest.approx(in_small_batches.loss, rel=1e-5)


def test_batch_larger_than_the_dataset(data):
    _, _, end = run(config(epochs=1, batch_size=5000), data)
    assert end.status == "completed" and end.steps_completed == 1


def test_same_seed_same_config_same_data_gives_identical_runs(data):
    cfg = config(dropout=0.2, batch_norm=True, optimizer="adam", learning_rate=0.003)
    first, events_1, _ = run(cfg, data)
    second, events_2, _ = run(cfg, data)

    def without_timing(events):
        return [{k: v for k, v in event_to_dict(e).items() if k not in TIMING_FIELDS}
                for e in events]

    assert without_timing(events_1) == without_timing(events_2)
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        np.testing.assert_array_equal(a.value, b.value)


def test_a_different_seed_gives_a_different_run(data):
    first, _, _ = run(config(seed=1), data)
    second, _, _ = run(config(seed=2), data)
    assert not np.array_equal(first.model.parameters()[0].value, second.model.parameters()[0].value)


@pytest.mark.parametrize("fields", [
    {"optimizer": "sgd", "learning_rate": 0.1},
    {"optimizer": "nesterov", "lr_schedule": "cosine", "warmup_epochs": 1},
    {"optimizer": "adam", "learning_rate": 0.002, "batch_norm": True, "dropout": 0.1},
    {"activation": "tanh", "lr_schedule": "step", "learning_rate": 0.1},
    {"preset": "notebook", "hidden_layers": [32], "augmentation": {}},
])
def test_training_converges_on_a_learnable_problem(data, fields):
    trainer, events, end = run(config(epochs=4, **fields), data)
    losses = [e.train_loss for e in events if isinstance(e, EpochEvent)]
    assert end.status == "completed"
    assert losses[-1] < losses[0] < math.log(10) * 1.5
    assert end.test_accuracy > 0.9, f"{fields}: test accuracy {end.test_accuracy}"


def test_train_helper_returns_the_model(data):
    model, end = train(config(epochs=1), data)
    assert end.status == "completed"
    assert model.predict(normalise(data.test_images[:5])).shape == (5,)


# --- stop, pause, resume ---------------------------------------------------------------------------
def test_stop_takes_effect_before_the_next_iteration(data):
    control = TrainingControl()
    events = []

    def listener(event):
        events.append(event)
        if isinstance(event, IterationEvent) and event.step == 5:
            control.stop()

    trainer = Trainer(config(epochs=3), data, [listener], control)
    end = trainer.run()
    assert [e.step for e in events if isinstance(e, IterationEvent)] == list(range(6))
    assert (end.status, end.reason, end.steps_completed) == ("stopped", "stopped on request", 6)
    assert end.epochs_completed == 0
    # No epoch finished, so no model was kept and none is tested; the weights stay usable.
    assert end.model_epoch is None and end.test_accuracy is None
    probabilities = trainer.model.predict_proba(normalise(data.test_images))
    assert np.all(np.isfinite(probabilities))


def test_a_run_stopped_between_epochs_ends_in_the_epoch_it_finished(data):
    control = TrainingControl()

    def listener(event):
        if isinstance(event, EpochEvent) and event.epoch == 2:
            control.stop()  # honoured at the first checkpoint of epoch 3, before any step

    trainer = Trainer(config(epochs=4), data, [listener], control)
    end = trainer.run()
    assert (end.status, end.epochs_completed, end.steps_completed) == (
        "stopped", 2, 2 * trainer.steps_per_epoch)
    assert end.epoch == 2


class CountingEvent(threading.Event):
    """The trainer's "running" flag, counting how often a paused trainer looked at it: proof that
    it was alive and waiting, with no clock involved (its waits are short, not the 0.5 s default)."""

    def __init__(self):
        super().__init__()
        self.waits_while_clear = 0

    def wait(self, timeout=None):
        if not self.is_set():
            self.waits_while_clear += 1
        return super().wait(None if timeout is None else min(timeout, 0.002))


def test_pause_and_resume_take_effect_between_iterations(data):
    running = CountingEvent()
    control = TrainingControl(threading.Event(), running)
    events = []

    def resume_once_the_trainer_waited():
        wait_for(lambda: running.waits_while_clear >= 20, what="the paused trainer to wait")
        control.resume()

    def listener(event):
        events.append(event)
        if isinstance(event, IterationEvent) and event.step == 3:
            control.pause()
            threading.Thread(target=resume_once_the_trainer_waited).start()

    Trainer(config(epochs=1), data, [listener], control).run()
    kinds = [(type(e).__name__, getattr(e, "step", None)) for e in events]
    at = kinds.index(("IterationEvent", 3))
    assert kinds[at + 1 : at + 4] == [("PauseEvent", 4), ("PauseEvent", 4), ("IterationEvent", 4)]
    pauses = [e for e in events if isinstance(e, PauseEvent)]
    assert [p.paused for p in pauses] == [True, False]
    assert running.waits_while_clear >= 20  # it waited, and took no step meanwhile (above)
    assert events[-1].status == "completed"


def test_control_from_another_thread(data):
    """The server's situation: the trainer runs in a worker thread, requests come from outside."""
    running = CountingEvent()
    control = TrainingControl(threading.Event(), running)
    events: list = []
    lock = threading.Lock()

    def listener(event):
        with lock:
            events.append(event)

    def steps() -> int:
        with lock:
            return sum(isinstance(e, IterationEvent) for e in events)

    trainer = Trainer(config(epochs=1000), data, [listener], control)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    try:
        wait_for(lambda: steps() >= 3, what="three steps")
        control.pause()
        wait_for(lambda: any(isinstance(e, PauseEvent) and e.paused for e in events),
                 what="the pause to take effect")
        paused_at = steps()
        checked = running.waits_while_clear
        wait_for(lambda: running.waits_while_clear >= checked + 20, what="the paused trainer to wait")
        assert steps() == paused_at, "no iteration may run while paused"
        control.resume()
        wait_for(lambda: steps() >= paused_at + 3, what="training to continue")
        control.stop()
        worker.join(timeout=20)
        assert not worker.is_alive()
    finally:
        control.stop()
        worker.join(timeout=20)
    end = events[-1]
    assert isinstance(end, EndEvent) and end.status == "stopped"
    assert end.steps_completed == steps()
    assert np.all(np.isfinite(trainer.model.predict_proba(normalise(data.test_images[:10]))))


def test_stop_wakes_a_paused_run(data):
    control = TrainingControl()
    control.pause()
    events = []

    def listener(event):  # stopped once the pause took effect (a timer could come before it)
        events.append(event)
        if isinstance(event, PauseEvent) and event.paused:
            threading.Thread(target=control.stop).start()

    end = Trainer(config(), data, [listener], control).run()
    assert end.status == "stopped" and end.steps_completed == 0 and end.test_accuracy is None
    assert [type(e).__name__ for e in events] == ["StartEvent", "PauseEvent", "EndEvent"]


# --- divergence ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("optimizer", "learning_rate"), [("sgd", 100), ("sgd", 1000),
                                                           ("momentum", 100), ("adam", 1000)])
def test_divergence_fails_the_run_with_a_hint_and_no_nan(data, optimizer, learning_rate):
    _, events, end = run(config(optimizer=optimizer, learning_rate=learning_rate, epochs=3), data)
    assert end.status == "failed"
    assert end.reason.startswith("diverged")
    assert "lower the learning rate" in end.reason
    assert end.test_accuracy is None
    assert all_floats_finite(events)
    # The diverging step is recorded: the one after the last step taken, with its loss (None
    # when it was not a finite number).
    steps = [e.step for e in events if isinstance(e, IterationEvent)]
    assert end.diverged is not None and end.diverged.step == end.steps_completed == len(steps)
    assert steps == list(range(len(steps)))
    assert end.diverged.loss is None or DIVERGED_LOSS < end.diverged.loss < math.inf
    assert f"at step {end.diverged.step} " in end.reason
    assert event_to_dict(end)["diverged"] == dataclasses.asdict(end.diverged)


def test_a_run_that_did_not_diverge_says_so(data):
    _, _, end = run(config(epochs=1), data)
    assert end.status == "completed" and end.diverged is None
    control = TrainingControl()
    control.stop()
    _, _, end = run(config(), data, control)
    assert end.status == "stopped" and end.diverged is None


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_weights_that_blow_up_in_the_last_update_of_an_epoch_diverge_at_the_next_step(data):
    """The losses of every step taken were finite, but the weights after the epoch's last update
    are not: validation catches it, and the step those weights would have trained is recorded."""

    class BreakTheWeights:
        def bind(self, trainer):
            self.trainer = trainer

        def __call__(self, event):
            if isinstance(event, IterationEvent) and event.step == self.trainer.steps_per_epoch - 1:
                for parameter in self.trainer.model.parameters():
                    parameter.value[...] = np.inf

    events = []
    trainer = Trainer(config(), data, [events.append, BreakTheWeights()])
    end = trainer.run()
    assert end.status == "failed" and "training-digit loss is not finite" in end.reason
    assert end.diverged == Divergence(step=trainer.steps_per_epoch, loss=None)
    assert not any(isinstance(e, EpochEvent) for e in events)


def test_an_exception_ends_the_run_as_failed(data):
    def broken(event):
        if isinstance(event, IterationEvent):
            raise RuntimeError("listener broke")

    end = Trainer(config(), data, [broken]).run()
    assert end.status == "failed" and "listener broke" in end.reason


def test_events_are_plain_data():
    event = IterationEvent(epoch=1, step=0, loss=2.3, learning_rate=0.1, samples=128)
    assert event_to_dict(event) == {"event": "iteration", "epoch": 1, "step": 0, "loss": 2.3,
                                    "learning_rate": 0.1, "samples": 128}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.loss = 0.0  # type: ignore[misc]


def test_the_epoch_fields_are_the_epoch_events_fields_and_nothing_else():
    assert EPOCH_FIELDS == ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                            "running_loss", "running_accuracy", "duration_s", "learning_rate")
    assert "event" not in {f.name for f in dataclasses.fields(EpochEvent)}  # the kind is no field


def test_a_listener_with_bind_gets_the_trainer_before_any_event(data):
    class Recorder:
        def __init__(self):
            self.bound, self.events = None, []

        def bind(self, trainer):
            assert not self.events
            self.bound = trainer

        def __call__(self, event):
            self.events.append(event)

    recorder = Recorder()
    trainer = Trainer(config(epochs=1), data, [recorder])
    assert recorder.bound is trainer and recorder.events == []
    trainer.run()
    assert isinstance(recorder.events[0], StartEvent)
