"""The training configuration: one JSON-serialisable schema shared by the CLI, the server and tests.

A config is a preset plus overrides. `TrainConfig.from_dict` validates every field and raises
`ConfigError` with a message that says which field is wrong, what was given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.presets import PRESETS

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
INITS = ("auto", "he", "glorot", "notebook")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
LR_SCHEDULES = ("constant", "step", "cosine")


class ConfigError(ValueError):
    """A training configuration that cannot be used, with the reason and what would be valid.

    `field` names the config field at fault (e.g. `"hidden_layers"`, `"augmentation.shift"`), so
    the CLI can name its own flag instead; None when the config as a whole is wrong."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


SHOWN_CHARACTERS = 40


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """`repr(value)` for an error message, cut to its first `limit` characters: a client's
    megabyte-long name is quoted, not echoed back whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


class Bounds(NamedTuple):
    """The allowed values of a numeric field: low <= value <= high, whole numbers if `integer`."""

    low: float
    high: float
    integer: bool = False


# The one table of numeric limits: `_validated` enforces it, `field_bounds` publishes it (the
# server sends it to the dashboard's form in GET /api/options).
FIELD_BOUNDS: dict[str, Bounds] = {
    "dropout": Bounds(0.0, 0.95),
    "learning_rate": Bounds(1e-8, 1000.0),
    "momentum": Bounds(0.0, 0.999),
    "weight_decay": Bounds(0.0, 1.0),
    "lr_decay": Bounds(0.01, 1.0),
    "warmup_epochs": Bounds(0.0, 100.0),
    "batch_size": Bounds(1, 60000, integer=True),
    "epochs": Bounds(1, 1000, integer=True),
    "seed": Bounds(0, 2**32 - 1, integer=True),
    "validation_size": Bounds(0, 50_000, integer=True),
    "stats_every": Bounds(0, 100_000, integer=True),
}
LAYER_UNITS = Bounds(1, 65536, integer=True)  # the size of each hidden layer
MAX_HIDDEN_LAYERS = 16
AUGMENT_BOUNDS: dict[str, Bounds] = {
    "shift": Bounds(0.0, 10.0),
    "rotation": Bounds(0.0, 90.0),
    "scale": Bounds(0.0, 0.9),
    "shear": Bounds(0.0, 60.0),
    "elastic_alpha": Bounds(0.0, 100.0),
    "elastic_sigma": Bounds(0.0, 20.0),
    "thickness": Bounds(0.0, 1.0),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "activation": ACTIVATIONS,
    "init": INITS,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
}


def field_bounds() -> dict[str, dict[str, Any]]:
    """Every field's allowed values as JSON: `{"min", "max", "integer"}` for a number (for
    `hidden_layers`, of each layer's size, plus `max_items`), `{"choices"}` for a name; the
    augmentation fields are named `augmentation.<field>`."""

    def describe(bounds: Bounds) -> dict[str, Any]:
        return {"min": bounds.low, "max": bounds.high, "integer": bounds.integer}

    return {
        "hidden_layers": {**describe(LAYER_UNITS), "max_items": MAX_HIDDEN_LAYERS},
        **{name: describe(bounds) for name, bounds in FIELD_BOUNDS.items()},
        **{f"augmentation.{name}": describe(bounds) for name, bounds in AUGMENT_BOUNDS.items()},
        **{name: {"choices": list(choices)} for name, choices in CHOICES.items()},
    }


@dataclass(frozen=True)
class AugmentConfig:
    """Random distortions applied to each training batch (all zero: no augmentation).

    shift: max translation in pixels; rotation: max degrees; scale: max relative zoom (0.1 = +-10%);
    shear: max degrees; elastic_alpha/elastic_sigma: strength and smoothness (pixels) of elastic
    displacement fields (Simard et al. 2003); thickness: probability of thinning or thickening strokes.
    """

    shift: float = 0.0
    rotation: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 0.0
    thickness: float = 0.0

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in dataclasses.fields(self))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; same seed + same config + same data => same result."""

    hidden_layers: tuple[int, ...] = (128,)
    activation: str = "relu"
    init: str = "auto"
    batch_norm: bool = False
    dropout: float = 0.0
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay: float = 0.5
    warmup_epochs: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    # The last `validation_size` training digits are held out: never trained on, the per-epoch
    # val_* metrics and every choice (the epoch to keep, the best run) come from them; 0 trains
    # on all 60,000 and reports no validation (engine/data/split.py).
    validation_size: int = 5000
    # Layer statistics (engine/inside.py) every `stats_every` steps and after every epoch; 0: off.
    # They never change the training itself. The default keeps their cost under 3% (docs/inside.md).
    stats_every: int = 250
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    preset: str | None = None

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden_layers"] = list(self.hidden_layers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None) -> TrainConfig:
        """Build a config from a preset name plus overrides, validating every field."""
        if data is not None and not isinstance(data, dict):
            raise ConfigError(
                f"a config must be a JSON object like {{\"preset\": \"default\"}}, "
                f"got {type(data).__name__}"
            )
        data = dict(data or {})
        preset = data.pop("preset", None)
        base = preset_config(preset if preset is not None else "default")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"unknown config field(s) {', '.join(map(shown, unknown))}; known "
                              f"fields: {known}")
        values = base.to_dict()
        values.update({k: v for k, v in data.items() if v is not None})
        values["preset"] = preset if preset is not None else base.preset
        return _validated(values)

    def replace(self, **changes: Any) -> TrainConfig:
        values = self.to_dict()
        values.update(changes)
        return _validated(values)


