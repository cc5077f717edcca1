"""Each optimiser's update against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from engine.layers import Parameter
from engine.optimizers import SGD, Adam, Momentum, make_optimizer


def parameter(value, grad, decay=True) -> Parameter:
    p = Parameter(np.array(value, dtype=np.float64), decay=decay)
    p.grad[...] = grad
    return p


def test_sgd_step():
    w = parameter([1.0, -2.0], [0.5, -0.25])
    SGD([w]).step(0.1)
    np.testing.assert_allclose(w.value, [0.95, -1.975])


def test_momentum_accumulates_velocity():
    w = parameter([1.0], [1.0])
    opt = Momentum([w], momentum=0.9)
    opt.step(0.1)  # v = 1, w = 1 - 0.1
    np.testing.assert_allclose(w.value, [0.9])
    w.grad[...] = 2.0
    opt.step(0.1)  # v = 0.9 * 1 + 2 = 2.9, w = 0.9 - 0.29
    np.testing.assert_allclose(w.value, [0.61])
    np.testing.assert_allclose(opt.velocity[0], [2.9])


def test_nesterov_looks_ahead():
    w = parameter([1.0], [1.0])
    opt = Momentum([w], momentum=0.9, nesterov=True)
    opt.step(0.1)  # v = 1, w = 1 - 0.1 (1 + 0.9 * 1) = 0.81
    np.testing.assert_allclose(w.value, [0.81])
    w.grad[...] = 2.0
    opt.step(0.1)  # v = 2.9, w = 0.81 - 0.1 (2 + 0.9 * 2.9) = 0.349
    np.testing.assert_allclose(w.value, [0.349])


def test_adam_first_step_is_learning_rate_times_sign_thanks_to_bias_correction():
    w = parameter([1.0, 1.0, 1.0], [0.001, -5.0, 300.0])
    Adam([w]).step(0.01)
    np.testing.assert_allclose(w.value, [0.99, 1.01, 0.99], rtol=1e-6)


def test_adam_second_step_by_hand():
    w = parameter([0.0], [1.0])
    opt = Adam([w], beta1=0.9, beta2=0.999, eps=1e-8)
    opt.step(0.1)
    w.grad[...] = 3.0
    opt.step(0.1)
    m = 0.9 * 0.1 + 0.1 * 3.0  # 0.39
    v = 0.999 * 0.001 + 0.001 * 9.0  # 0.009999
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    first = -0.1 * 1.0 / (1.0 + 1e-8)  # m̂ = g = 1, v̂ = g² = 1
    expected = first - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(w.value, [expected], rtol=1e-9)
    assert opt.t == 2


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_weight_decay_applies_to_weights_only(name):
    weight = parameter([2.0, -4.0], [0.0, 0.0], decay=True)
    bias = parameter([2.0, -4.0], [0.0, 0.0], decay=False)
    make_optimizer(name, [weight, bias], momentum=0.9, weight_decay=0.1).step(0.5)
    np.testing.assert_array_equal(bias.value, [2.0, -4.0])
    if name == "adam":  # the decayed gradient λw is normalised away: a step of lr against sign(w)
        np.testing.assert_allclose(weight.value, [1.5, -3.5], rtol=1e-6)
    elif name == "nesterov":  # g = λw, v = g, step = lr (g + μ v) = 0.5 * 1.9 * λw
        np.testing.assert_allclose(weight.value, [2.0 - 0.19, -4.0 + 0.38])
    else:  # w - lr λ w
        np.testing.assert_allclose(weight.value, [1.9, -3.8])


def test_sgd_with_weight_decay_adds_lambda_w_to_the_gradient():
    w = parameter([1.0], [0.5])
    SGD([w], weight_decay=0.01).step(0.1)
    np.testing.assert_allclose(w.value, [1.0 - 0.1 * (0.5 + 0.01)])


def test_float32_parameters_stay_float32():
    for name in ("sgd", "momentum", "nesterov", "adam"):
        p = Parameter(np.ones(3, dtype=np.float32))
        p.grad[...] = 0.5
        make_optimizer(name, [p], weight_decay=0.01).step(0.1)
        assert p.value.dtype == np.float32


def test_unknown_optimizer_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="sgd, momentum, nesterov or adam"):
        make_optimizer("rmsprop", [])


def test_every_configurable_optimizer_has_a_class():
    from engine.config import OPTIMIZERS
    from engine.optimizers import OPTIMIZER_CLASSES

    assert set(OPTIMIZER_CLASSES) == set(OPTIMIZERS)
