"""Finite-difference gradient checks (float64) for every layer, and softmax stability.

Each check compares a layer's analytic backward pass with central differences of the scalar
L = Σ y ⊙ R for a fixed random R, so that dL/dy = R.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine.layers import (
    BatchNorm,
    Dense,
    Dropout,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    initial_weights,
    softmax,
)

EPS = 1e-6


def numerical_gradient(f: Callable[[], float], array: np.ndarray) -> np.ndarray:
    """Central differences of f with respect to every element of `array` (perturbed in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + EPS
        plus = f()
        array[index] = saved - EPS
        minus = f()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * EPS)
    return grad


def assert_close(analytic: np.ndarray, numeric: np.ndarray, may_vanish: bool = False) -> None:
    """Agreement to ~5 significant digits; `may_vanish` where the math says the gradient is zero."""
    scale = np.maximum(np.abs(analytic), np.abs(numeric)).max()
    assert may_vanish or scale > 1e-6, "a gradient that is (nearly) zero proves nothing"
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=max(1e-7 * scale, 1e-9))


def check_layer(layer: Layer, x: np.ndarray, before_forward: Callable[[], None] = lambda: None):
    """Check dL/dx and dL/dθ of one layer in training mode."""
    rng = np.random.default_rng(1)
    before_forward()
    r = rng.standard_normal(layer.forward(x, training=True).shape)

    def loss() -> float:
        before_forward()
        return float(np.sum(layer.forward(x, training=True) * r))

    before_forward()
    layer.forward(x, training=True)
    dx = layer.backward(r.copy())
    analytic_params = [p.grad.copy() for p in layer.parameters]
    if dx is not None:
        assert dx.dtype == np.float64
        assert_close(dx, numerical_gradient(loss, x))
    for parameter, analytic in zip(layer.parameters, analytic_params, strict=True):
        assert_close(analytic, numerical_gradient(loss, parameter.value))


def away_from_zero(shape, rng) -> np.ndarray:
    """Inputs with |x| >= 0.1, so that ±EPS never crosses a ReLU kink."""
    x = rng.uniform(0.1, 2.0, shape)
    return x * rng.choice([-1.0, 1.0], shape)


def test_dense_gradients():
    rng = np.random.default_rng(0)
    layer = Dense(7, 5, "he", rng, dtype=np.float64)
    layer.b.value[:] = rng.standard_normal(5)
    check_layer(layer, rng.standard_normal((4, 7)))


def test_first_dense_layer_skips_the_input_gradient_but_fills_its_own():
    rng = np.random.default_rng(0)
    layer = Dense(3, 2, "glorot", rng, dtype=np.float64)
    layer.needs_input_grad = False
    x = rng.standard_normal((5, 3))
    layer.forward(x, training=True)
    dy = rng.standard_normal((5, 2))
    assert layer.backward(dy) is None
    np.testing.assert_allclose(layer.W.grad, x.T @ dy)
    np.testing.assert_allclose(layer.b.grad, dy.sum(axis=0))


@pytest.mark.parametrize("activation", [ReLU, lambda: LeakyReLU(0.1), Sigmoid, Tanh],
                         ids=["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activation_gradients(activation):
    rng = np.random.default_rng(0)
    check_layer(activation(), away_from_zero((6, 5), rng))


def test_relu_and_leaky_relu_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    np.testing.assert_array_equal(ReLU().forward(x), [[0, 0, 0, 0.5, 3.0]])
    np.testing.assert_allclose(LeakyReLU(0.1).forward(x), [[-0.2, -0.05, 0, 0.5, 3.0]])


def test_sigmoid_saturates_without_overflow():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = Sigmoid().forward(np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=np.float32))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-12)


def test_dropout_gradient_with_a_fixed_mask():
    rng = np.random.default_rng(0)
    layer = Dropout(0.4)

    def same_mask() -> None:
        layer.rng = np.random.default_rng(7)

    x = rng.standard_normal((8, 6))
    check_layer(layer, x, before_forward=same_mask)
    same_mask()
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)


