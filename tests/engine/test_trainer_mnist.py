"""On real MNIST: the first epoch of the `default` preset already exceeds 95%, on the held-out
validation digits and on the test set."""

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
    assert end.steps_completed == -(-55000 // config.batch_size)  # 5,000 held out; the partial batch
    assert epochs[0].val_accuracy > 0.95, f"validation accuracy {epochs[0].val_accuracy:.4f}"
    assert end.model_epoch == 1 and end.test_accuracy > 0.95, f"test accuracy {end.test_accuracy}"
    assert end.test_accuracy != epochs[0].val_accuracy or end.test_loss != epochs[0].val_loss
    # The clean metric on training digits is near validation; the running mean over the epoch's
    # randomly distorted batches (default augments), from the start of training, is well below.
    assert epochs[0].train_accuracy > 0.95
    assert 0.7 < epochs[0].running_accuracy < epochs[0].train_accuracy
