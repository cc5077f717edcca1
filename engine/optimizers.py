"""Optimisers: how a gradient becomes a step. Each updates `Parameter.value` in place.

L2 weight decay adds λ·w to the gradient of every parameter marked `decay` (weights, not biases).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from engine.layers import Parameter


class Optimizer(ABC):
    state_arrays: ClassVar[int]  # arrays of state it keeps per parameter (memory, not math)

    def __init__(self, parameters: list[Parameter], weight_decay: float = 0.0):
        self.parameters = list(parameters)
        self.weight_decay = weight_decay
        # One scratch array per parameter, so that a step allocates nothing: the updates are
        # memory-bound, and for the first layer's weights each pass costs as much as a small matmul.
        self.scratch = [np.empty_like(p.value) for p in self.parameters]

    def gradient(self, p: Parameter) -> np.ndarray:
        """g = dL/dw, plus λw for weights when weight decay is on (added into p.grad in place)."""
        if self.weight_decay and p.decay:
            p.grad += p.value.dtype.type(self.weight_decay) * p.value
        return p.grad

    @abstractmethod
    def step(self, learning_rate: float) -> None:
        """Move every parameter one step against its gradient."""


class SGD(Optimizer):
    """w ← w - η g."""

    state_arrays = 0

    def step(self, learning_rate: float) -> None:
        for p, scratch in zip(self.parameters, self.scratch, strict=True):
            p.value -= np.multiply(self.gradient(p), learning_rate, out=scratch)


class Momentum(Optimizer):
    """Heavy ball: v ← μ v + g, w ← w - η v.  Nesterov: w ← w - η (g + μ v) with the new v."""

    state_arrays = 1  # v

    def __init__(self, parameters, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(parameters, weight_decay)
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = [np.zeros_like(p.value) for p in self.parameters]

    def step(self, learning_rate: float) -> None:
        for p, v, scratch in zip(self.parameters, self.velocity, self.scratch, strict=True):
            g = self.gradient(p)
            v *= self.momentum
            v += g
            if self.nesterov:
                step = np.multiply(v, self.momentum, out=scratch)
                step += g
                step *= learning_rate
            else:
                step = np.multiply(v, learning_rate, out=scratch)
            p.value -= step


class Adam(Optimizer):
    """Kingma & Ba (2015), Algorithm 1:
        m ← β1 m + (1-β1) g          v ← β2 v + (1-β2) g²
        m̂ = m / (1-β1^t)            v̂ = v / (1-β2^t)
        w ← w - η m̂ / (sqrt(v̂) + ε)
    """

    state_arrays = 2  # m and v

    def __init__(self, parameters, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(parameters, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = [np.zeros_like(p.value) for p in self.parameters]
        self.v = [np.zeros_like(p.value) for p in self.parameters]
        self.t = 0

    def step(self, learning_rate: float) -> None:
        self.t += 1
        beta1, beta2, t = self.beta1, self.beta2, self.t
        for p, m, v, scratch in zip(self.parameters, self.m, self.v, self.scratch, strict=True):
            g = self.gradient(p)
            m *= beta1
            m += np.multiply(g, 1 - beta1, out=scratch)
            v *= beta2
            v += np.multiply(np.square(g, out=scratch), 1 - beta2, out=scratch)
            # The step, one pass at a time in the scratch array (a step allocates nothing):
            update = np.divide(v, 1 - beta2**t, out=scratch)  # v̂
            np.sqrt(update, out=update)
            update += self.eps  # sqrt(v̂) + ε
            np.divide(m, update, out=update)  # m / (sqrt(v̂) + ε)
            update *= learning_rate / (1 - beta1**t)  # η m̂ / (sqrt(v̂) + ε)
            p.value -= update


OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "nesterov": Momentum, "adam": Adam,
}


def make_optimizer(name: str, parameters, momentum: float = 0.9, weight_decay: float = 0.0
                   ) -> Optimizer:
    if name == "sgd":
        return SGD(parameters, weight_decay=weight_decay)
    if name in ("momentum", "nesterov"):
        return Momentum(parameters, momentum, nesterov=name == "nesterov",
                        weight_decay=weight_decay)
    if name == "adam":
        return Adam(parameters, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use sgd, momentum, nesterov or adam")
