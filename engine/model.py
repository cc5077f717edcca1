"""A sequential model: layers applied in order, ending in exactly one Softmax.

Build one from Python (`Sequential([Dense(784, 128), ReLU(), Dense(128, 10), Softmax()])`) or from a
TrainConfig (`build_model(config)`). Save and load as one `.npz` holding the weights, the JSON config
and metadata; loading never unpickles and checks every array's shape against the config.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import engine
from engine.config import ConfigError, TrainConfig
from engine.digits import N_CLASSES, N_INPUTS
from engine.layers import ACTIVATION_LAYERS, BatchNorm, Dense, Dropout, Layer, Parameter, Softmax


class ModelError(ValueError):
    """A model that is malformed, or a model file that cannot be loaded."""


class Sequential:
    def __init__(self, layers: list[Layer], config: TrainConfig | None = None):
        softmax_at = [i for i, layer in enumerate(layers) if isinstance(layer, Softmax)]
        if softmax_at != [len(layers) - 1]:
            raise ModelError(
                "a model needs exactly one Softmax layer and it must be the last layer "
                f"(found Softmax at positions {softmax_at} of {len(layers)} layers); "
                "softmax is fused with the cross-entropy loss at the output"
            )
        self.layers = layers
        self.config = config
        dense = [layer for layer in layers if isinstance(layer, Dense)]
        if dense:
            dense[0].needs_input_grad = False  # nobody needs d(loss)/d(pixels)

    # --- forward and backward ------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """The logits: every layer but the final Softmax."""
        for layer in self.layers[:-1]:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_logits: np.ndarray) -> None:
        """Backpropagate dL/dlogits through every layer, filling each Parameter.grad."""
        grad = grad_logits
        for layer in reversed(self.layers[:-1]):
            grad = layer.backward(grad)
            if grad is None:  # the first Dense layer stops the chain
                break

    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities (N, 10) for an (N, 784) float batch in 0..1."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ModelError(f"expected an (N, {self.n_inputs}) batch, got shape {x.shape}")
        out = np.empty((len(x), self.n_outputs), dtype=self.dtype)
        for start in range(0, len(x), batch_size):
            out[start : start + batch_size] = self.layers[-1].forward(
                self.forward(x[start : start + batch_size])
            )
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    # --- introspection -------------------------------------------------------------------------
    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters]

    @property
    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    @property
    def n_inputs(self) -> int:
        return self.dense_layers[0].shape[0]

    @property
    def n_outputs(self) -> int:
        return self.dense_layers[-1].shape[1]

    @property
    def dtype(self):
        return self.dense_layers[0].W.value.dtype

    def parameter_count(self) -> int:
        return sum(p.value.size for p in self.parameters())

    def state(self) -> dict[str, np.ndarray]:
        """Every saved array, named `layers.<index>.<name>`."""
        return {
            f"layers.{i}.{name}": array
            for i, layer in enumerate(self.layers)
            for name, array in layer.state().items()
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        expected = self.state()
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise ModelError(f"weights do not match the model: missing {missing}, unexpected {extra}")
        for key, array in arrays.items():
            if array.shape != expected[key].shape:
                raise ModelError(
                    f"{key} has shape {array.shape}, the config needs {expected[key].shape}"
                )
            if array.dtype.kind != "f":
                raise ModelError(f"{key} has dtype {array.dtype}; weights must be floating-point numbers")
            if not np.all(np.isfinite(array)):
                raise ModelError(f"{key} contains NaN or infinite values")
        for i, layer in enumerate(self.layers):
            prefix = f"layers.{i}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            layer.load_state(own)


def build_model(config: TrainConfig, rng: np.random.Generator | None = None,
                dtype=np.float32) -> Sequential:
    """Dense → [BatchNorm] → activation → [Dropout] for each hidden layer, then Dense → Softmax.

    Initialisation `auto` picks He for ReLU-like activations and Glorot for tanh/sigmoid.
    """
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    if config.init == "auto":
        hidden_init = "he" if config.activation in ("relu", "leaky_relu") else "glorot"
        output_init = "glorot"
    else:
        hidden_init = output_init = config.init
    layers: list[Layer] = []
    fan_in = N_INPUTS
    for units in config.hidden_layers:
        layers.append(Dense(fan_in, units, hidden_init, rng, dtype))
        if config.batch_norm:
            layers.append(BatchNorm(units, dtype=dtype))
        layers.append(ACTIVATION_LAYERS[config.activation]())
        if config.dropout > 0:
            layers.append(Dropout(config.dropout, rng))
        fan_in = units
    layers.append(Dense(fan_in, N_CLASSES, output_init, rng, dtype))
    layers.append(Softmax())
    return Sequential(layers, config)


# --- save and load --------------------------------------------------------------------------------
def save_model(model: Sequential, path: str | os.PathLike, metadata: dict[str, Any] | None = None
               ) -> Path:
    """Write weights + config + metadata to one `.npz`, atomically (temp file, then rename)."""
    path = Path(path)
    arrays = _model_arrays(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def model_bytes(model: Sequential, metadata: dict[str, Any] | None = None) -> bytes:
    """The bytes `save_model` would write, in memory (a worker with no disk of the server's
    sends them; `load_model(io.BytesIO(data))` reads them back)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_model_arrays(model, metadata))
    return buffer.getvalue()


def _model_arrays(model: Sequential, metadata: dict[str, Any] | None) -> dict[str, np.ndarray]:
    if model.config is None:
        raise ModelError("only models built from a TrainConfig can be saved")
    meta = {"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "engine_version": engine.__version__, **(metadata or {})}
    arrays = dict(model.state())
    arrays["config_json"] = np.array(json.dumps(model.config.to_dict()))
    arrays["metadata_json"] = np.array(json.dumps(meta, allow_nan=False))
    return arrays


ZIP_MAGIC = b"PK\x03\x04"  # a .npz is a zip archive


def _first_bytes(source: str | os.PathLike | Any, count: int) -> bytes:
    """The first bytes of a path or a seekable file object (left where it was)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            return handle.read(count)
    position = source.tell()
    try:
        return source.read(count)
    finally:
        source.seek(position)


def load_model(source: str | os.PathLike | Any) -> tuple[Sequential, dict[str, Any]]:
    """Load a model saved by `save_model` (path or file object). Never unpickles.

    Returns the model and its metadata; raises ModelError with the reason if anything is off:
    not a model file at all, or one that is truncated or damaged (its zip checksums fail).
    """
    try:
        head = _first_bytes(source, len(ZIP_MAGIC))
    except OSError as error:
        raise ModelError(f"not a readable MNIST Lab model file: {error.strerror or error}") from error
    if head != ZIP_MAGIC:
        raise ModelError("not a readable MNIST Lab model file: a model is a .npz archive, as saved "
                         "by `mnist-lab train --save` or downloaded from the dashboard")
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ModelError(f"not a readable MNIST Lab model file: it is damaged or truncated ({error})"
                         ) from error
    try:
        config = TrainConfig.from_dict(json.loads(str(arrays.pop("config_json"))))
        metadata = json.loads(str(arrays.pop("metadata_json")))
    except KeyError as error:
        raise ModelError(f"model file lacks {error.args[0]}; was it saved by MNIST Lab?") from None
    except (json.JSONDecodeError, ConfigError) as error:
        raise ModelError(f"model file has an invalid config: {error}") from error
    if not isinstance(metadata, dict):
        raise ModelError(f"model file's metadata must be a JSON object, got {type(metadata).__name__}")
    model = build_model(config)
    model.load_state(arrays)
    return model, metadata
