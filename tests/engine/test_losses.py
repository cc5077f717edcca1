"""The fused softmax + cross-entropy: value, gradient (finite differences in float64), stability."""

from __future__ import annotations

import math

import numpy as np

from engine.losses import SoftmaxCrossEntropy
from tests.engine.test_layers import assert_close, numerical_gradient


def test_loss_is_the_mean_natural_log_cross_entropy():
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
    labels = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -(math.log(p[0, 0]) + math.log(p[1, 2])) / 2
    assert math.isclose(SoftmaxCrossEntropy().forward(logits, labels), expected, rel_tol=1e-12)


def test_uniform_logits_cost_log_of_the_number_of_classes():
    loss = SoftmaxCrossEntropy().forward(np.zeros((5, 10), dtype=np.float32), np.arange(5))
    assert math.isclose(loss, math.log(10), rel_tol=1e-6)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((6, 10))
    labels = rng.integers(0, 10, 6)
    loss = SoftmaxCrossEntropy()
    loss.forward(logits, labels)
    analytic = loss.backward()
    assert_close(analytic, numerical_gradient(lambda: loss.forward(logits, labels), logits))


def test_gradient_is_averaged_over_the_batch():
    loss = SoftmaxCrossEntropy()
    loss.forward(np.zeros((4, 10)), np.array([1, 2, 3, 4]))
    grad = loss.backward()
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(grad[0, 1], (0.1 - 1) / 4)
    np.testing.assert_allclose(grad[0, 0], 0.1 / 4)


def test_huge_logits_give_finite_loss_and_gradient():
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=np.float32)
    labels = np.array([0, 2, 1])
    loss = SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss.forward(logits, labels)
        grad = loss.backward()
    # Row 0 is certain and right (0), row 1 certain and wrong by 2e4, row 2 uniform over 3 classes.
    assert math.isclose(value, (0 + 2e4 + math.log(3)) / 3, rel_tol=1e-6)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[1], np.array([1, 0, -1]) / 3, atol=1e-7)


def test_last_partial_batch_of_any_size_is_accepted():
    loss = SoftmaxCrossEntropy()
    for batch in (1, 7, 128):
        value = loss.forward(np.zeros((batch, 10), dtype=np.float32), np.zeros(batch, dtype=np.intp))
        assert math.isclose(value, math.log(10), rel_tol=1e-6)
        assert loss.backward().shape == (batch, 10)
