"""engine.metrics.evaluate on several threads: the same evaluation, computed on both cores."""

from __future__ import annotations

import threading

import numpy as np

from engine.config import TrainConfig
from engine.metrics import evaluate
from engine.model import build_model
from tests.engine.synthetic import synthetic_digits


def test_evaluating_on_two_threads_gives_the_same_result_bit_for_bit():
    data = synthetic_digits(n_train=10, n_test=2345)
    model = build_model(TrainConfig.from_dict({"hidden_layers": [64, 32], "augmentation": {}}),
                        np.random.default_rng(0))
    threads_used = set()
    predict = model.predict_proba

    def recording(x, *args, **kwargs):
        threads_used.add(threading.get_ident())
        return predict(x, *args, **kwargs)

    model.predict_proba = recording
    one = evaluate(model, data.test_images, data.test_labels, batch_size=500)
    assert threads_used == {threading.get_ident()}
    threads_used.clear()
    two = evaluate(model, data.test_images, data.test_labels, batch_size=500, threads=2)
    assert len(threads_used) == 2 and threading.get_ident() not in threads_used
    assert (two.loss, two.accuracy) == (one.loss, one.accuracy)
    np.testing.assert_array_equal(two.predictions, one.predictions)
    np.testing.assert_array_equal(two.confidence, one.confidence)
    assert 0 < one.loss < 10 and 0 <= one.accuracy <= 1


def test_a_single_batch_needs_no_second_thread():
    data = synthetic_digits(n_train=10, n_test=300)
    model = build_model(TrainConfig.from_dict({"hidden_layers": [16], "augmentation": {}}),
                        np.random.default_rng(0))
    before = threading.active_count()
    result = evaluate(model, data.test_images, data.test_labels, threads=2)
    assert threading.active_count() == before and len(result.predictions) == 300
