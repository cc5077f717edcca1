"""Does preparing batches ahead bring a run down to its pure training compute?

    python bench/pipeline.py                          # default and best, 5 epochs, 3 rounds
    python bench/pipeline.py --preset default --epochs 10 --rounds 5 --thread
    python bench/pipeline.py --priority 19            # on a shared machine (root)

Each measurement is a fresh process with the BLAS threads of the server's training workers
(`worker_threads` in app/settings.py, 1), and the measurements take turns, round after round, so
that a busy machine slows them alike. Per preset:

- compute: the preset without augmentation, and only its training steps timed (each epoch from
  its start to its last step: validation and the final evaluation excluded). The pure training
  compute the target compares with.
- inline: the preset as it is, every batch prepared in the trainer's thread when it is needed
  (no prefetching): what the augmentation costs when nothing overlaps it.
- process: the preset as a run trains it, batches prepared ahead in a forked process with shared
  memory (engine/pipeline.py).
- thread (with --thread): batches prepared ahead on a thread instead (bench/thread_pipeline.py),
  the alternative the process was measured against.

inline, process and thread are timed as a user waits for them: the whole run, from the trainer's
start to its end event, validation every epoch and the final evaluation included. `ratio` is that
time over compute's (target <= 1.3); `prepare_s` is the time spent preparing batches in the
trainer's process (the forked child's is not reported back); `cpu_s` is the CPU time of the run,
children included. Prints a table and, with --json, one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.settings import Settings  # noqa: E402
from bench.machine import raised_priority  # noqa: E402
from engine.blas import THREAD_VARIABLES  # noqa: E402

TARGET_RATIO = 1.3
VARIANTS = ("compute", "inline", "process", "thread")


def server_worker_threads() -> int:
    """The BLAS threads of a server's training process, as app/settings.py sets them by default."""
    return next(f.default for f in dataclasses.fields(Settings) if f.name == "worker_threads")


# --- one measurement, in a process of its own -----------------------------------------------------
def measure(variant: str, preset: str, epochs: int, data_dir: str | None,
            subset: tuple[int | None, int | None] = (None, None)) -> dict:
    """Train `preset` for `epochs` epochs the `variant` way (on the first `subset` training and
    test digits, None: all); times in seconds."""
    from engine.config import preset_config
    from engine.data import hold_out, load_mnist
    from engine.pipeline import BatchPipeline
    from engine.trainer import Trainer

    config = preset_config(preset).replace(epochs=epochs)
    if variant == "compute":
        config = config.replace(augmentation={})
    # As the server's workers: the validation digits held out, a slice of the others trained on.
    data = hold_out(load_mnist(Path(data_dir) if data_dir else None, test=subset[1]),
                    config.validation_size, train=subset[0])
    preparing = [0.0]

    class TimedPipeline(BatchPipeline):
        def prepare(self, batch, out=None):
            started = time.perf_counter()
            x = super().prepare(batch, out)
            preparing[0] += time.perf_counter() - started
            return x

    class BenchTrainer(Trainer):
        def _prepare_batches(self):
            pipeline = super()._prepare_batches()
            timed = TimedPipeline(pipeline.images, pipeline.labels, pipeline.batch_size,
                                  pipeline.epochs, config.augmentation, pipeline.shuffle_rng,
                                  pipeline.augment_rng, pipeline.dtype,
                                  ahead=variant == "process")
            if variant == "thread":
                from bench.thread_pipeline import ThreadPipeline

                return ThreadPipeline(timed)
            return timed

    clock = StepClock()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    end = BenchTrainer(config, data, [clock]).run()
    run_seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_before
    if end.status != "completed":
        raise RuntimeError(f"the {variant} run of {preset} did not complete: {end.reason}")
    return {"run_s": run_seconds, "train_s": clock.train_seconds, "prepare_s": preparing[0],
            "cpu_s": cpu_seconds, "test_accuracy": end.test_accuracy}


