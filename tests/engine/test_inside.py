"""The layer statistics (engine/inside.py), each checked against an independent computation on
small arrays, and the LayerWatch listener on a real (synthetic) training run."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.events import (
    EndEvent,
    EpochEvent,
    Histogram,
    IterationEvent,
    LayersEvent,
    PauseEvent,
    event_to_dict,
)
from engine.inside import (
    EDGES,
    MAX_IMAGES,
    PROBE_SIZE,
    LayerWatch,
    class_means,
    dead_fraction,
    histogram,
    norm,
    probe_forward,
    signed_bytes,
    update_ratio,
    watched_every,
)
from engine.layers import Dense, ReLU, Softmax
from engine.model import Sequential
from engine.trainer import Trainer
from tests.engine.synthetic import synthetic_digits
from tests.waiting import wait_for


# --- the quantities ----------------------------------------------------------------------------
def test_the_grid_is_symmetric_with_ten_bins_per_decade():
    assert len(EDGES) == 182
    np.testing.assert_allclose(EDGES, -EDGES[::-1])
    positive = EDGES[EDGES > 0]
    assert positive[0] == pytest.approx(1e-6) and positive[-1] == pytest.approx(1e3)
    np.testing.assert_allclose(positive[10::10], 10.0 ** np.arange(-5, 4))
    np.testing.assert_allclose(positive[1:] / positive[:-1], 10 ** 0.1)


@pytest.mark.parametrize("scale", [1e-4, 0.05, 3.0])
def test_histogram_counts_as_numpy_does_on_the_same_edges(scale):
    rng = np.random.default_rng(1)
    values = (rng.standard_normal((60, 70)) * scale).astype(np.float32)
    values[0, :5] = 0.0
    expected, _ = np.histogram(values.astype(np.float64), bins=EDGES)
    result = histogram(values)
    first = int(np.flatnonzero(expected)[0])
    last = int(np.flatnonzero(expected)[-1])
    assert list(result.counts) == expected[first : last + 1].tolist()
    np.testing.assert_allclose(result.edges, EDGES[first : last + 2], rtol=1e-5)
    assert sum(result.counts) == values.size


def test_histogram_puts_zeros_in_the_centre_and_huge_values_in_the_outer_bins():
    result = histogram(np.array([0.0, 0.0, 5e-7, -5e-7, 2e6, -2e6], dtype=np.float32))
    assert result.counts[0] == 1 and result.counts[-1] == 1  # clipped, not lost
    centre = next(i for i, edge in enumerate(result.edges) if edge == pytest.approx(-1e-6))
    assert result.counts[centre] == 4
    assert sum(result.counts) == 6
    assert histogram(np.zeros(0, dtype=np.float32)) == Histogram((), ())


def test_a_histogram_is_at_most_about_4_kb_of_json():
    spread = np.concatenate([np.logspace(-7, 4, 4000), -np.logspace(-7, 4, 4000)]).astype(
        np.float32) * 3.7
    result = histogram(np.tile(spread, 300))  # every bin, each with a large count
    assert len(result.counts) == len(EDGES) - 1
    assert len(json.dumps(dataclasses.asdict(result))) < 4200


def test_norm_update_ratio_and_dead_fraction_by_hand():
    a = np.array([[3.0, 0.0], [0.0, 4.0]], dtype=np.float32)
    assert norm(a) == pytest.approx(5.0)
    before = np.array([[3.0, 1.0], [0.0, 4.0]], dtype=np.float32)
    assert update_ratio(before, a) == pytest.approx(1.0 / 5.0)
    assert update_ratio(a, np.zeros_like(a)) == 0.0
    activations = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    assert dead_fraction(activations) == pytest.approx(1 / 3)  # only unit 0 never fires


def test_class_means_by_hand():
    activations = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    means = class_means(activations, np.array([7, 7, 2]))
    assert means[7] == (2.0, 3.0) and means[2] == (10.0, 0.0)
    assert all(means[digit] is None for digit in range(10) if digit not in (2, 7))


def test_signed_bytes_are_the_weights_over_their_largest_magnitude():
    weights = np.array([0.5, -1.0, 0.25, 0.0], dtype=np.float32)
    decoded = np.frombuffer(base64.b64decode(signed_bytes(weights)), dtype=np.int8)
    assert decoded.tolist() == [64, -127, 32, 0]  # 63.5 rounds to even: 64
    assert np.frombuffer(base64.b64decode(signed_bytes(np.zeros(3))), dtype=np.int8).tolist() == [0, 0, 0]


def test_probe_forward_gives_each_dense_layers_output_after_its_activation():
    rng = np.random.default_rng(0)
    first, second = Dense(4, 3, rng=rng), Dense(3, 2, rng=rng)
    model = Sequential([first, ReLU(), second, Softmax()])
    x = rng.standard_normal((5, 4)).astype(np.float32)
    hidden, logits = probe_forward(model, x)
    expected_hidden = np.maximum(x @ first.W.value + first.b.value, 0)
    np.testing.assert_allclose(hidden, expected_hidden, rtol=1e-6)
    np.testing.assert_allclose(logits, expected_hidden @ second.W.value + second.b.value, rtol=1e-6)


def test_the_cadence_coarsens_for_long_runs_and_deep_networks():
    assert watched_every(0, 10_000) == 0
    assert watched_every(100, 4_300, layers=2) == 100
    assert watched_every(100, 1_000_000, layers=2) == 1000  # 1000 snapshots of 2 layers
    assert watched_every(10, 10_000, layers=9) == 45


# --- the listener on a training run -----------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return synthetic_digits(n_train=1200, n_test=200)


def config(**fields) -> TrainConfig:
    base = {"hidden_layers": [48, 24], "epochs": 2, "batch_size": 100, "optimizer": "momentum",
            "learning_rate": 0.05, "lr_schedule": "cosine", "validation_size": 300,
            "stats_every": 4, "augmentation": {}}
    return TrainConfig.from_dict({**base, **fields})


class Independent:
    """At every step, before and after, the weights and gradients as they are, computed without
    engine.inside: what each watched step's statistics must equal."""

    def bind(self, trainer):
        self.trainer = trainer
        self.before = {}
        self.after = {}

    def __call__(self, event):
        dense = self.trainer.model.dense_layers
        if isinstance(event, IterationEvent):
            self.after[event.step] = [(layer.W.value.copy(), layer.W.grad.copy()) for layer in dense]
            self.before[event.step + 1] = [layer.W.value.copy() for layer in dense]


