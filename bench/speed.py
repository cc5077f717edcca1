"""`mnist-lab bench`: how fast is one training epoch, against the hardware and against PyTorch?

Three measurements, taken in turns (an engine epoch, then the same epoch's matmuls alone, then a
PyTorch epoch, round after round) so that they share the same (possibly noisy) machine:

- epoch_seconds: the engine's Trainer on the `default` architecture, batch 128, real MNIST, timed
  from the start of an epoch to its last optimisation step (shuffling, batching, forward, backward,
  update and the per-iteration events included; the validation pass excluded).
- blas_limit_seconds: the matrix multiplications a correct backprop needs in one epoch (per Dense
  layer: the forward product, the weight gradient, and the input gradient except for the first
  layer), run alone with NumPy's sgemm at the engine's exact shapes and memory layouts, in the same
  process and so with the same BLAS thread count: the epoch's FLOPs / the sgemm throughput measured.
- numpy_floor_seconds: the same steps written as one flat NumPy loop with the fewest calls and
  every buffer preallocated (bench/numpy_floor.py): what any NumPy engine needs beyond the matmuls.
  ReLU networks trained by SGD or momentum only; other presets skip it.
- torch_epoch_seconds (when PyTorch is installed): the same model, batch, optimiser and loop in
  PyTorch, with torch.set_num_threads set to the same thread count.

After each engine epoch, a listener runs one epoch's worth of those sgemm calls, one floor epoch and
one PyTorch epoch
(outside the engine's timed span). Whole epochs, not slices of a few steps: PyTorch's OpenMP threads
keep spinning for a while after each call, and slices that short made each side slow the other down.
A warm-up epoch of each is run first and discarded; medians of the timed epochs are reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.numpy_floor import NumpyFloor, supports
from engine.cli import UsageError, load_data
from engine.config import TrainConfig, preset_config
from engine.control import TrainingControl
from engine.schedules import learning_rate

BATCH_SIZE = 128
TARGET_RATIO_TO_LIMIT = 1.5
TARGET_SPEEDUP_VS_TORCH = 2.0


def bench_config(preset: str = "default") -> TrainConfig:
    """The preset's architecture and optimiser at batch 128, without augmentation (not BLAS work),
    on every training digit (nothing held out: the other loops train on all of them too) and
    without layer statistics."""
    return preset_config(preset).replace(batch_size=BATCH_SIZE, augmentation={}, validation_size=0,
                                         stats_every=0)


def blas_threads() -> int:
    """OpenBLAS uses OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, else every CPU it may run on."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- the BLAS limit -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Matmul:
    """One matrix product of backprop: (m x k) @ (k x n), with operands laid out as the engine has them."""

    name: str
    m: int
    k: int
    n: int
    transpose_a: bool = False
    transpose_b: bool = False

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


def backprop_matmuls(layer_sizes: tuple[int, ...], batch: int = BATCH_SIZE) -> list[Matmul]:
    """Per Dense layer n_in -> n_out: y = x W, dW = xᵀ dy, and dx = dy Wᵀ except for the first layer."""
    products = []
    for index, (n_in, n_out) in enumerate(zip(layer_sizes, layer_sizes[1:], strict=False)):
        products.append(Matmul(f"forward {n_in}x{n_out}", batch, n_in, n_out))
        products.append(Matmul(f"dW {n_in}x{n_out}", n_in, batch, n_out, transpose_a=True))
        if index > 0:
            products.append(Matmul(f"dx {n_in}x{n_out}", batch, n_out, n_in, transpose_b=True))
    return products


class SgemmProbe:
    """Times each product with preallocated float32 operands and np.matmul(..., out=...)."""

    def __init__(self, products: list[Matmul]):
        rng = np.random.default_rng(0)
        self.operands = []
        for p in products:
            a = rng.standard_normal((p.k, p.m) if p.transpose_a else (p.m, p.k), dtype=np.float32)
            b = rng.standard_normal((p.n, p.k) if p.transpose_b else (p.k, p.n), dtype=np.float32)
            self.operands.append((p, a.T if p.transpose_a else a, b.T if p.transpose_b else b,
                                  np.empty((p.m, p.n), dtype=np.float32)))

    def run_steps(self, count: int) -> float:
        """Run every product `count` times, as `count` training steps would; return the time taken."""
        started = time.perf_counter()
        for _ in range(count):
            for _, a, b, out in self.operands:
                np.matmul(a, b, out=out)
        return time.perf_counter() - started


