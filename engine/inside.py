"""The inside of a network while it trains: what each layer's weights, gradients and activations
look like, step after step (TensorBoard's histograms and distributions, ConvNetJS's live layers).

For each Dense layer ℓ, with weights W (inputs × units), at a watched step t:

    weights        histogram of the entries of W after the step
    gradients      histogram of g = ∂L/∂W, the mini-batch gradient the optimiser was given at
                   step t (weight decay included), and its norm ‖g‖ (Frobenius)
    update ratio   ‖ΔW‖ / ‖W‖ with ΔW = W(before step t) − W(after): the step the optimiser
                   actually took (η · its step direction), relative to the weights. Around 1e-3
                   is the usual healthy value; 1e-1 means the weights are being rewritten, 1e-6
                   that the layer has stopped learning
    activations    histogram of the layer's output after its activation function (for the output
                   layer: the logits) on a fixed probe batch of validation digits, in inference
                   mode (no dropout; batch norm with its running statistics)
    dead fraction  the share of units that output 0 for every digit of the probe batch (their
                   pre-activation is ≤ 0 on all of them, so no gradient reaches their weights):
                   ReLU and leaky ReLU layers; None for the others

Histogram bins are one fixed grid for every layer, quantity and step, so that histograms compare
over time (the percentile bands of TensorBoard's distributions are read from them): a central bin
(-10⁻⁶, 10⁻⁶) and, on each side, ten bins per decade from 10⁻⁶ to 10³ (edges ±10^(k/10)).
Magnitudes beyond 10³ count in the outermost bins. Only the bins from the first to the last
non-empty one are sent.

At the end of each epoch the first layer is shown as well: the incoming weights of its first
units as 28x28 images, and the mean activation of each of those units per digit class of the
probe batch (which unit answers to which digit).

`LayerWatch` is a trainer listener that measures these at the steps it watches and reports them
as `LayersEvent`s through the trainer, so every listener receives them in order. It never changes
the training: no random numbers, no training-mode forward pass, the weights only read.
"""

from __future__ import annotations

import base64
import math

import numpy as np

from engine.events import (
    EpochEvent,
    Event,
    FirstLayer,
    Histogram,
    IterationEvent,
    LayersEvent,
    LayerStats,
    PauseEvent,
    StartEvent,
)
from engine.layers import Dense, LeakyReLU, ReLU
from engine.metrics import normalise

# --- histograms on one fixed grid ---------------------------------------------------------------
BINS_PER_DECADE = 10
SMALLEST_EXPONENT = -6  # |x| < 10⁻⁶ falls in the central bin
LARGEST_EXPONENT = 3  # |x| ≥ 10³ counts in the outermost bins
MAGNITUDES = 10.0 ** (np.arange(SMALLEST_EXPONENT * BINS_PER_DECADE,
                                LARGEST_EXPONENT * BINS_PER_DECADE + 1) / BINS_PER_DECADE)
EDGES = np.concatenate([-MAGNITUDES[::-1], MAGNITUDES])  # 182 edges, 181 bins
CENTRE = len(MAGNITUDES) - 1  # the bin (-10⁻⁶, 10⁻⁶)
SIDE_BINS = len(MAGNITUDES) - 1  # bins on each side of the centre


def bin_indices(values: np.ndarray) -> np.ndarray:
    """The grid bin of each value: the centre for |x| < 10⁻⁶, else CENTRE ± (1 + k) where
    k = ⌊10 · (log₁₀|x| + 6)⌋ is the magnitude's tenth of a decade above 10⁻⁶ (clipped to the
    outermost bin)."""
    x = values.ravel()
    with np.errstate(divide="ignore"):
        offset = np.log10(np.abs(x))  # -inf for 0: the centre
    offset *= BINS_PER_DECADE
    np.floor(offset, out=offset)
    offset += 1 - SMALLEST_EXPONENT * BINS_PER_DECADE  # 1 + k: 0 or less in the centre
    np.clip(offset, 0, SIDE_BINS, out=offset)
    np.copysign(offset, x, out=offset)
    offset += CENTRE
    return offset.astype(np.intp)


