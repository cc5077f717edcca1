"""The NumPy floor: how fast can *any* NumPy training loop for this model be?

`mnist-lab bench` compares the engine with the BLAS limit (its matrix products alone). Between those
products every NumPy loop must also normalise the batch, add biases, apply ReLU, compute the softmax
cross-entropy and its gradient, count correct answers and update the weights: dozens of NumPy calls
per step, each over an array that is small enough for call overhead to matter and (with two BLAS
threads) often just written by the other core. This module is that work and nothing else, written
as one flat loop: every buffer preallocated, every operation in place, no layers, no events, no
checks. The engine is built for reading and for the product; this loop is built only to be timed.

It is a benchmark reference, like the PyTorch loop next to it, and never trains anything that is
used: ReLU hidden layers, SGD with or without (Nesterov) momentum and L2 weight decay, batch 128,
the engine's learning-rate schedule; `supports(config)` says whether a preset fits.
"""

from __future__ import annotations

import math
import time

import numpy as np

from engine.config import TrainConfig
from engine.schedules import learning_rate


def supports(config: TrainConfig) -> bool:
    """Whether the floor loop can do the same work as the engine for `config`."""
    return (config.activation == "relu" and config.optimizer in ("sgd", "momentum", "nesterov")
            and config.dropout == 0 and not config.batch_norm)


class NumpyFloor:
    """One training step at a time, with the fewest NumPy calls; `run_steps` returns its time."""

    def __init__(self, config: TrainConfig, data, batch_size: int):
        if not supports(config):
            raise ValueError("the NumPy floor covers ReLU MLPs trained by SGD or (Nesterov) momentum, "
                             "without dropout or batch norm")
        self.config, self.batch_size = config, batch_size
        self.images, self.labels = data.train_images, data.train_labels
        sizes = (self.images.shape[1], *config.hidden_layers, 10)
        rng = np.random.default_rng(config.seed)
        f32 = np.float32
        self.W = [(rng.standard_normal((n_in, n_out)) * math.sqrt(2 / n_in)).astype(f32)
                  for n_in, n_out in zip(sizes, sizes[1:], strict=False)]
        self.b = [np.zeros(n_out, f32) for n_out in sizes[1:]]
        self.gW = [np.empty_like(w) for w in self.W]
        self.gb = [np.empty_like(b) for b in self.b]
        self.parameters, self.gradients = self.W + self.b, self.gW + self.gb
        self.decays = [True] * len(self.W) + [False] * len(self.b)  # L2 on weights, not biases
        self.velocity = [np.zeros_like(p) for p in self.parameters]
        self.scratch = [np.empty_like(p) for p in self.parameters]
        self.x = np.empty((batch_size, sizes[0]), f32)
        self.z = [np.empty((batch_size, n), f32) for n in sizes[1:]]  # pre-activations, in place
        self.dz = [np.empty((batch_size, n), f32) for n in sizes[1:-1]]
        self.rows = np.arange(batch_size)
        self.order = np.empty(0, dtype=np.intp)
        self.steps_per_epoch = math.ceil(len(self.labels) / batch_size)
        self.step = 0

    def run_steps(self, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            self._train_step()
        return time.perf_counter() - started

    def _train_step(self) -> None:
        index = self.step % self.steps_per_epoch
        if index == 0:
            self.order = np.random.default_rng(self.step).permutation(len(self.labels))
        batch = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        lr = learning_rate(self.config, self.step / self.steps_per_epoch, 1 / self.steps_per_epoch)
        self.step += 1
        self.train_on(batch, lr)

    def train_on(self, batch: np.ndarray, lr: float) -> float:
        """One step on the training digits `batch` (indices) at learning rate `lr`; the batch loss."""
        n = len(batch)
        x = self.x[:n]
        np.multiply(self.images[batch], np.float32(1 / 255), out=x)
        y = self.labels[batch].astype(np.intp)
        activations = [x]
        for layer, (w, b) in enumerate(zip(self.W, self.b, strict=True)):
            z = np.matmul(activations[-1], w, out=self.z[layer][:n])
            z += b
            if layer < len(self.W) - 1:
                np.maximum(z, 0, out=z)
            activations.append(z)

        logits = activations.pop()  # becomes the probabilities, then dL/dlogits, in place
        logits -= logits.max(axis=1, keepdims=True)
        rows = self.rows[:n]
        picked = logits[rows, y]
        np.exp(logits, out=logits)
        total = logits.sum(axis=1, keepdims=True)
        loss = float(np.log(total).sum() - picked.sum()) / n  # the engine reports it every step
        logits /= total
        int(np.count_nonzero(logits.argmax(axis=1) == y))  # and its count of correct answers
        logits[rows, y] -= 1
        logits *= np.float32(1 / n)

        delta = logits
        for layer in reversed(range(len(self.W))):
            np.matmul(activations[layer].T, delta, out=self.gW[layer])
            np.sum(delta, axis=0, out=self.gb[layer])
            if layer > 0:
                previous = np.matmul(delta, self.W[layer].T, out=self.dz[layer - 1][:n])
                previous *= activations[layer] > 0
                delta = previous

        self._update(lr)
        return loss

    def _update(self, lr: float) -> None:
        """The engine's optimisers, pass for pass: g += λw; v ← μv + g; w ← w - η (v, or g + μv)."""
        config = self.config
        for w, g, v, scratch, decays in zip(self.parameters, self.gradients, self.velocity,
                                            self.scratch, self.decays, strict=True):
            if config.weight_decay and decays:
                g += np.multiply(w, config.weight_decay, out=scratch)
            step = g
            if config.optimizer != "sgd":
                v *= config.momentum
                v += g
                step = v
                if config.optimizer == "nesterov":
                    step = np.multiply(v, config.momentum, out=scratch)
                    step += g
            w -= np.multiply(step, lr, out=scratch)