def run(cfg, data, *extra, control=None):
    events = []
    independent = Independent()
    trainer = Trainer(cfg, data, [events.append, independent, LayerWatch(cfg.stats_every), *extra],
                      control)
    independent.before[0] = [layer.W.value.copy() for layer in trainer.model.dense_layers]
    end = trainer.run()
    return trainer, events, independent, end


def test_watched_steps_are_the_cadence_and_every_epochs_last_step(data):
    trainer, events, _, end = run(config(), data, )
    assert trainer.steps_per_epoch == 9  # 900 digits in batches of 100
    layers = [e for e in events if isinstance(e, LayersEvent)]
    assert [e.step for e in layers] == [0, 4, 8, 12, 16, 17]
    assert [e.epoch_end for e in layers] == [False, False, True, False, False, True]
    assert [e.epoch for e in layers] == [1, 1, 1, 2, 2, 2]
    # Each follows its step's IterationEvent; an epoch's comes after the EpochEvent.
    for snapshot in layers:
        before = events[events.index(snapshot) - 1]
        kind = EpochEvent if snapshot.epoch_end else IterationEvent
        assert isinstance(before, kind)
        if kind is IterationEvent:
            assert before.step == snapshot.step
            assert snapshot.learning_rate == before.learning_rate
    assert end.status == "completed"


def test_each_statistic_equals_the_independent_computation(data):
    trainer, events, independent, _ = run(config(), data)
    for snapshot in (e for e in events if isinstance(e, LayersEvent)):
        assert [layer.name for layer in snapshot.layers] == ["hidden1", "hidden2", "output"]
        assert [layer.shape for layer in snapshot.layers] == [(784, 48), (48, 24), (24, 10)]
        for index, layer in enumerate(snapshot.layers):
            weights, gradient = independent.after[snapshot.step][index]
            before = independent.before[snapshot.step][index]
            assert layer.weights == histogram(weights)
            assert layer.gradients == histogram(gradient)
            assert sum(layer.weights.counts) == weights.size
            assert layer.grad_norm == pytest.approx(np.sqrt(np.sum(gradient.astype(np.float64) ** 2)),
                                                    rel=1e-5)
            expected_ratio = np.linalg.norm((before - weights).ravel().astype(np.float64)) / (
                np.linalg.norm(weights.ravel().astype(np.float64)))
            assert layer.update_ratio == pytest.approx(expected_ratio, rel=1e-4)
            assert layer.update_ratio > 0
        assert snapshot.layers[-1].dead_fraction is None  # the output layer has no ReLU
        assert all(0 <= layer.dead_fraction <= 1 for layer in snapshot.layers[:-1])