def histogram(values: np.ndarray) -> Histogram:
    """The values counted on the fixed grid, trimmed to the bins from the first to the last one
    that holds a value."""
    counts = np.bincount(bin_indices(values), minlength=len(EDGES) - 1)
    filled = np.flatnonzero(counts)
    if len(filled) == 0:
        return Histogram((), ())
    first, last = int(filled[0]), int(filled[-1])
    edges = tuple(float(f"{edge:.6g}") for edge in EDGES[first : last + 2])
    return Histogram(edges, tuple(int(c) for c in counts[first : last + 1]))


# --- the other quantities -----------------------------------------------------------------------
def norm(array: np.ndarray) -> float:
    """‖A‖: the square root of the sum of its squared entries (Frobenius)."""
    return float(np.linalg.norm(array.ravel()))


def update_ratio(before: np.ndarray, after: np.ndarray) -> float:
    """‖before − after‖ / ‖after‖: the step taken, relative to the weights (0 for zero weights)."""
    size = norm(after)
    return norm(before - after) / size if size > 0 else 0.0


def dead_fraction(activations: np.ndarray) -> float:
    """The share of units (columns) that are ≤ 0 for every sample (row)."""
    return float(np.mean(np.all(activations <= 0, axis=0)))


def signed_bytes(unit_weights: np.ndarray) -> str:
    """784 weights as an image: each divided by the largest magnitude, times 127, rounded, as
    signed bytes in base64 (all zero if the weights are)."""
    scale = float(np.max(np.abs(unit_weights)))
    scaled = unit_weights / scale * 127 if scale > 0 else np.zeros_like(unit_weights)
    return base64.b64encode(np.round(scaled).astype(np.int8).tobytes()).decode("ascii")


def class_means(activations: np.ndarray, labels: np.ndarray, classes: int = 10
                ) -> tuple[tuple[float, ...] | None, ...]:
    """The mean activation of each unit over the samples of each class (None: no such sample)."""
    rows = []
    for digit in range(classes):
        chosen = activations[labels == digit]
        rows.append(None if len(chosen) == 0 else tuple(
            float(f"{value:.4g}") for value in chosen.mean(axis=0)))
    return tuple(rows)


def probe_forward(model, x: np.ndarray) -> list[np.ndarray]:
    """Each Dense layer's output after whatever follows it up to the next Dense layer (batch
    norm, activation, dropout), in inference mode; the last one is the logits."""
    outputs: list[np.ndarray] = []
    for layer in model.layers[:-1]:  # all but the Softmax, fused with the loss
        x = layer.forward(x, training=False)
        if isinstance(layer, Dense):
            outputs.append(x)
        else:
            outputs[-1] = x
    return outputs


# --- the listener ---------------------------------------------------------------------------------
PROBE_SIZE = 256  # validation digits the activations are measured on
MAX_IMAGES = 64  # first-layer units shown as images
# What a run may produce, besides one snapshot per epoch: on the `stats_every` cadence, at most
# this many layer measurements (a snapshot of a 2-layer network is 2), and one snapshot at the
# end of each step request, at most this many. With a histogram at most ~4 kB of JSON (181 bins),
# a layer's statistics are at most ~12.5 kB and the first layer's images ~75 kB (docs/inside.md).
MAX_LAYER_MEASUREMENTS = 2000
MAX_STEPPED_SNAPSHOTS = 500


def watched_every(every: int, total_steps: int, layers: int = 1) -> int:
    """The cadence actually used: `every`, or coarser when the run is so long (or the network so
    deep) that it would measure more than MAX_LAYER_MEASUREMENTS layers."""
    if every <= 0:
        return 0
    return max(every, math.ceil(total_steps * layers / MAX_LAYER_MEASUREMENTS))


