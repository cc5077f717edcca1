"""What watching the inside of the network costs: training time with layer statistics at the
default cadence against the same training with them off, interleaved in one process so that both
see the same machine.

    python bench/inside_overhead.py                          # default preset, 1 epoch, 5 pairs
    python bench/inside_overhead.py --preset best --pairs 3
    python bench/inside_overhead.py --train 20000 --pairs 9  # a slice: quicker, noisier

Each pair trains the same config from the same seed twice, once with `engine.inside.LayerWatch`
at the config's `stats_every` (whose default this measures) and once without it, in alternating
order (on, off, off, on, ...). One BLAS thread, as the server's workers use. Two clocks: the
trainer's own (EndEvent.duration_s: training, validation, the test pass; wall time) and the CPU
time of this process over the run (one thread does all of it), which a busy machine disturbs
much less; and, timed inside each watched run, the share of its CPU time spent measuring (the
cost itself, free of the run-to-run noise). Prints one JSON object: per clock the medians, their
ratio and the median of the per-pair ratios, and that share; the target is at most 3% slower.
Both runs end with bit-identical weights (checked): the statistics never change the training.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # before NumPy loads: as the server's workers

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.config import TrainConfig  # noqa: E402
from engine.data import load_mnist  # noqa: E402
from engine.events import LayersEvent  # noqa: E402
from engine.inside import LayerWatch  # noqa: E402
from engine.trainer import Trainer  # noqa: E402


class TimedWatch(LayerWatch):
    """LayerWatch that adds up the CPU time of its measurements."""

    cpu_s = 0.0

    def measure(self, *args, **kwargs):
        started = time.process_time()
        try:
            return super().measure(*args, **kwargs)
        finally:
            self.cpu_s += time.process_time() - started


SHARES: list[float] = []  # per watched run: the measurements' CPU time / the run's CPU time


def train_once(config: TrainConfig, data, watch: bool) -> tuple[float, float, int, dict]:
    """(training seconds, CPU seconds, layers events, final weights) of one run."""
    snapshots = []
    timed = TimedWatch(config.stats_every)
    listeners = [timed, snapshots.append] if watch else []
    trainer = Trainer(config, data, listeners)
    cpu = time.process_time()
    end = trainer.run()
    cpu = time.process_time() - cpu
    if end.status != "completed":
        raise SystemExit(f"the run did not complete: {end}")
    count = sum(isinstance(event, LayersEvent) for event in snapshots)
    if watch:
        SHARES.append(timed.cpu_s / cpu)
    return end.duration_s, cpu, count, trainer.model.state()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--train", type=int, default=None, metavar="N",
                        help="train on the first N digits (default: all 55,000 not held out)")
    parser.add_argument("--stats-every", type=int, default=None,
                        help="the cadence measured (default: the config's default)")
    args = parser.parse_args(argv)

    fields = {"preset": args.preset, "epochs": args.epochs}
    if args.stats_every is not None:
        fields["stats_every"] = args.stats_every
    config = TrainConfig.from_dict(fields)
    data = load_mnist(None, fetch=False)
    if args.train is not None:
        from engine.data import hold_out

        data = hold_out(data, config.validation_size, train=args.train)

    train_once(config, data, True)  # warm-up, not counted: first-touch page faults, caches
    clocks = {"wall": ([], []), "cpu": ([], [])}  # (on, off) per clock
    snapshots = 0
    for pair in range(args.pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        times, weights = {}, {}
        for watch in order:
            seconds, cpu, count, state = train_once(config, data, watch)
            times[watch], weights[watch] = (seconds, cpu), state
            snapshots = max(snapshots, count)
        if any(not np.array_equal(weights[True][name], weights[False][name])
               for name in weights[True]):
            raise SystemExit("the statistics changed the training: weights differ")
        for index, (on, off) in enumerate(clocks.values()):
            on.append(times[True][index])
            off.append(times[False][index])
        print(f"pair {pair + 1}: wall on {times[True][0]:.2f}s off {times[False][0]:.2f}s, "
              f"cpu on {times[True][1]:.2f}s off {times[False][1]:.2f}s",
              file=sys.stderr, flush=True)

    def summary(on: list[float], off: list[float]) -> dict:
        return {"median_on_s": round(statistics.median(on), 3),
                "median_off_s": round(statistics.median(off), 3),
                "ratio_of_medians": round(statistics.median(on) / statistics.median(off), 4),
                "median_pair_ratio": round(statistics.median(
                    a / b for a, b in zip(on, off, strict=True)), 4)}

    print(json.dumps({
        "preset": args.preset, "epochs": args.epochs, "stats_every": config.stats_every,
        "train_digits": len(data.train_labels) if hasattr(data, "validation_labels")
        else len(data.train_labels) - config.validation_size,
        "pairs": args.pairs, "layers_events_per_run": snapshots,
        **{clock: summary(on, off) for clock, (on, off) in clocks.items()},
        # Timed inside the run: what the statistics cost, free of the noise between two runs.
        "measurement_cpu_share": round(statistics.median(SHARES), 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