def _cpu_seconds() -> float:
    """CPU time of this process's threads and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class StepClock:
    """Trainer listener: the time of the training steps alone, each epoch from its start (the run's
    start, then the end of the previous epoch's validation) to its last step."""

    def __init__(self):
        self.train_seconds = 0.0
        self._epoch_started = self._last_step = time.perf_counter()

    def __call__(self, event) -> None:
        if event.event == "iteration":
            self._last_step = time.perf_counter()
        elif event.event == "epoch":
            self.train_seconds += self._last_step - self._epoch_started
            self._epoch_started = time.perf_counter()


def _child(pipe, *args) -> None:
    try:
        pipe.send(measure(*args))
    except Exception as error:  # reported by the parent
        pipe.send(f"{type(error).__name__}: {error}")


def measure_in_process(variant: str, preset: str, epochs: int, data_dir: Path | None,
                       subset: tuple[int | None, int | None] = (None, None)) -> dict:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    # Daemonic, as the server's training processes are: the pipeline must work inside one.
    process = context.Process(target=_child, args=(send, variant, preset, epochs,
                                                   str(data_dir) if data_dir else None, subset),
                              daemon=True)
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = f"the measuring process died (exit code {process.join() or process.exitcode})"
    process.join()
    if isinstance(result, str):
        raise RuntimeError(f"{variant} {preset}: {result}")
    return result


# --- the benchmark --------------------------------------------------------------------------------
def run_bench(presets: list[str], epochs: int, rounds: int, variants: list[str],
              data_dir: Path | None, subset: tuple[int | None, int | None] = (None, None),
              progress=lambda line: None) -> dict:
    """Every variant of every preset once per round, in turns; medians and ratios."""
    samples = {preset: {variant: [] for variant in variants} for preset in presets}
    for round_number in range(rounds):
        for preset in presets:
            turn = variants[round_number % len(variants):] + variants[: round_number % len(variants)]
            for variant in turn:
                result = measure_in_process(variant, preset, epochs, data_dir, subset)
                samples[preset][variant].append(result)
                progress(f"round {round_number + 1}/{rounds} {preset:8s} {variant:8s} "
                         f"run {result['run_s']:6.2f}s  steps {result['train_s']:6.2f}s  "
                         f"cpu {result['cpu_s']:6.2f}s")
    report = {}
    for preset, by_variant in samples.items():
        compute = statistics.median(r["train_s"] for r in by_variant["compute"])
        rows = {}
        for variant, results in by_variant.items():
            key = "train_s" if variant == "compute" else "run_s"
            seconds = statistics.median(r[key] for r in results)
            rows[variant] = {
                "seconds": round(seconds, 3),
                "each": [round(r[key], 3) for r in results],
                "ratio": round(seconds / compute, 3),
                # the process variant prepares in its child, whose clock is not reported back
                "prepare_s": (None if variant == "process" else
                              round(statistics.median(r["prepare_s"] for r in results), 3)),
                "steps_s": round(statistics.median(r["train_s"] for r in results), 3),
                "cpu_s": round(statistics.median(r["cpu_s"] for r in results), 3),
            }
        report[preset] = rows
    return report


def format_report(report: dict, epochs: int, threads: int) -> list[str]:
    lines = [f"{epochs} epochs per run, {threads} BLAS thread(s) per run (as the server's workers), "
             f"medians; ratio = seconds / compute (target <= {TARGET_RATIO})",
             f"{'preset':8s} {'variant':8s} {'seconds':>8s} {'ratio':>6s} {'prepare_s':>9s} "
             f"{'cpu_s':>6s}  each"]
    for preset, rows in report.items():
        for variant, row in rows.items():
            each = " ".join(f"{s:.2f}" for s in row["each"])
            prepare = "-" if row["prepare_s"] is None else f"{row['prepare_s']:.2f}"
            lines.append(f"{preset:8s} {variant:8s} {row['seconds']:8.2f} {row['ratio']:6.2f} "
                         f"{prepare:>9s} {row['cpu_s']:6.2f}  {each}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", dest="presets", metavar="NAME",
                        help="a preset to measure (repeatable; default: default and best)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every measurement (default 3)")
    parser.add_argument("--thread", action="store_true",
                        help="also measure batches prepared on a thread instead of a process")
    parser.add_argument("--threads", type=int, default=server_worker_threads(),
                        help="BLAS threads per run (default: the server's worker_threads)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--train-subset", type=int, default=None, metavar="N",
                        help="train on the first N digits (quick checks; default: all 60,000)")
    parser.add_argument("--test-subset", type=int, default=None, metavar="N",
                        help="validate on the first N test digits (default: all 10,000)")
    parser.add_argument("--priority", type=int, default=0, metavar="STEPS",
                        help="lower the niceness by this much while measuring (root)")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    from engine.presets import PRESETS

    presets = args.presets or ["default", "best"]
    unknown = [name for name in presets if name not in PRESETS]
    if unknown or not 1 <= args.epochs <= 100 or not 1 <= args.rounds <= 50 or args.threads < 1:
        parser.error(f"presets from {', '.join(PRESETS)} (got {', '.join(unknown)}); --epochs "
                     "1-100, --rounds 1-50, --threads >= 1" if unknown else
                     "--epochs 1-100, --rounds 1-50, --threads >= 1")
    for name in THREAD_VARIABLES:  # inherited by every measuring process, before NumPy loads
        os.environ[name] = str(args.threads)
    variants = [v for v in VARIANTS if v != "thread" or args.thread]
    with raised_priority(args.priority):
        report = run_bench(presets, args.epochs, args.rounds, variants, args.data_dir,
                           (args.train_subset, args.test_subset),
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    for line in format_report(report, args.epochs, args.threads):
        print(line)
    if args.json:
        print(json.dumps({"epochs": args.epochs, "rounds": args.rounds, "threads": args.threads,
                          "load_average": os.getloadavg()[0], "presets": report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
