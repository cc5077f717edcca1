"""The NumPy floor must do the engine's work, step for step: otherwise its time would prove nothing."""

from __future__ import annotations

import numpy as np
import pytest

from bench.numpy_floor import NumpyFloor, supports
from bench.speed import bench_config
from engine.losses import SoftmaxCrossEntropy
from engine.metrics import normalise
from engine.model import build_model
from engine.optimizers import make_optimizer
from tests.engine.synthetic import synthetic_digits


@pytest.mark.parametrize("changes", [
    {"hidden_layers": (32,), "optimizer": "sgd"},
    {"hidden_layers": (48, 24), "optimizer": "momentum", "weight_decay": 1e-3},
    {"hidden_layers": (32,), "optimizer": "nesterov"},
])
def test_floor_steps_match_the_engine(changes):
    config = bench_config("default").replace(**changes)
    data = synthetic_digits(n_train=600, n_test=10)
    floor = NumpyFloor(config, data, batch_size=128)
    model = build_model(config, np.random.default_rng(1))
    for layer, dense in enumerate(model.dense_layers):  # start from the same weights
        floor.W[layer][...] = dense.W.value
        floor.b[layer][...] = dense.b.value
    loss_function = SoftmaxCrossEntropy()
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.momentum,
                               config.weight_decay)
    rng = np.random.default_rng(2)
    for size, lr in [(128, 0.1), (128, 0.05), (40, 0.05)]:  # a partial batch too
        batch = rng.choice(len(data.train_labels), size, replace=False)
        floor_loss = floor.train_on(batch, lr)
        logits = model.forward(normalise(data.train_images[batch]), training=True)
        engine_loss = loss_function.forward(logits, data.train_labels[batch].astype(np.intp))
        model.backward(loss_function.backward())
        optimizer.step(lr)
        assert floor_loss == pytest.approx(engine_loss, rel=1e-5)
    for layer, dense in enumerate(model.dense_layers):
        np.testing.assert_allclose(floor.W[layer], dense.W.value, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(floor.b[layer], dense.b.value, rtol=1e-4, atol=1e-6)


def test_floor_declines_what_it_does_not_implement():
    assert supports(bench_config("notebook")) and supports(bench_config("default"))
    adam = bench_config("default").replace(optimizer="adam")
    assert not supports(adam)
    with pytest.raises(ValueError, match="without dropout or batch norm"):
        NumpyFloor(adam, synthetic_digits(n_train=10, n_test=10), batch_size=128)