@functools.cache
def preset_config(name: str) -> TrainConfig:
    """The TrainConfig of a preset (engine.presets), or a ConfigError listing the presets that exist."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {shown(name)}; available presets: {', '.join(PRESETS)}",
                          "preset")
    return _validated({**TrainConfig().to_dict(), **PRESETS[name].fields, "preset": name})


# --- validation --------------------------------------------------------------------------------
def _field(name: str) -> str:
    """The field a `_number` name refers to: `hidden_layers[]` is an item of `hidden_layers`."""
    return name.removesuffix("[]")


def _number(name: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be {kind} between {low:g} and {high:g}, got {shown(value)}",
                          _field(name))
    if integer and (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{name} must be a whole number, got {shown(value)}", _field(name))
    if not math.isfinite(value) or not (low <= value <= high):
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {shown(value)}",
                          _field(name))
    return int(value) if integer else float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {shown(value)}", name)
    return value


def _validated(v: dict[str, Any]) -> TrainConfig:
    layers = v["hidden_layers"]
    if isinstance(layers, (int, str)) or not isinstance(layers, (list, tuple)):
        raise ConfigError("hidden_layers must be a list of layer sizes like [128, 64], got "
                          f"{shown(layers)}", "hidden_layers")
    if len(layers) > MAX_HIDDEN_LAYERS:
        raise ConfigError(
            f"hidden_layers may have at most {MAX_HIDDEN_LAYERS} layers, got {len(layers)}",
            "hidden_layers")
    hidden = tuple(_number("hidden_layers[]", n, *LAYER_UNITS) for n in layers)

    augmentation = v.get("augmentation") or {}
    if isinstance(augmentation, AugmentConfig):
        augmentation = dataclasses.asdict(augmentation)
    if not isinstance(augmentation, dict):
        raise ConfigError(f"augmentation must be an object, got {shown(augmentation)}", "augmentation")
    unknown = sorted(set(augmentation) - set(AUGMENT_BOUNDS))
    if unknown:
        raise ConfigError(f"unknown augmentation field(s) {', '.join(map(shown, unknown))}; known: "
                          f"{', '.join(AUGMENT_BOUNDS)}", "augmentation")
    augment = AugmentConfig(
        **{
            k: _number(f"augmentation.{k}", augmentation.get(k, 0.0), *AUGMENT_BOUNDS[k])
            for k in AUGMENT_BOUNDS
        }
    )
    if not isinstance(v["batch_norm"], bool):
        raise ConfigError(f"batch_norm must be true or false, got {shown(v['batch_norm'])}",
                          "batch_norm")
    preset = v.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"preset must be a preset name, got {shown(preset)}", "preset")

    checked: dict[str, Any] = {}
    for name in (f.name for f in dataclasses.fields(TrainConfig)):  # in order: the first error wins
        if name in CHOICES:
            checked[name] = _choice(name, v[name], CHOICES[name])
        elif name in FIELD_BOUNDS:
            checked[name] = _number(name, v[name], *FIELD_BOUNDS[name])
    return TrainConfig(
        hidden_layers=hidden, batch_norm=v["batch_norm"], augmentation=augment, preset=preset,
        **checked,
    )
