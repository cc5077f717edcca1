"""The three sets of a run: the digits it trains on, the held-out digits it is validated on, and
the test set it is measured on once, at the end.

MNIST ships a training set (60,000) and a test set (10,000). Choosing anything on the test set
(the epoch to keep, the best run, a hyper-parameter) leaks it into the result, so a run holds out
the last `validation_size` training digits as its validation set: never trained on, never
distorted, used for every per-epoch `val_*` metric and for every choice. The test set is
evaluated once, for the model the validation chose.

`hold_out(data, validation_size, train=None)`: the validation set is always the *last*
`validation_size` training digits, whatever `train` says; `train` keeps only the first digits of
the rest (a quick run on a slice). So the validation set of a slice is the very same digits as
the validation set of a full run, and a slice never trains on a validation digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.dataset import MnistData

MIN_TRAIN_SAMPLES = 1  # a run needs something to train on


class SplitError(ValueError):
    """A validation set that leaves nothing to train on."""


@dataclass(frozen=True)
class Split:
    """Training, validation and test digits of one run (read-only uint8 arrays, as MnistData)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray  # (0, 784) when validation_size is 0: no validation
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def has_validation(self) -> bool:
        return len(self.validation_labels) > 0


def hold_out(data: MnistData | Split, validation_size: int, train: int | None = None) -> Split:
    """The last `validation_size` training digits become the validation set; the run trains on
    the first `train` of the others (all of them if None). A `Split` is returned as it is."""
    if isinstance(data, Split):
        return data
    available = len(data.train_labels)
    trainable = available - validation_size
    if validation_size < 0 or trainable < MIN_TRAIN_SAMPLES:
        raise SplitError(
            f"validation_size {validation_size} leaves no digit to train on: the training set has "
            f"{available:,} digits; hold out fewer (0 trains on all of them)")
    kept = trainable if train is None else min(train, trainable)
    return Split(
        data.train_images[:kept], data.train_labels[:kept],
        data.train_images[trainable:], data.train_labels[trainable:],
        data.test_images, data.test_labels,
    )


def training_samples(available: int, validation_size: int, train: int | None = None) -> int:
    """How many digits `hold_out` leaves to train on (0 if it would refuse)."""
    trainable = max(available - validation_size, 0)
    return trainable if train is None else min(train, trainable)
