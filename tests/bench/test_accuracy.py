"""bench/accuracy.py: it reports the epoch chosen on validation and that model's test accuracy,
per seed and as a spread, and its table says the same."""

from __future__ import annotations

import numpy as np
import pytest

from bench.accuracy import measure, table
from engine.config import TrainConfig
from engine.metrics import evaluate
from engine.model import load_model


@pytest.mark.mnist
def test_two_seeds_on_real_mnist_report_the_validated_epoch_and_its_test(mnist_dir, mnist_data, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist").symlink_to(mnist_dir.resolve(), target_is_directory=True)
    config = TrainConfig.from_dict({"preset": "default", "hidden_layers": [16], "epochs": 3,
                                    "augmentation": {}, "learning_rate": 0.3})
    saved = tmp_path / "last.npz"
    result = measure(config, [0, 1], home, drawn=False, save=saved)

    assert result["train_size"] == 55_000 and result["validation_size"] == 5_000
    runs = result["runs"]
    assert [run["seed"] for run in runs] == [0, 1]
    for run in runs:
        assert run["status"] == "completed"
        curve = run["validation_curve"]
        assert len(curve) == 3
        assert run["validation_accuracy"] == max(curve)
        assert curve[run["chosen_epoch"] - 1] == round(max(curve), 4)
        assert 0 < run["training_cpu_seconds"] and 0 < run["peak_memory_mb"]
    assert runs[0]["test_accuracy"] != runs[1]["test_accuracy"]  # two seeds, two networks

    # the saved model (the last seed's) is the chosen epoch's, and its test accuracy is reported
    model, meta = load_model(saved)
    tested = evaluate(model, mnist_data.test_images, mnist_data.test_labels).accuracy
    assert runs[1]["test_accuracy"] == round(tested, 4)
    assert meta["chosen_epoch"] == runs[1]["chosen_epoch"]

    tests = sorted(run["test_accuracy"] for run in runs)
    assert result["summary"]["test_accuracy"] == {
        "median": round(float(np.median(tests)), 4), "min": tests[0], "max": tests[-1]}
    row = table([result]).splitlines()[2]
    assert row.startswith("| default | 784-16-10 | 2 |")
    assert f"({100 * tests[0]:.2f}-{100 * tests[-1]:.2f})" in row
    assert "| - | - |" in row  # no drawn-digit figures were measured


def test_a_failed_preset_gets_a_row_that_says_why():
    result = {"preset": "best", "runs": [{"seed": 0, "status": "failed", "reason": "diverged"}]}
    assert "failed: diverged" in table([result]).splitlines()[2]
