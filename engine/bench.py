"""`mnist-lab bench`: how fast is one training epoch, against the hardware and against PyTorch?

Three measurements, interleaved epoch by epoch so that they share the same (possibly noisy) machine:

- epoch_seconds: the engine's Trainer on the `default` architecture, batch 128, real MNIST, timed
  from the start of an epoch to its last optimisation step (shuffling, batching, forward, backward,
  update and the per-iteration events included; the validation pass excluded).
- blas_limit_seconds: the matrix multiplications a correct backprop needs in one epoch (per Dense
  layer: the forward product, the weight gradient, and the input gradient except for the first
  layer), each timed alone with NumPy's sgemm at the engine's exact shapes and memory layouts, in
  the same process and so with the same BLAS thread count. FLOPs / measured sgemm throughput.
- torch_epoch_seconds (when PyTorch is installed): the same model, batch, optimiser and loop in
  PyTorch, with torch.set_num_threads set to the same thread count.

A warm-up epoch of each is run first and discarded; medians of the timed epochs are reported.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.presets import preset_config
from engine.schedules import learning_rate

BATCH_SIZE = 128
TARGET_RATIO_TO_LIMIT = 1.5
TARGET_SPEEDUP_VS_TORCH = 2.0


def bench_config(preset: str = "default") -> TrainConfig:
    """The preset's architecture and optimiser at batch 128, without augmentation (not BLAS work)."""
    return preset_config(preset).replace(batch_size=BATCH_SIZE, augmentation={})


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

    def __init__(self, products: list[Matmul], seconds_per_product: float = 0.04):
        rng = np.random.default_rng(0)
        self.seconds_per_product = seconds_per_product
        self.operands = []
        for p in products:
            a = rng.standard_normal((p.k, p.m) if p.transpose_a else (p.m, p.k), dtype=np.float32)
            b = rng.standard_normal((p.n, p.k) if p.transpose_b else (p.k, p.n), dtype=np.float32)
            self.operands.append((p, a.T if p.transpose_a else a, b.T if p.transpose_b else b,
                                  np.empty((p.m, p.n), dtype=np.float32)))

    def seconds_per_call(self) -> dict[str, float]:
        """Median time of one call of each product, over repeats lasting ~seconds_per_product."""
        timings = {}
        for p, a, b, out in self.operands:
            np.matmul(a, b, out=out)  # warm the caches and the thread pool
            samples = []
            deadline = time.perf_counter() + self.seconds_per_product
            while len(samples) < 3 or time.perf_counter() < deadline:
                started = time.perf_counter()
                for _ in range(5):
                    np.matmul(a, b, out=out)
                samples.append((time.perf_counter() - started) / 5)
            timings[p.name] = statistics.median(samples)
        return timings


# --- the engine -----------------------------------------------------------------------------------
class EpochClock:
    """Trainer listener: each epoch's training time, from its start to its last step (validation out).

    After each epoch it calls `between_epochs()` (the other measurements), outside the timed span.
    """

    def __init__(self, between_epochs: Callable[[int], None]):
        self.between_epochs = between_epochs
        self.epoch_seconds: list[float] = []
        self._epoch_started = time.perf_counter()
        self._last_step = self._epoch_started

    def __call__(self, event) -> None:
        if event.event == "iteration":
            self._last_step = time.perf_counter()
        elif event.event == "epoch":
            self.epoch_seconds.append(self._last_step - self._epoch_started)
            self.between_epochs(event.epoch)
            self._epoch_started = time.perf_counter()


