"""Accuracy benchmark: train a preset with the real engine on real MNIST and report what it reaches.

    python bench/accuracy.py --preset simard-800
    python bench/accuracy.py --preset best --save best.npz
    python bench/accuracy.py --preset default --set '{"epochs": 5}'   # any config override

Prints one JSON object: test accuracy, training time, augmentation cost per epoch (an Augmenter
alone over 60,000 digits), accuracy on the drawn-digit set through `to_mnist` (as /predict sees
drawings), and the paper's figure where there is one. Progress goes to stderr, one line per epoch.
Run long presets with `nice`: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from engine.augment import Augmenter
from engine.config import TrainConfig
from engine.data import load_mnist
from engine.drawn import evaluate_drawn
from engine.model import save_model
from engine.trainer import train

# Simard, Steinkraus & Platt (2003), Table 1: 2-layer MLP, 800 hidden units, cross-entropy.
PAPER_TEST_ERROR = {"simard-800": 1.6, "simard-800-affine": 1.1, "simard-800-elastic": 0.7}


def augmentation_seconds_per_epoch(config: TrainConfig, images: np.ndarray) -> float:
    """Wall time of distorting one epoch of training digits at the config's batch size, batch after
    batch as the trainer's pipeline does (in one thread, nothing else running)."""
    if not config.augmentation.enabled:
        return 0.0
    rng = np.random.default_rng(0)
    augmenter = Augmenter(config.augmentation)
    started = time.perf_counter()
    for start in range(0, len(images), config.batch_size):
        augmenter(images[start : start + config.batch_size], rng)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", default="{}", help="JSON object of config overrides")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None, help="write the trained model here")
    parser.add_argument("--no-drawn", action="store_true", help="skip the drawn-digit evaluation")
    args = parser.parse_args(argv)

    config = TrainConfig.from_dict({"preset": args.preset, **json.loads(args.set)})
    data = load_mnist(args.data_dir)
    augment_cost = augmentation_seconds_per_epoch(config, data.train_images)

    def progress(event) -> None:
        if event.event == "epoch":
            validation = ("no validation" if event.val_accuracy is None
                          else f"validation accuracy {event.val_accuracy:.4f}")
            print(f"epoch {event.epoch}/{config.epochs}: {validation}, "
                  f"{event.duration_s:.1f}s", file=sys.stderr, flush=True)

    started, cpu_started = time.perf_counter(), time.process_time()
    model, end = train(config, data, [progress])
    training_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    if end.status != "completed":
        print(json.dumps({"preset": args.preset, "status": end.status, "reason": end.reason}))
        return 1
    if args.save:
        save_model(model, args.save, {"test_accuracy": end.test_accuracy})

    result = {
        "preset": args.preset,
        "config": config.to_dict(),
        "test_accuracy": round(end.test_accuracy, 4),
        "test_error_percent": round(100 * (1 - end.test_accuracy), 2),
        "paper_test_error_percent": PAPER_TEST_ERROR.get(args.preset),
        "epochs": config.epochs,
        "training_seconds": round(training_seconds, 1),
        # CPU time of this process: on a shared machine, wall time includes waiting for a core
        "training_cpu_seconds": round(cpu_seconds, 1),
        "augmentation_seconds_per_epoch": round(augment_cost, 2),
    }
    if not args.no_drawn:
        drawn = evaluate_drawn(model.predict_proba, data)
        result["drawn"] = {key: round(value["accuracy"], 4) for key, value in drawn.items()}
        result["drawn_counts"] = {key: value["count"] for key, value in drawn.items()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