def test_dropout_is_identity_at_inference_and_unbiased_in_training():
    x = np.ones((2000, 50), dtype=np.float32)
    layer = Dropout(0.3, np.random.default_rng(0))
    assert layer.forward(x, training=False) is x
    assert abs(layer.forward(x, training=True).mean() - 1.0) < 0.01


def test_batchnorm_gradients_in_training_mode():
    rng = np.random.default_rng(0)
    layer = BatchNorm(5, dtype=np.float64)
    layer.gamma.value[:] = rng.uniform(0.5, 2.0, 5)
    layer.beta.value[:] = rng.standard_normal(5)
    check_layer(layer, 3.0 + 2.0 * rng.standard_normal((8, 5)))


def test_batchnorm_normalises_in_training_and_uses_running_statistics_at_inference():
    rng = np.random.default_rng(0)
    layer = BatchNorm(4, momentum=0.0, dtype=np.float64)
    x = 5.0 + 3.0 * rng.standard_normal((256, 4))
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(y.std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(layer.running_mean, x.mean(axis=0))
    np.testing.assert_allclose(layer.forward(x[:3], training=False), y[:3], atol=1e-9)


def test_softmax_is_stable_with_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [3.0e4, 3.0e4, 0.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = softmax(logits)
        p_layer = Softmax().forward(logits)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_array_equal(p, p_layer)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)


def test_softmax_matches_the_definition():
    z = np.random.default_rng(0).standard_normal((4, 10))
    np.testing.assert_allclose(softmax(z), np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))


def test_softmax_refuses_a_backward_pass_of_its_own():
    with pytest.raises(RuntimeError, match="fused"):
        Softmax().backward(np.ones((1, 10)))


def test_initialisations_follow_the_fan_in():
    rng = np.random.default_rng(0)
    he = initial_weights(400, 300, "he", rng)
    glorot = initial_weights(400, 300, "glorot", rng)
    notebook = initial_weights(400, 300, "notebook", rng)
    assert he.dtype == glorot.dtype == notebook.dtype == np.float32
    assert abs(he.std() - np.sqrt(2 / 400)) < 0.002
    assert np.abs(glorot).max() <= np.sqrt(6 / 700)
    assert abs(glorot.std() - np.sqrt(2 / 700)) < 0.002
    assert abs(notebook.std() - 0.1) < 0.002
    with pytest.raises(ValueError, match="he, glorot or notebook"):
        initial_weights(2, 2, "xavier", rng)


LAYERS = {
    "dense": lambda: Dense(6, 5, "he", np.random.default_rng(0), dtype=np.float64),
    "relu": ReLU, "leaky_relu": lambda: LeakyReLU(0.1), "sigmoid": Sigmoid, "tanh": Tanh,
    "dropout": lambda: Dropout(0.5, np.random.default_rng(0)),
    "batch_norm": lambda: BatchNorm(6, dtype=np.float64),
}


def layer_state(layer: Layer) -> dict:
    """Every attribute of a layer, arrays copied: what inference must leave exactly as it was."""
    return {name: value.copy() if isinstance(value, np.ndarray) else value
            for name, value in vars(layer).items() if name != "_buffers"}


@pytest.mark.parametrize("name", list(LAYERS))
def test_inference_keeps_no_training_state(name):
    rng = np.random.default_rng(3)
    layer = LAYERS[name]()
    x_train, x_infer = away_from_zero((8, 6), rng), away_from_zero((3, 6), rng)
    layer.forward(x_train, training=True)
    before = layer_state(layer)
    layer.forward(x_infer, training=False)
    after = layer_state(layer)
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[key], value, err_msg=key)
        else:
            assert after[key] is value or after[key] == value, key
    fresh = LAYERS[name]()
    fresh.forward(x_infer, training=False)  # remembers nothing for a backward pass either
    assert layer_state(fresh).keys() == layer_state(LAYERS[name]()).keys()


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_never_writes_into_the_gradient_it_is_given(name):
    rng = np.random.default_rng(4)
    layer = LAYERS[name]()
    y = layer.forward(away_from_zero((8, 6), rng), training=True)
    dy = rng.standard_normal(y.shape)
    given = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(dy, given)
