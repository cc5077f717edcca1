"""A sweep's search space: which config fields vary, over what, checked against the fields' bounds.

Each swept field is a `Range` (numbers between `low` and `high`, on a log scale or in steps) or a
`Choice` (a list of values). The same space comes from the API as JSON and from the command line
as text, and is checked against the same bounds the run form uses (GET /api/options `fields`: the
engine's bounds, tightened by the server's limits), so a space that passes here can only produce
configs the engine accepts:

    JSON (POST /api/sweeps)                               command line (mnist-lab sweep --space)
    {"learning_rate": {"min": 0.001, "max": 0.3, "log": true}}       learning_rate=log:0.001:0.3
    {"batch_size": {"min": 32, "max": 256, "step": 32}}              batch_size=32:256:32
    {"hidden_layers": {"values": [[128], [256], [512, 256]]}}        hidden_layers=[128];[256];[512,256]
    {"activation": {"values": ["relu", "tanh"]}}                     activation=relu;tanh

Optuna's distributions hold only plain values, so a choice of lists (hidden layer sizes) is
handed to it as the lists' JSON text and read back by `decode`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import TrainConfig

MAX_CHOICES = 64  # values of one swept field
MAX_GRID_POINTS = 10_000  # configurations a grid may enumerate
BOOLEAN_FIELDS = ("batch_norm",)  # swept as {"values": [true, false]}


class SpaceError(ValueError):
    """A search space that cannot be swept; the message names the field and what would do."""


@dataclass(frozen=True)
class Range:
    """Numbers from `low` to `high`, uniformly or on a log scale, whole numbers if `integer`,
    in steps of `step` from `low` if given."""

    low: float
    high: float
    log: bool = False
    integer: bool = False
    step: float | None = None

    def grid(self) -> list[float | int] | None:
        """Every value the range holds, if it holds finitely many; None otherwise."""
        if self.step is None and not self.integer:
            return None
        step = self.step or 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        if count > MAX_GRID_POINTS:
            return None
        values = [self.low + index * step for index in range(count)]
        return [int(round(v)) for v in values] if self.integer else [round(v, 12) for v in values]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min": self.low, "max": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Choice:
    """One of `values`."""

    values: tuple[Any, ...]

    def grid(self) -> list[Any]:
        return list(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"values": [list(v) if isinstance(v, tuple) else v for v in self.values]}


Param = Range | Choice
Space = dict[str, Param]  # field name (augmentation fields as "augmentation.<name>") -> its values


# --- reading a space -----------------------------------------------------------------------------
def parse_space(raw: Any, fields: Mapping[str, Mapping[str, Any]]) -> Space:
    """A space from its JSON form, checked against `fields` (GET /api/options `fields`)."""
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError('space must be an object with at least one field to sweep, like '
                         '{"learning_rate": {"min": 0.001, "max": 0.3, "log": true}}')
    space: Space = {}
    for name, spec in raw.items():
        space[name] = parse_param(name, spec, fields)
    return space


def parse_param(name: str, spec: Any, fields: Mapping[str, Mapping[str, Any]]) -> Param:
    """One swept field from its JSON form."""
    bounds = _bounds_of(name, fields)
    where = f"space.{name}"
    if not isinstance(spec, Mapping):
        raise SpaceError(f'{where} must be an object: {{"min": ..., "max": ...}} for a range or '
                         f'{{"values": [...]}} for a list, got {_shown(spec)}')
    keys = set(spec)
    if "values" in keys:
        if keys - {"values"}:
            raise SpaceError(f"{where}: give either values or min/max, not both "
                             f"(extra: {', '.join(sorted(keys - {'values'}))})")
        return _choice(name, spec["values"], bounds, where)
    unknown = keys - {"min", "max", "log", "step"}
    if unknown or not {"min", "max"} <= keys:
        raise SpaceError(f'{where} must be {{"min": ..., "max": ...}} (with "log": true or a "step" '
                         f'if wanted) or {{"values": [...]}}; got the keys {", ".join(sorted(keys))}')
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}.log must be true or false, got {_shown(log)}")
    return _range(name, spec["min"], spec["max"], log, spec.get("step"), bounds, where)


def parse_cli_param(text: str, fields: Mapping[str, Mapping[str, Any]]) -> tuple[str, Param]:
    """One `--space` option: `name=[log:]MIN:MAX[:STEP]` or `name=A;B;C` (each value JSON, or a
    plain word such as relu)."""
    name, equals, values = text.partition("=")
    name, values = name.strip(), values.strip()
    if not equals or not name or not values:
        raise SpaceError(f"--space {text!r}: write NAME=MIN:MAX, NAME=log:MIN:MAX or NAME=A;B;C, "
                         "e.g. learning_rate=log:0.001:0.3 or 'hidden_layers=[128];[256]'")
    bounds = _bounds_of(name, fields)
    where = f"--space {name}"
    if ";" in values or ":" not in values:  # no value of a choice holds a colon
        items = [_cli_value(item.strip()) for item in values.split(";") if item.strip()]
        return name, _choice(name, items, bounds, where)
    parts = values.split(":")
    log = parts[0] == "log"
    if log:
        parts = parts[1:]
    if len(parts) not in (2, 3):
        raise SpaceError(f"{where}: a range is MIN:MAX, log:MIN:MAX or MIN:MAX:STEP, got {values!r}")
    try:
        numbers = [json.loads(part) for part in parts]
    except json.JSONDecodeError:
        raise SpaceError(f"{where}: {values!r} is not MIN:MAX with numbers") from None
    step = numbers[2] if len(numbers) == 3 else None
    return name, _range(name, numbers[0], numbers[1], log, step, bounds, where)


def _cli_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a name: relu, adam, cosine


def _bounds_of(name: Any, fields: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    if name in BOOLEAN_FIELDS:
        return {"boolean": True}
    if not isinstance(name, str) or name not in fields:
        sweepable = ", ".join([*fields, *BOOLEAN_FIELDS])
        raise SpaceError(f"{_shown(name)} is not a config field that can be swept; these can: "
                         f"{sweepable}")
    return fields[name]


def _range(name: str, low: Any, high: Any, log: bool, step: Any, bounds: Mapping[str, Any],
           where: str) -> Range:
    if "min" not in bounds or name == "hidden_layers":
        kind = "true/false" if bounds.get("boolean") else (
            "lists of layer sizes" if name == "hidden_layers" else "names")
        raise SpaceError(f"{where} takes {kind}, not a range: give {{\"values\": [...]}}")
    integer = bool(bounds.get("integer"))
    for label, value in (("min", low), ("max", high)):
        _check_number(f"{where}.{label}", value, bounds)
    if not low < high:
        raise SpaceError(f"{where}: min ({low:g}) must be below max ({high:g}); to fix a value, set "
                         "it in the base config instead")
    if log and low <= 0:
        raise SpaceError(f"{where}: a log range needs min above 0, got {low:g}")
    if step is not None:
        if log:
            raise SpaceError(f"{where}: a range is either log or in steps, not both")
        if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step) \
                or step <= 0:
            raise SpaceError(f"{where}.step must be a number above 0, got {_shown(step)}")
        if integer and not float(step).is_integer():
            raise SpaceError(f"{where}.step must be a whole number ({name} is), got {step:g}")
        if step > high - low:
            raise SpaceError(f"{where}.step ({step:g}) is larger than the range ({low:g} to {high:g})")
        step = int(step) if integer else float(step)
    cast = int if integer else float
    return Range(cast(low), cast(high), log, integer, step)


def _choice(name: str, values: Any, bounds: Mapping[str, Any], where: str) -> Choice:
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{where}.values must be a non-empty list, got {_shown(values)}")
    if len(values) > MAX_CHOICES:
        raise SpaceError(f"{where}.values has {len(values)} values; at most {MAX_CHOICES} are allowed")
    checked = tuple(_value(name, value, bounds, f"{where}.values[{index}]")
                    for index, value in enumerate(values))
    if len(set(checked)) < len(checked):
        raise SpaceError(f"{where}.values lists a value twice: {_shown(values)}")
    return Choice(checked)


def _value(name: str, value: Any, bounds: Mapping[str, Any], where: str) -> Any:
    """One value of a choice, checked and made hashable (a list of layer sizes: a tuple)."""
    if bounds.get("boolean"):
        if not isinstance(value, bool):
            raise SpaceError(f"{where} must be true or false, got {_shown(value)}")
        return value
    if "choices" in bounds:
        if value not in bounds["choices"]:
            raise SpaceError(f"{where} must be one of {', '.join(bounds['choices'])}; got {_shown(value)}")
        return value
    if name == "hidden_layers":
        if not isinstance(value, list):
            raise SpaceError(f"{where} must be a list of layer sizes like [256, 128], got {_shown(value)}")
        if len(value) > bounds["max_items"]:
            raise SpaceError(f"{where} has {len(value)} layers; at most {bounds['max_items']} are allowed")
        for size in value:
            _check_number(where, size, bounds)
        return tuple(int(size) for size in value)
    _check_number(where, value, bounds)
    return int(value) if bounds.get("integer") else float(value)


def _check_number(where: str, value: Any, bounds: Mapping[str, Any]) -> None:
    low, high, integer = bounds["min"], bounds["max"], bool(bounds.get("integer"))
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(f"{where} must be {kind} from {low:g} to {high:g}, got {_shown(value)}")
    if integer and not float(value).is_integer():
        raise SpaceError(f"{where} must be a whole number, got {value:g}")
    if not low <= value <= high:
        raise SpaceError(f"{where} must be from {low:g} to {high:g}, got {value:g}")


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# --- using a space ---------------------------------------------------------------------------------
def encode(value: Any) -> Any:
    """A choice's value as Optuna holds it: plain values as they are, lists as JSON text."""
    return json.dumps(list(value)) if isinstance(value, tuple) else value