def test_activations_and_dead_units_are_measured_on_the_probe_of_validation_digits(data):
    events = []
    watch = LayerWatch(4)
    trainer = Trainer(config(epochs=1), data, [events.append, watch])
    trainer.run()
    probe = trainer.data.validation_images[:PROBE_SIZE].astype(np.float32) / 255
    assert len(probe) == 256 and watch.probe.shape == probe.shape
    np.testing.assert_allclose(watch.probe, probe, rtol=1e-6)
    last = [e for e in events if isinstance(e, LayersEvent)][-1]
    # The model is unchanged since the last snapshot (the end of the run).
    hidden1, hidden2, logits = probe_forward(trainer.model, probe)
    for layer, output in zip(last.layers, (hidden1, hidden2, logits), strict=True):
        assert layer.activations == histogram(output)
    assert last.layers[0].dead_fraction == pytest.approx(np.mean(np.all(hidden1 <= 0, axis=0)))


def test_the_epochs_snapshot_shows_the_first_layer(data):
    _, events, independent, _ = run(config(hidden_layers=[80]), data)
    ends = [e for e in events if isinstance(e, LayersEvent) and e.epoch_end]
    assert len(ends) == 2
    for snapshot in ends:
        first = snapshot.first_layer
        assert first.units == 80 and len(first.images) == MAX_IMAGES == 64
        weights = independent.after[snapshot.step][0][0]
        for unit in (0, 17, 63):
            image = np.frombuffer(base64.b64decode(first.images[unit]), dtype=np.int8)
            expected = np.round(weights[:, unit] / np.abs(weights[:, unit]).max() * 127)
            np.testing.assert_array_equal(image, expected.astype(np.int8))
        assert len(first.class_activations) == 10
        assert all(row is None or len(row) == 64 for row in first.class_activations)
    assert all(e.first_layer is None for e in events if isinstance(e, LayersEvent) and not e.epoch_end)


def test_watching_never_changes_the_training(data):
    cfg = config(dropout=0.3, batch_norm=True, optimizer="adam", learning_rate=0.003,
                 augmentation={"shift": 1, "rotation": 5})
    watched, _, _, _ = run(cfg, data)
    plain = Trainer(cfg, data)
    plain.run()
    for name, array in watched.model.state().items():
        np.testing.assert_array_equal(array, plain.model.state()[name])


def test_stats_every_zero_is_off(data):
    _, events, _, _ = run(config(stats_every=0), data)
    assert not any(isinstance(e, LayersEvent) for e in events)


def test_a_layers_event_survives_its_json_form(data):
    _, events, _, _ = run(config(epochs=1), data)
    for snapshot in (e for e in events if isinstance(e, LayersEvent)):
        wire = json.loads(json.dumps(event_to_dict(snapshot), allow_nan=False))
        assert wire.pop("event") == "layers"
        assert LayersEvent.from_dict(wire) == snapshot


def test_the_last_step_of_each_step_request_is_watched(data):
    """Step mode: a snapshot at the end of every request, whatever the cadence."""
    control = TrainingControl()
    events: list = []
    lock = threading.Lock()

    def listener(event):
        with lock:
            events.append(event)
        if isinstance(event, IterationEvent) and event.step == 1:
            control.pause()

    def paused() -> int:
        with lock:
            return sum(isinstance(e, PauseEvent) and e.paused for e in events)

    cfg = config(stats_every=1000, epochs=3)
    trainer = Trainer(cfg, data, [listener, LayerWatch(cfg.stats_every)], control)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    try:
        wait_for(lambda: paused() == 1, what="the pause")
        control.step(1)
        wait_for(lambda: paused() == 2, what="the first step request")
        control.step(3)
        wait_for(lambda: paused() == 3, what="the second step request")
        control.resume()
        worker.join(timeout=30)
    finally:
        control.stop()
        worker.join(timeout=30)
    assert isinstance(events[-1], EndEvent)
    watched = [e.step for e in events if isinstance(e, LayersEvent)]
    # Step 0 (cadence), step 2 (the first request), step 5 (the end of the second), the
    # epochs' last steps 8, 17 and 26.
    assert watched == [0, 2, 5, 8, 17, 26]