class LayerWatch:
    """Trainer listener: `LayersEvent`s every `every` steps (0: never), after every epoch, and
    after the last step of each step request (`TrainingControl.step`), emitted through the
    trainer. Bound to a trainer before its first event."""

    def __init__(self, every: int):
        self.every = every
        self.every_used = 0
        self.trainer = None
        self.stepped = 0  # snapshots taken for step requests
        self._before: list[np.ndarray] = []  # the weights before the watched step
        self._before_step: int | None = None  # which step that is
        self._for_request = False  # watched only because a step request ends there
        self._learning_rate = 0.0

    def bind(self, trainer) -> None:
        self.trainer = trainer
        data = trainer.data
        images, labels = data.validation_images, data.validation_labels
        if len(labels) == 0:  # nothing held out: the first training digits, as they are
            images, labels = data.train_images, data.train_labels
        self.probe = normalise(images[:PROBE_SIZE], trainer.model.dtype)
        self.probe_labels = np.asarray(labels[:PROBE_SIZE])
        model = trainer.model
        self.dense = model.dense_layers
        self._before = [np.empty_like(layer.W.value) for layer in self.dense]
        self._relu_like = []
        for layer in self.dense:
            after = model.layers[model.layers.index(layer) + 1:]
            block = after[: next((i for i, other in enumerate(after) if isinstance(other, Dense)),
                                 len(after))]
            self._relu_like.append(any(isinstance(other, (ReLU, LeakyReLU)) for other in block))

    # --- which steps are watched -----------------------------------------------------------------
    def _epoch_end(self, step: int) -> bool:
        return (step + 1) % self.trainer.steps_per_epoch == 0

    def _remember_before(self, step: int) -> None:
        """Copy the weights before `step` if it is watched (for its update ratio)."""
        if self.every_used <= 0:
            return
        scheduled = self._epoch_end(step) or step % self.every_used == 0
        requested = (self.trainer.control.steps_left == 1  # a step request ends with `step`
                     and self.stepped < MAX_STEPPED_SNAPSHOTS)
        if scheduled or requested:
            for copy, layer in zip(self._before, self.dense, strict=True):
                np.copyto(copy, layer.W.value)
            self._before_step, self._for_request = step, not scheduled

    def __call__(self, event: Event) -> None:
        match event:
            case StartEvent(epochs=epochs, steps_per_epoch=steps_per_epoch):
                self.every_used = watched_every(self.every, epochs * steps_per_epoch,
                                                len(self.dense))
                self._remember_before(0)
            case PauseEvent(paused=False, step=step):
                self._remember_before(step)
            case IterationEvent(step=step, epoch=epoch, learning_rate=learning_rate):
                self._learning_rate = learning_rate
                if self._epoch_end(step):
                    return  # measured after the epoch's validation, with the epoch's extras
                if self._before_step == step:
                    self.stepped += self._for_request
                    self.trainer.emit(self.measure(epoch, step, epoch_end=False))
                self._remember_before(step + 1)
            case EpochEvent(epoch=epoch):
                step = self.trainer.step - 1
                if self._before_step == step:
                    self.trainer.emit(self.measure(epoch, step, epoch_end=True))
                self._remember_before(step + 1)

    # --- measuring -----------------------------------------------------------------------------
    def measure(self, epoch: int, step: int, epoch_end: bool) -> LayersEvent:
        """The LayersEvent of the model as it is now, after `step` (whose weights before the
        step were remembered)."""
        outputs = probe_forward(self.trainer.model, self.probe)
        last = len(self.dense) - 1
        layers = tuple(
            LayerStats(
                name="output" if index == last else f"hidden{index + 1}",
                shape=(int(layer.W.value.shape[0]), int(layer.W.value.shape[1])),
                weights=histogram(layer.W.value),
                gradients=histogram(layer.W.grad),
                activations=histogram(output),
                grad_norm=norm(layer.W.grad),
                update_ratio=update_ratio(before, layer.W.value),
                dead_fraction=dead_fraction(output) if relu_like else None,
            )
            for index, (layer, before, output, relu_like) in enumerate(
                zip(self.dense, self._before, outputs, self._relu_like, strict=True)))
        return LayersEvent(epoch=epoch, step=step, learning_rate=self._learning_rate,
                           epoch_end=epoch_end, layers=layers,
                           first_layer=self.first_layer(outputs[0]) if epoch_end else None)

    def first_layer(self, hidden: np.ndarray) -> FirstLayer:
        """The first layer's first units as images, with their mean activation per class."""
        weights = self.dense[0].W.value  # (784, units)
        shown = min(weights.shape[1], MAX_IMAGES)
        return FirstLayer(
            units=int(weights.shape[1]),
            images=tuple(signed_bytes(weights[:, unit]) for unit in range(shown)),
            class_activations=class_means(hidden[:, :shown], self.probe_labels),
        )