def decode(name: str, value: Any) -> Any:
    """A value Optuna suggested for `name` as the config takes it."""
    if name == "hidden_layers" and isinstance(value, str):
        return json.loads(value)
    return value


def grid_of(space: Space) -> dict[str, list[Any]] | None:
    """Every field's finite list of values (as Optuna holds them), or None if some range is
    continuous."""
    grid = {}
    for name, param in space.items():
        values = param.grid()
        if values is None:
            return None
        grid[name] = [encode(value) for value in values]
    return grid


def grid_size(grid: Mapping[str, list[Any]]) -> int:
    return math.prod(len(values) for values in grid.values())


def configure(base: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """The base config with the swept fields set to `params` (ConfigError if the engine refuses)."""
    changes: dict[str, Any] = {}
    augmentation = base.to_dict()["augmentation"]
    for name, value in params.items():
        if name.startswith("augmentation."):
            augmentation[name.removeprefix("augmentation.")] = value
            changes["augmentation"] = augmentation
        else:
            changes[name] = list(value) if isinstance(value, tuple) else value
    return base.replace(**changes)


def params_of(config: Mapping[str, Any], space: Space) -> dict[str, Any]:
    """The swept fields' values in a config (as stored, a dict)."""
    params = {}
    for name in space:
        if name.startswith("augmentation."):
            params[name] = config.get("augmentation", {}).get(name.removeprefix("augmentation."))
        else:
            params[name] = config.get(name)
    return params


def space_to_json(space: Space) -> dict[str, dict[str, Any]]:
    return {name: param.to_json() for name, param in space.items()}
