"""What a run costs, from its config alone, before anything is built: its layer sizes, its number
of parameters and the peak memory of the process that trains it. The server refuses runs by these
(app/limits.py) and the page shows them; tests check them against built models and a real
training process."""

from __future__ import annotations

from engine.config import TrainConfig
from engine.digits import N_CLASSES, N_INPUTS
from engine.metrics import EVALUATION_BATCH
from engine.optimizers import OPTIMIZER_CLASSES

# What a training process holds besides the network: Python, NumPy and the MNIST arrays
# (60,000 + 10,000 digits of 784 bytes), rounded up.
PROCESS_BASE_BYTES = 192 * 1024 * 1024
# engine.augment.augment_batch's peak, measured with tracemalloc: 73 bytes a pixel for affine
# distortions with thickness, 89 with elastic fields too; rounded up.
AUGMENT_BYTES_PER_PIXEL = 96


def layer_sizes(config: TrainConfig) -> list[int]:
    """784 inputs, each hidden layer, 10 outputs."""
    return [N_INPUTS, *config.hidden_layers, N_CLASSES]


BATCH_NORM_PARAMETERS_PER_UNIT = 2  # its scale and shift


def parameter_count(config: TrainConfig) -> int:
    """Weights and biases of every Dense layer, plus scale and shift of each batch norm."""
    sizes = layer_sizes(config)
    dense = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:], strict=False))
    norm = BATCH_NORM_PARAMETERS_PER_UNIT * sum(config.hidden_layers) if config.batch_norm else 0
    return dense + norm


def estimated_memory_bytes(config: TrainConfig) -> int:
    """A generous estimate of a training process's peak memory, in bytes (float32 throughout).

    Parameters: the weights, their gradients, the optimizer's state (0, 1 or 2 arrays per weight),
    one copy while a checkpoint is written, the copy of the epoch the run keeps (selected on
    validation) and the layer statistics' copy of the weights before a watched step.
    Activations: per sample of the largest batch (a training batch, or an evaluation chunk), the
    input three times (raw, normalised or augmented, its gradient) and, per hidden unit, about
    eight arrays (pre-activation, activation, their gradients, a dropout mask, the layers'
    buffers, NumPy's temporaries), three more with batch norm, plus the logits and softmax.
    Measured peak resident memory (VmHWM) of a fresh process after 3 steps and the evaluation
    (tests/engine/test_footprint.py checks the second): 113 MB for [128] x 128 (estimate 241),
    325 MB for adam [1024, 1024] x 2048 with the `default` preset's augmentation (estimate 561),
    837 MB for adam [2048, 2048] x 4096 with batch norm and dropout (estimate 1450).
    """
    parameters = parameter_count(config)
    state_arrays = OPTIMIZER_CLASSES[config.optimizer].state_arrays
    parameter_bytes = 4 * parameters * (5 + state_arrays)
    per_sample = 4 * (3 * N_INPUTS + 8 * sum(config.hidden_layers) + 3 * N_CLASSES)
    if config.batch_norm:
        per_sample += 4 * 3 * sum(config.hidden_layers)
    activation_bytes = per_sample * max(config.batch_size, EVALUATION_BATCH)
    if config.augmentation.enabled:  # warp coordinates, sampling weights, fields of each batch
        activation_bytes += AUGMENT_BYTES_PER_PIXEL * N_INPUTS * config.batch_size
    return PROCESS_BASE_BYTES + parameter_bytes + activation_bytes
