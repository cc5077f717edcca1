"""A small, learnable stand-in for MNIST: ten random 'prototype' images plus noise, as uint8; and
a listener that spoils a model mid-run, for tests of the epoch a run keeps."""

from __future__ import annotations

import numpy as np

from engine.data import MnistData
from engine.events import EpochEvent


def synthetic_digits(n_train: int = 1000, n_test: int = 300, seed: int = 0,
                     noise: float = 60.0) -> MnistData:
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (10, 784)).astype(np.float64)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n)
        pixels = 0.6 * prototypes[labels] + rng.normal(0.0, noise, (n, 784))
        return np.clip(pixels, 0, 255).astype(np.uint8), labels.astype(np.uint8)

    return MnistData(*draw(n_train), *draw(n_test))


class ScrambleAfterEpoch:
    """A listener that adds unit noise to every weight when `epoch` ends: with a learning rate
    too small to repair them, the later epochs are worse on validation than the earlier ones."""

    def __init__(self, epoch: int = 2):
        self.epoch = epoch

    def bind(self, trainer):
        self.trainer = trainer

    def __call__(self, event):
        if isinstance(event, EpochEvent) and event.epoch == self.epoch:
            rng = np.random.default_rng(0)
            for parameter in self.trainer.model.parameters():
                parameter.value += rng.normal(0, 1, parameter.value.shape).astype(np.float32)
