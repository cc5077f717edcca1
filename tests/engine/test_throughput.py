"""The throughput listener, on a clock the test turns by hand."""

from __future__ import annotations

import pytest

from engine.events import EpochEvent, IterationEvent, PauseEvent, StartEvent
from engine.throughput import Throughput


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def step(index: int, samples: int = 100) -> IterationEvent:
    return IterationEvent(epoch=1, step=index, loss=1.0, learning_rate=0.1, samples=samples)


def test_rate_is_a_moving_average_of_samples_over_the_time_between_steps():
    clock = Clock()
    meter = Throughput(clock, smoothing=0.5)
    meter(StartEvent(epochs=1, steps_per_epoch=3, train_samples=300, test_samples=10))
    assert meter.samples_per_second is None
    clock.now += 0.1
    meter(step(0))
    assert meter.samples_per_second == pytest.approx(1000.0)  # the first rate as it is
    clock.now += 0.5
    meter(step(1))
    assert meter.samples_per_second == pytest.approx(0.5 * 1000 + 0.5 * 200)
    clock.now += 0.25
    meter(step(2, samples=50))  # a partial last batch counts its own samples
    assert meter.samples_per_second == pytest.approx(0.5 * 600 + 0.5 * 200)


def test_validation_and_pauses_are_not_counted_as_slow_steps():
    clock = Clock()
    meter = Throughput(clock, smoothing=0.0)  # no smoothing: each rate as measured
    meter(StartEvent(epochs=2, steps_per_epoch=1, train_samples=100, test_samples=10))
    clock.now += 0.1
    meter(step(0))
    clock.now += 30.0  # the validation pass
    meter(EpochEvent(epoch=1, train_loss=1, train_accuracy=0.5, val_loss=1, val_accuracy=0.5,
                     running_loss=1, running_accuracy=0.5, duration_s=30.1, learning_rate=0.1))
    clock.now += 0.1
    meter(step(1))
    assert meter.samples_per_second == pytest.approx(1000.0)
    meter(PauseEvent(epoch=2, step=2, paused=True))
    clock.now += 600.0  # paused
    meter(PauseEvent(epoch=2, step=2, paused=False))
    clock.now += 0.2
    meter(step(2))
    assert meter.samples_per_second == pytest.approx(500.0)
