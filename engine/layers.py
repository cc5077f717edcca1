"""Layers of a multi-layer perceptron, each with its forward pass and its backward pass side by side.

Every layer maps a batch `x` of shape (batch, features) to `y`, and follows one idiom:

    forward(x, training)  y. In training it also remembers what its backward pass needs (its
                          input, its output or a mask); at inference (training=False) it remembers
                          nothing, so predictions may run in any thread while the model trains.
    backward(dy)          dL/dx from dL/dy (the chain rule, one layer at a time), and dL/dθ into
                          each `Parameter.grad`. It never writes into the `dy` it is given.

All arrays are float32 unless a caller asks for float64 (the gradient checks do). Speed without
obscurity: in training, Dense and ReLU write their output and input gradient into buffers they own
and reuse next step (`Layer.buffer`), so a step of the usual network allocates almost nothing.
"""

from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable array and its gradient, stored together. `decay`: whether L2 weight decay applies."""

    def __init__(self, value: np.ndarray, decay: bool = True):
        self.value = value
        self.grad = np.zeros_like(value)
        self.decay = decay


class Layer:
    """Base class: a layer without parameters that passes its input through unchanged."""

    parameters: tuple[Parameter, ...] = ()

    def buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A scratch array owned by this layer, reallocated only when the shape or dtype changes."""
        buffers = self.__dict__.setdefault("_buffers", {})
        array = buffers.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = buffers[name] = np.empty(shape, dtype=dtype)
        return array

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy

    def state(self) -> dict[str, np.ndarray]:
        """The arrays saved with the model (parameters plus any running statistics), by name:
        the layer's own arrays, so that loading writes into them."""
        return {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        own = self.state()
        for name, array in arrays.items():
            own[name][...] = array


# --- Dense ----------------------------------------------------------------------------------------
def initial_weights(
    n_in: int, n_out: int, scheme: str, rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """He: N(0, 2/n_in) for ReLU-like layers; Glorot: U(+-sqrt(6/(n_in+n_out))) for tanh/sigmoid;
    notebook: the original 0.1 * N(0, 1), which ignores the fan-in."""
    if scheme == "he":
        w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
    elif scheme == "glorot":
        limit = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, (n_in, n_out))
    elif scheme == "notebook":
        w = 0.1 * rng.standard_normal((n_in, n_out))
    else:
        raise ValueError(f"unknown initialisation {scheme!r}; use he, glorot or notebook")
    return w.astype(dtype)


class Dense(Layer):
    """Fully connected: y = x W + b.

    Backward: dW = xᵀ dy, db = Σ_batch dy, dx = dy Wᵀ. The first layer of a network skips dx
    (`needs_input_grad = False`): nothing upstream wants the gradient of the pixels.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype=np.float32,
    ):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.W = Parameter(initial_weights(n_in, n_out, init, rng, dtype))
        self.b = Parameter(np.zeros(n_out, dtype=dtype), decay=False)
        self.parameters = (self.W, self.b)
        self.needs_input_grad = True
        self._x: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.W.value.shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:  # touches no training state: predicting never disturbs a training step
            return x @ self.W.value + self.b.value
        self._x = x
        y = np.matmul(x, self.W.value, out=self.buffer("y", (len(x), self.shape[1]), x.dtype))
        y += self.b.value
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        np.matmul(self._x.T, dy, out=self.W.grad)
        np.sum(dy, axis=0, out=self.b.grad)
        if not self.needs_input_grad:
            return None
        dx = self.buffer("dx", self._x.shape, dy.dtype)
        return np.matmul(dy, self.W.value.T, out=dx)

    def state(self) -> dict[str, np.ndarray]:
        return {"W": self.W.value, "b": self.b.value}


# --- Activations ----------------------------------------------------------------------------------
class ReLU(Layer):
    """y = max(0, x); dy/dx = 1 where x > 0, else 0."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            return np.maximum(x, 0)
        self._y = np.maximum(x, 0, out=self.buffer("y", x.shape, x.dtype))
        return self._y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return np.multiply(dy, self._y > 0, out=self.buffer("dx", dy.shape, dy.dtype))


class LeakyReLU(Layer):
    """y = x for x > 0, alpha * x otherwise; dy/dx = 1 or alpha."""

    def __init__(self, alpha: float = 0.01):
        self.alpha = alpha

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        negative = x < 0
        if training:
            self._negative = negative
        return np.where(negative, x * x.dtype.type(self.alpha), x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return np.where(self._negative, dy * dy.dtype.type(self.alpha), dy)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), split by sign so that exp never overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(Layer):
    """y = 1 / (1 + e^-x); dy/dx = y (1 - y)."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        y = sigmoid(x)
        if training:
            self._y = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * self._y * (1 - self._y)


class Tanh(Layer):
    """y = tanh(x); dy/dx = 1 - y²."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        y = np.tanh(x)
        if training:
            self._y = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * (1 - self._y * self._y)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p),
    so that inference needs no rescaling. dy/dx is the same mask."""

    def __init__(self, p: float, rng: np.random.Generator | None = None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            return x
        if self.p == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy if self._mask is None else dy * self._mask


class BatchNorm(Layer):
    """Batch normalisation (Ioffe & Szegedy 2015): x̂ = (x - μ_B) / sqrt(σ²_B + ε), y = γ x̂ + β.

    Training uses the batch statistics and updates the running averages μ ← m μ + (1 - m) μ_B,
    σ² ← m σ² + (1 - m) σ²_B; inference uses the running averages. They are statistics, not
    parameters: plain arrays that no optimiser sees, saved with the model.
    Backward: dx = (γ / σ) (dy - mean(dy) - x̂ mean(dy x̂)), dγ = Σ dy x̂, dβ = Σ dy.
    """

    def __init__(self, n: int, momentum: float = 0.9, eps: float = 1e-5, dtype=np.float32):
        self.gamma = Parameter(np.ones(n, dtype=dtype), decay=False)
        self.beta = Parameter(np.zeros(n, dtype=dtype), decay=False)
        self.parameters = (self.gamma, self.beta)
        self.running_mean = np.zeros(n, dtype=dtype)
        self.running_var = np.ones(n, dtype=dtype)
        self.momentum = momentum
        self.eps = eps

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            x_hat = (x - self.running_mean) * (1.0 / np.sqrt(self.running_var + self.eps))
            return x_hat * self.gamma.value + self.beta.value
        mean, var = x.mean(axis=0), x.var(axis=0)
        m = self.momentum
        self.running_mean *= m
        self.running_mean += (1 - m) * mean
        self.running_var *= m
        self.running_var += (1 - m) * var
        self._inv_std = 1.0 / np.sqrt(var + self.eps)
        self._x_hat = (x - mean) * self._inv_std
        return self._x_hat * self.gamma.value + self.beta.value

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_hat = self._x_hat
        self.gamma.grad[...] = np.sum(dy * x_hat, axis=0)
        self.beta.grad[...] = np.sum(dy, axis=0)
        dx_hat = dy * self.gamma.value
        return self._inv_std * (
            dx_hat - dx_hat.mean(axis=0) - x_hat * np.mean(dx_hat * x_hat, axis=0)
        )

    def state(self) -> dict[str, np.ndarray]:
        return {
            "gamma": self.gamma.value,
            "beta": self.beta.value,
            "running_mean": self.running_mean,
            "running_var": self.running_var,
        }


class Softmax(Layer):
    """p_i = e^{x_i} / Σ_j e^{x_j}, computed after subtracting max(x) so huge logits cannot overflow.

    Only as the last layer of a model: training fuses it with the cross-entropy loss (see losses.py),
    whose gradient with respect to the logits is simply p - onehot(y).
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return softmax(x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise RuntimeError(
            "Softmax is fused with the cross-entropy loss; backpropagate through the loss instead"
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    e /= e.sum(axis=1, keepdims=True)
    return e


ACTIVATION_LAYERS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}
