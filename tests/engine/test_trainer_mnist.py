"""On real MNIST: the first epoch of the `default` preset already exceeds 95% test accuracy."""

from __future__ import annotations

import pytest

from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.events import EpochEvent
from engine.trainer import Trainer


@pytest.mark.mnist
def test_first_epoch_of_default_exceeds_95_percent(mnist_data):
    config = TrainConfig.from_dict({"preset": "default"})
    control = TrainingControl()
    epochs = []

    def stop_after_first_epoch(event):
        if isinstance(event, EpochEvent):
            epochs.append(event)
            control.stop()

    end = Trainer(config, mnist_data, [stop_after_first_epoch], control).run()
    assert (end.status, end.epochs_completed) == ("stopped", 1)
    assert end.steps_completed == -(-60000 // config.batch_size)  # the last partial batch too
    assert epochs[0].val_accuracy > 0.95, f"test accuracy {epochs[0].val_accuracy:.4f} after 1 epoch"
    assert end.test_accuracy == epochs[0].val_accuracy
    # running accuracy over the epoch's randomly distorted batches (default augments): about 0.84
    assert epochs[0].train_accuracy > 0.8