# --- PyTorch --------------------------------------------------------------------------------------
class TorchEpoch:
    """The same model, optimiser, schedule and loop as the engine's Trainer, written in PyTorch."""

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
        self.epochs_done = 0

    def run_epoch(self) -> float:
        """Train one epoch; return its duration in seconds."""
        torch, config = self.torch, self.config
        images, labels = self.data.train_images, self.data.train_labels
        n = len(labels)
        steps = math.ceil(n / config.batch_size)
        functional = torch.nn.functional
        self.model.train()
        started = time.perf_counter()
        order = self.rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for index, start in enumerate(range(0, n, config.batch_size)):
            batch = order[start : start + config.batch_size]
            x = torch.from_numpy(np.take(images, batch, axis=0)).float().mul_(1.0 / 255.0)
            y = torch.from_numpy(labels[batch].astype(np.int64))
            lr = learning_rate(config, self.epochs_done + index / steps, 1 / steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            logits = self.model(x)
            loss = functional.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item() * len(batch)
            correct += int((logits.argmax(dim=1) == y).sum().item())
        self.epochs_done += 1
        return time.perf_counter() - started


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# --- the benchmark --------------------------------------------------------------------------------
def run_bench(data, epochs: int = 3, with_torch: bool = True, preset: str = "default",
              progress: Callable[[str], None] = lambda line: None,
              probe_seconds: float = 0.04) -> dict:
    """Interleave engine epochs, PyTorch epochs and sgemm probes; return medians and ratios.

    `probe_seconds`: how long each product is timed per probe (the tests shorten it)."""
    from engine.trainer import Trainer

    config = bench_config(preset).replace(epochs=epochs + 1)  # + 1 warm-up epoch
    threads = blas_threads()
    layer_sizes = (784, *config.hidden_layers, 10)
    products = backprop_matmuls(layer_sizes)
    probe = SgemmProbe(products, probe_seconds)
    steps_equivalent = len(data.train_labels) / BATCH_SIZE  # FLOPs are linear in the batch size
    torch = _import_torch() if with_torch else None
    torch_epoch = TorchEpoch(torch, config, data, threads) if torch is not None else None
    limits: list[float] = []
    torch_seconds: list[float] = []
    control = TrainingControl()

    def between_epochs(epoch: int) -> None:
        timings = probe.seconds_per_call()
        limits.append(steps_equivalent * sum(timings.values()))
        if torch_epoch is not None:
            torch_seconds.append(torch_epoch.run_epoch())
        label = "warm-up" if epoch == 1 else f"{epoch - 1}/{epochs}"
        torch_text = f"  torch {torch_seconds[-1]:.3f}s" if torch_seconds else ""
        progress(f"epoch {label}: engine {clock.epoch_seconds[-1]:.3f}s{torch_text}  "
                 f"blas limit {limits[-1]:.3f}s")

    clock = EpochClock(between_epochs)
    end = Trainer(config, data, [clock], control).run()
    if end.status != "completed":
        raise RuntimeError(f"the benchmark run did not complete: {end.status} ({end.reason})")

    flops = sum(p.flops for p in products) * steps_equivalent
    epoch_seconds = statistics.median(clock.epoch_seconds[1:])
    limit = statistics.median(limits[1:])
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
        "blas_limit_seconds_each": [round(s, 4) for s in limits[1:]],
        "test_accuracy": end.test_accuracy,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "target_ratio_to_limit": TARGET_RATIO_TO_LIMIT,
    }
    if torch_epoch is not None:
        torch_median = statistics.median(torch_seconds[1:])
        result.update({
            "torch": torch.__version__,
            "torch_epoch_seconds": round(torch_median, 4),
            "torch_epoch_seconds_each": [round(s, 4) for s in torch_seconds[1:]],
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
    if "torch_epoch_seconds" in result:
        lines += [
            f"torch_epoch_seconds  {result['torch_epoch_seconds']:.3f}   (PyTorch {result['torch']}, "
            "same model, batch and loop)",
            f"speedup_vs_torch     {result['speedup_vs_torch']:.2f}    "
            f"(target >= {TARGET_SPEEDUP_VS_TORCH})",
        ]
    else:
        lines.append("torch_epoch_seconds  -       (PyTorch is not installed: "
                     "pip install torch to compare)")
    return lines
