"""Accuracy benchmark: train a preset with the real engine on real MNIST and report what it reaches.

    python bench/accuracy.py --preset best --seeds 0 1 2
    python bench/accuracy.py --preset default --save default.npz
    python bench/accuracy.py --preset default --set '{"epochs": 5}'   # any config override
    python bench/accuracy.py --table default best                     # the docs' table, Markdown

The protocol of issue 12, the trainer's own: the network trains on the first 55,000 training
digits and is validated after every epoch on the last 5,000 (`validation_size`), never distorted
and never trained on; the epoch with the best validation accuracy gives the model, and that model
alone is evaluated once on the 10,000 test digits.

Prints one JSON object: per seed, the chosen epoch, its validation accuracy, the test accuracy,
training time (wall and CPU, the batch-preparing process's CPU included), the fastest and median
epoch, peak memory, accuracy on the drawn-digit set through `to_mnist` (as /predict sees
drawings: engine/drawn.py); then the median, minimum and maximum over the seeds. Each seed trains
in a fresh process, so its peak memory is its own. Progress goes to stderr, one line per epoch.
`--table` trains each named preset in turn and prints the Markdown table of docs/accuracy.md
instead. Run long presets with `nice`: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from engine.augment import Augmenter
from engine.config import TrainConfig
from engine.data import load_mnist
from engine.drawn import evaluate_drawn
from engine.events import EpochEvent
from engine.model import save_model
from engine.trainer import Trainer

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


def peak_memory_mb() -> float:
    """The peak resident memory of this process (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the trainer's batch pipeline)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_in_child(config: TrainConfig, data_dir: Path | None, drawn: bool,
                 save: Path | None) -> dict:
    """`run_once` in a fresh process, so that its peak memory is this run's alone."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run_once, config, data_dir, drawn, save).result()


def run_once(config: TrainConfig, data_dir: Path | None, drawn: bool, save: Path | None) -> dict:
    """Train one seed under the validation protocol and measure it."""
    data = load_mnist(data_dir)
    curve: list[EpochEvent] = []

    def progress(event) -> None:
        if isinstance(event, EpochEvent):
            curve.append(event)
            validation = ("no validation" if event.val_accuracy is None
                          else f"validation accuracy {event.val_accuracy:.4f}")
            print(f"seed {config.seed} epoch {event.epoch}/{config.epochs}: {validation}, "
                  f"{event.duration_s:.1f}s", file=sys.stderr, flush=True)

    trainer = Trainer(config, data, [progress])
    started, cpu_started = time.perf_counter(), cpu_seconds()
    end = trainer.run()
    training_seconds = time.perf_counter() - started
    training_cpu = cpu_seconds() - cpu_started
    if end.status != "completed":
        return {"seed": config.seed, "status": end.status, "reason": end.reason}

    model = trainer.model  # the weights of the epoch chosen on validation, tested once
    chosen = curve[end.model_epoch - 1]
    durations = [event.duration_s for event in curve]
    result = {
        "seed": config.seed,
        "status": end.status,
        "epochs": config.epochs,
        "chosen_epoch": end.model_epoch,
        "validation_accuracy": chosen.val_accuracy,
        "test_accuracy": round(end.test_accuracy, 4),
        "test_error_percent": round(100 * (1 - end.test_accuracy), 2),
        "training_seconds": round(training_seconds, 1),
        # on a shared machine wall time includes waiting for a core; CPU time does not
        "training_cpu_seconds": round(training_cpu, 1),
        "median_epoch_seconds": round(statistics.median(durations), 2),
        "fastest_epoch_seconds": round(min(durations), 2),
        "peak_memory_mb": round(peak_memory_mb()),
        "pipeline_peak_memory_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "validation_curve": [None if e.val_accuracy is None else round(e.val_accuracy, 4)
                             for e in curve],
    }
    if save:
        save_model(model, save, {"test_accuracy": end.test_accuracy,
                                 "validation_accuracy": chosen.val_accuracy,
                                 "chosen_epoch": end.model_epoch})
    if drawn:
        report = evaluate_drawn(model.predict_proba, data)
        result["drawn"] = {key: round(value["accuracy"], 4) for key, value in report.items()}
        result["drawn_counts"] = {key: value["count"] for key, value in report.items()}
    return result


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


def measure(config: TrainConfig, seeds: list[int], data_dir: Path | None, drawn: bool,
            save: Path | None) -> dict:
    """Train `config` once per seed and summarise the runs."""
    data = load_mnist(data_dir)
    train_size = len(data.train_labels) - config.validation_size
    runs = [run_in_child(config.replace(seed=seed), data_dir, drawn, save) for seed in seeds]
    result = {
        "preset": config.preset,
        "config": {k: v for k, v in config.to_dict().items() if k != "seed"},
        "validation_size": config.validation_size,
        "train_size": train_size,
        "paper_test_error_percent": PAPER_TEST_ERROR.get(config.preset),
        "augmentation_seconds_per_epoch": round(
            augmentation_seconds_per_epoch(config, data.train_images[:train_size]), 2),
        "runs": runs,
    }
    return summarise(result)


def summarise(result: dict) -> dict:
    """Add the spread over `result["runs"]` (the completed ones): "summary", "summary_drawn".
    Also for runs of one config measured by separate invocations, their "runs" put together."""
    completed = [run for run in result["runs"] if run["status"] == "completed"]
    if completed:
        keys = ["test_accuracy", "chosen_epoch", "training_seconds", "training_cpu_seconds",
                "median_epoch_seconds", "fastest_epoch_seconds", "peak_memory_mb"]
        if result["validation_size"]:
            keys.insert(0, "validation_accuracy")
        result["summary"] = {key: spread([run[key] for run in completed]) for key in keys}
        if "drawn" in completed[0]:
            result["summary_drawn"] = {
                group: spread([run["drawn"][group] for run in completed if group in run["drawn"]])
                for group in ("mnist", "fonts", "all") if group in completed[0]["drawn"]
            }
    return result


def table(results: list[dict]) -> str:
    """The Markdown table of docs/accuracy.md: one row per preset, medians over its seeds
    (min-max beside the accuracies when there are several)."""

    def percent(summary: dict, key: str) -> str:
        if key not in summary:
            return "-"
        entry = summary[key]
        text = f"{100 * entry['median']:.2f}"
        if entry["min"] != entry["max"]:
            text += f" ({100 * entry['min']:.2f}-{100 * entry['max']:.2f})"
        return text

    rows = ["| preset | network | seeds | validation % | test % | fonts % | MNIST drawn % "
            "| epoch chosen | training time | CPU time | fastest epoch | peak memory |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        summary = result.get("summary")
        if summary is None:
            rows.append(f"| {result['preset']} | failed: "
                        f"{'; '.join(str(r.get('reason')) for r in result['runs'])} |")
            continue
        drawn = result.get("summary_drawn", {})
        hidden = "-".join(str(n) for n in result["config"]["hidden_layers"])
        epoch = summary["chosen_epoch"]
        rows.append(
            f"| {result['preset']} | 784-{hidden}-10 | {len(result['runs'])} "
            f"| {percent(summary, 'validation_accuracy')} | {percent(summary, 'test_accuracy')} "
            f"| {percent(drawn, 'fonts')} | {percent(drawn, 'mnist')} "
            f"| {epoch['median']:g} of {result['config']['epochs']} "
            f"| {summary['training_seconds']['median'] / 60:.1f} min "
            f"| {summary['training_cpu_seconds']['median'] / 60:.1f} min "
            f"| {summary['fastest_epoch_seconds']['median']:.1f} s "
            f"| {summary['peak_memory_mb']['median']:.0f} MB |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--table", nargs="+", metavar="PRESET", default=None,
                        help="train each preset and print the Markdown table instead of JSON")
    parser.add_argument("--set", default="{}", help="JSON object of config overrides")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="train once per seed (default: the config's seed)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None,
                        help="write the chosen model here (the last seed's, with several)")
    parser.add_argument("--no-drawn", action="store_true", help="skip the drawn-digit evaluation")
    args = parser.parse_args(argv)

    overrides = json.loads(args.set)
    presets = args.table or [args.preset]
    results = []
    for preset in presets:
        config = TrainConfig.from_dict({"preset": preset, **overrides})
        seeds = args.seeds if args.seeds is not None else [config.seed]
        results.append(measure(config, seeds, args.data_dir, not args.no_drawn, args.save))
    print(table(results) if args.table else json.dumps(results[0]))
    return 0 if all("summary" in r and len(r["summary"]) for r in results) and all(
        run["status"] == "completed" for r in results for run in r["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