# --- PyTorch --------------------------------------------------------------------------------------
class TorchLoop:
    """The same model, optimiser, schedule and loop as the engine's Trainer, written in PyTorch,
    run a few steps at a time so that it can be interleaved with the engine's epochs."""

    def __init__(self, torch, config: TrainConfig, data, threads: int):
        self.torch, self.config, self.data = torch, config, data
        torch.set_num_threads(threads)
        torch.manual_seed(config.seed)
        nn = torch.nn
        activations = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01),
                       "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
        layers, fan_in = [], 784
        for units in config.hidden_layers:
            layers.append(nn.Linear(fan_in, units))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(units, momentum=0.1))
            layers.append(activations[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            fan_in = units
        layers.append(nn.Linear(fan_in, 10))
        self.model = nn.Sequential(*layers)
        self.model.train()
        weights = [p for p in self.model.parameters() if p.ndim == 2]
        others = [p for p in self.model.parameters() if p.ndim != 2]
        groups = [{"params": weights, "weight_decay": config.weight_decay},
                  {"params": others, "weight_decay": 0.0}]
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=config.learning_rate)
        else:
            momentum = 0.0 if config.optimizer == "sgd" else config.momentum
            self.optimizer = torch.optim.SGD(groups, lr=config.learning_rate, momentum=momentum,
                                             nesterov=config.optimizer == "nesterov")
        self.rng = np.random.default_rng(config.seed)
        self.steps_per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
        self.epoch_seconds: list[float] = []  # one entry per finished epoch
        self._running_epoch = 0.0
        self._batches = self._all_batches()

    def _all_batches(self):
        """(epoch index, step index, batch indices), epoch after epoch, reshuffled each time."""
        n, size = len(self.data.train_labels), self.config.batch_size
        epoch = 0
        while True:
            order = self.rng.permutation(n)
            for index, start in enumerate(range(0, n, size)):
                yield epoch, index, order[start : start + size]
            epoch += 1

    def run_steps(self, count: int) -> None:
        """Train `count` more steps, adding their time to the epoch they belong to."""
        torch, config = self.torch, self.config
        images, labels = self.data.train_images, self.data.train_labels
        cross_entropy = torch.nn.functional.cross_entropy
        started = time.perf_counter()
        for _ in range(count):
            epoch, index, batch = next(self._batches)
            x = torch.from_numpy(np.take(images, batch, axis=0)).float().mul_(1.0 / 255.0)
            y = torch.from_numpy(labels[batch].astype(np.int64))
            lr = learning_rate(config, epoch + index / self.steps_per_epoch, 1 / self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            logits = self.model(x)
            loss = cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            # The engine reports the loss and counts correct answers every step: so does this loop.
            loss.item()
            int((logits.argmax(dim=1) == y).sum().item())
            if index == self.steps_per_epoch - 1:
                now = time.perf_counter()
                self.epoch_seconds.append(self._running_epoch + now - started)
                self._running_epoch, started = 0.0, now
        self._running_epoch += time.perf_counter() - started


def _load_average() -> float | None:
    """The 1-minute load average (other work on the machine), where the OS reports one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class TorchProcess:
    """A TorchLoop in a process of its own, driven step by step through a pipe.

    Importing PyTorch changes the process it is imported into (its OpenMP runtime and allocator
    made NumPy's training loop about 20% slower here), so the engine is timed in a process that
    never imports it. The child waits on the pipe, using no CPU, while the engine runs.
    """

    def __init__(self, config: TrainConfig, data, threads: int):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(target=_torch_child, args=(child_end, config, data, threads),
                                        daemon=True, name="mnist-lab-bench-torch")
        self._process.start()
        child_end.close()
        self.version = self._receive()
        self.epoch_seconds: list[float] = []

    def _receive(self):
        kind, value = self._pipe.recv()
        if kind == "error":
            self.close()
            raise RuntimeError(f"the PyTorch side of the benchmark failed: {value}")
        return value

    def run_steps(self, count: int) -> None:
        self._pipe.send(count)
        self.epoch_seconds = self._receive()

    def close(self) -> None:
        if self._process.is_alive():
            self._pipe.send(None)
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()


def _torch_child(pipe, config: TrainConfig, data, threads: int) -> None:
    try:
        import torch

        loop = TorchLoop(torch, config, data, threads)
        pipe.send(("ready", torch.__version__))
        while (count := pipe.recv()) is not None:
            loop.run_steps(count)
            pipe.send(("done", loop.epoch_seconds))
    except Exception as error:  # reported to the parent, which raises it
        pipe.send(("error", f"{type(error).__name__}: {error}"))


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# --- the engine, with the other measurements slipped in between its steps -------------------------
class InterleavedClock:
    """Trainer listener. After every engine epoch it runs one epoch's worth of sgemm calls and one
    PyTorch epoch (or, with `every`, that many steps of each every `every` engine steps, their time
    subtracted from the engine's epoch): all three take turns through the same stretch of time, so a
    busy machine slows them alike. The validation pass is excluded from the epoch too."""

    def __init__(self, probe: SgemmProbe, torch_loop: TorchProcess | None, every: int | None = None,
                 settle_seconds: float = 0.2, floor: NumpyFloor | None = None):
        self.settle_seconds = settle_seconds  # lets PyTorch's spinning threads go idle first
        self.probe, self.torch_loop, self.every, self.floor = probe, torch_loop, every, floor
        self.epoch_seconds: list[float] = []
        self.limit_seconds: list[float] = []  # the matmuls of each epoch's steps, alone
        self.floor_seconds: list[float] = []  # the same steps in the flat NumPy loop
        self._limit = self._floor = 0.0
        self._steps_in_epoch = 0
        self._excluded = 0.0
        self._epoch_started = self._last_step = time.perf_counter()

    def __call__(self, event) -> None:
        if event.event == "iteration":
            self._last_step = time.perf_counter()
            self._steps_in_epoch += 1
            if self.every and self._steps_in_epoch % self.every == 0:
                self._measure_others(self.every)
                self._excluded += time.perf_counter() - self._last_step
        elif event.event == "epoch":
            self.epoch_seconds.append(self._last_step - self._epoch_started - self._excluded)
            self._measure_others(self._steps_in_epoch % self.every if self.every
                                 else self._steps_in_epoch)
            self.limit_seconds.append(self._limit)
            self.floor_seconds.append(self._floor)
            self._limit = self._floor = self._excluded = 0.0
            self._steps_in_epoch = 0
            self._epoch_started = time.perf_counter()

    def _measure_others(self, steps: int) -> None:
        self._limit += self.probe.run_steps(steps)
        if self.floor is not None:
            self._floor += self.floor.run_steps(steps)
        if self.torch_loop is not None:
            self.torch_loop.run_steps(steps)
            time.sleep(self.settle_seconds)


# --- the benchmark --------------------------------------------------------------------------------
def run_bench(data, epochs: int = 3, with_torch: bool = True, preset: str = "default",
              progress: Callable[[str], None] = lambda line: None) -> dict:
    """Train epochs + 1 (the first is a warm-up) with PyTorch steps and sgemm calls interleaved;
    return medians and ratios."""
    from engine.trainer import Trainer

    config = bench_config(preset).replace(epochs=epochs + 1)
    threads = blas_threads()
    load_before = _load_average()
    if load_before is not None and load_before > (os.cpu_count() or 1):
        progress(f"warning: the machine is busy (load average {load_before:.1f} on {os.cpu_count()} "
                 "CPUs): timings will be noisy, and multi-threaded BLAS degrades badly when cores "
                 "are oversubscribed; compare with OPENBLAS_NUM_THREADS=1")
    layer_sizes = (784, *config.hidden_layers, 10)
    products = backprop_matmuls(layer_sizes)
    probe = SgemmProbe(products)
    torch_loop = TorchProcess(config, data, threads) if with_torch and _torch_installed() else None
    floor = NumpyFloor(config, data, BATCH_SIZE) if supports(config) else None
    clock = InterleavedClock(probe, torch_loop, floor=floor)

    def report(event) -> None:
        if event.event != "epoch":
            return
        label = "warm-up" if event.epoch == 1 else f"{event.epoch - 1}/{epochs}"
        torch_text = ""
        if torch_loop is not None and len(torch_loop.epoch_seconds) >= event.epoch:
            torch_text = f"  torch {torch_loop.epoch_seconds[event.epoch - 1]:.3f}s"
        floor_text = f"  numpy floor {clock.floor_seconds[-1]:.3f}s" if floor is not None else ""
        progress(f"epoch {label}: engine {clock.epoch_seconds[-1]:.3f}s{torch_text}{floor_text}  "
                 f"blas limit {clock.limit_seconds[-1]:.3f}s")

    try:
        end = Trainer(config, data, [clock, report], TrainingControl()).run()
    finally:
        if torch_loop is not None:
            torch_loop.close()
    if end.status != "completed":
        raise RuntimeError(f"the benchmark run did not complete: {end.status} ({end.reason})")

    # Every step is counted at batch 128, the last partial one too: a limit that is, if anything, low.
    flops = sum(p.flops for p in products) * math.ceil(len(data.train_labels) / BATCH_SIZE)
    epoch_seconds = statistics.median(clock.epoch_seconds[1:])
    limit = statistics.median(clock.limit_seconds[1:])
    result = {
        "model": "-".join(str(n) for n in layer_sizes) + f" {config.activation}",
        "optimizer": config.optimizer,
        "batch_size": BATCH_SIZE,
        "train_samples": len(data.train_labels),
        "epochs_timed": epochs,
        "threads": threads,
        "epoch_seconds": round(epoch_seconds, 4),
        "blas_limit_seconds": round(limit, 4),
        "ratio_to_limit": round(epoch_seconds / limit, 3),
        "matmul_gflop_per_epoch": round(flops / 1e9, 2),
        "sgemm_gflops": round(flops / limit / 1e9, 1),
        "epoch_seconds_each": [round(s, 4) for s in clock.epoch_seconds[1:]],
        "blas_limit_seconds_each": [round(s, 4) for s in clock.limit_seconds[1:]],
        "test_accuracy": end.test_accuracy,
        "load_average_before_after": [load_before, _load_average()],
        "numpy": np.__version__,
        "python": platform.python_version(),
        "target_ratio_to_limit": TARGET_RATIO_TO_LIMIT,
        "torch_status": ("measured" if torch_loop is not None
                         else "not installed" if with_torch else "skipped (--no-torch)"),
    }
    if floor is not None:
        floor_median = statistics.median(clock.floor_seconds[1:])
        result.update({
            "numpy_floor_seconds": round(floor_median, 4),
            "numpy_floor_seconds_each": [round(s, 4) for s in clock.floor_seconds[1:]],
            "numpy_floor_ratio_to_limit": round(floor_median / limit, 3),
            "engine_vs_numpy_floor": round(epoch_seconds / floor_median, 3),
        })
    if torch_loop is not None:
        torch_each = torch_loop.epoch_seconds[1 : epochs + 1]
        torch_median = statistics.median(torch_each)
        result.update({
            "torch": torch_loop.version,
            "torch_epoch_seconds": round(torch_median, 4),
            "torch_epoch_seconds_each": [round(s, 4) for s in torch_each],
            "speedup_vs_torch": round(torch_median / epoch_seconds, 3),
            "target_speedup_vs_torch": TARGET_SPEEDUP_VS_TORCH,
        })
    return result


def format_report(result: dict) -> list[str]:
    lines = [
        f"model {result['model']}, {result['optimizer']}, batch {result['batch_size']}, "
        f"{result['train_samples']:,} digits per epoch, {result['threads']} BLAS threads, "
        f"median of {result['epochs_timed']} epochs",
        f"epoch_seconds        {result['epoch_seconds']:.3f}   (engine: one training epoch, "
        "validation excluded)",
        f"blas_limit_seconds   {result['blas_limit_seconds']:.3f}   ({result['matmul_gflop_per_epoch']} "
        f"GFLOP of matmuls at {result['sgemm_gflops']} GFLOP/s measured sgemm)",
        f"ratio_to_limit       {result['ratio_to_limit']:.2f}    (target <= {TARGET_RATIO_TO_LIMIT})",
    ]
    if "numpy_floor_seconds" in result:
        lines += [
            f"numpy_floor_seconds  {result['numpy_floor_seconds']:.3f}   (the same steps as one flat "
            f"NumPy loop: {result['numpy_floor_ratio_to_limit']:.2f}x the limit)",
            f"engine_vs_numpy_floor {result['engine_vs_numpy_floor']:.2f}   (1.00: no overhead of "
            "its own)",
        ]
    else:
        lines.append("numpy_floor_seconds  -       (the flat loop covers ReLU networks trained by "
                     "SGD or momentum, without dropout or batch norm)")
    if "torch_epoch_seconds" in result:
        lines += [
            f"torch_epoch_seconds  {result['torch_epoch_seconds']:.3f}   (PyTorch {result['torch']}, "
            "same model, batch and loop)",
            f"speedup_vs_torch     {result['speedup_vs_torch']:.2f}    "
            f"(target >= {TARGET_SPEEDUP_VS_TORCH})",
        ]
    elif result.get("torch_status") == "not installed":
        lines.append("torch_epoch_seconds  -       (PyTorch is not installed: "
                     "pip install torch to compare)")
    else:
        lines.append(f"torch_epoch_seconds  -       ({result.get('torch_status', 'not measured')})")
    return lines


# --- the `mnist-lab bench` command (registered by app/cli.py) --------------------------------------
def run_command(args: argparse.Namespace) -> int:
    """`mnist-lab bench` with its parsed options."""
    from engine.presets import PRESETS

    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; available presets: {', '.join(PRESETS)}")
    data = load_data(args)
    if data is None:
        return 1
    result = run_bench(data, epochs=args.epochs, with_torch=not args.no_torch, preset=args.preset,
                       progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        for line in format_report(result):
            print(line)
    return 0
