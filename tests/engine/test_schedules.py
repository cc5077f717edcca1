"""Learning-rate schedules as a function of progress in epochs."""

from __future__ import annotations

import math

import pytest

from engine.config import TrainConfig
from engine.schedules import learning_rate


def config(**fields) -> TrainConfig:
    return TrainConfig.from_dict({"learning_rate": 0.1, "epochs": 10, "warmup_epochs": 0, **fields})


def test_constant():
    c = config(lr_schedule="constant")
    assert [learning_rate(c, t) for t in (0, 0.5, 3, 9.99)] == [0.1] * 4


def test_step_halves_after_every_epoch_like_the_notebook():
    c = config(lr_schedule="step", lr_decay=0.5)
    assert learning_rate(c, 0.0) == pytest.approx(0.1)
    assert learning_rate(c, 0.99) == pytest.approx(0.1)
    assert learning_rate(c, 1.0) == pytest.approx(0.05)
    assert learning_rate(c, 2.5) == pytest.approx(0.025)
    assert learning_rate(c, 9.0) == pytest.approx(0.1 / 512)


def test_cosine_falls_from_the_base_rate_to_zero():
    c = config(lr_schedule="cosine")
    assert learning_rate(c, 0) == pytest.approx(0.1)
    assert learning_rate(c, 5) == pytest.approx(0.05)
    assert learning_rate(c, 2.5) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(c, 10) == pytest.approx(0.0, abs=1e-12)
    rates = [learning_rate(c, t / 10) for t in range(100)]
    assert rates == sorted(rates, reverse=True)


def test_warmup_ramps_up_linearly_then_hands_over():
    c = config(lr_schedule="constant", warmup_epochs=2)
    steps = 100
    assert learning_rate(c, 0.0, 1 / steps) == pytest.approx(0.1 * (1 / steps) / 2)
    assert learning_rate(c, 1.0, 1 / steps) == pytest.approx(0.1 * (1 + 1 / steps) / 2)
    assert learning_rate(c, 2.0, 1 / steps) == pytest.approx(0.1)
    assert learning_rate(c, 5.0, 1 / steps) == pytest.approx(0.1)


def test_warmup_multiplies_the_schedule():
    c = config(lr_schedule="step", lr_decay=0.5, warmup_epochs=2)
    assert learning_rate(c, 1.5) == pytest.approx(0.05 * 1.5 / 2)
