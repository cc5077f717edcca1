"""What a sweep is asked to do, checked once for both drivers (the server and `mnist-lab sweep`).

A `SweepSpec` is a base config, a search space (app/sweeps/space.py), how to search it (`method`),
how many trials, the metric to optimise, the pruner that stops hopeless trials early, and how many
trials may train at once. `make_spec` builds one from what a user typed and refuses, with a message
naming the field, whatever cannot be swept; `SweepSpec.to_json`/`from_json` store it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from app.sweeps.space import (
    Choice,
    Range,
    Space,
    SpaceError,
    configure,
    grid_of,
    grid_size,
    parse_space,
    space_to_json,
)
from engine.config import ConfigError, TrainConfig
from engine.footprint import estimated_memory_bytes

Method = Literal["grid", "random", "tpe"]
Pruner = Literal["none", "median", "asha"]
METHODS: tuple[str, ...] = get_args(Method)
PRUNERS: tuple[str, ...] = get_args(Pruner)
# The metrics a sweep may optimise (an epoch's fields), and in which direction.
METRICS: dict[str, Literal["maximize", "minimize"]] = {"val_accuracy": "maximize",
                                                        "val_loss": "minimize"}
MAX_NAME = 120


@dataclass(frozen=True)
class SweepSpec:
    name: str
    base: TrainConfig
    space: Space
    method: Method = "tpe"
    trials: int = 12
    metric: str = "val_accuracy"
    pruner: Pruner = "none"
    max_concurrent: int = 1
    seed: int = 0  # the sampler's; each trial's training seed is the base config's (or swept)

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return METRICS[self.metric]

    def better(self, a: float, b: float) -> bool:
        """Whether value `a` of the metric beats `b`."""
        return a > b if self.direction == "maximize" else a < b

    def to_json(self) -> dict[str, Any]:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**data, "base": self.base.to_dict(), "space": space_to_json(self.space)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], fields: Mapping[str, Mapping[str, Any]]) -> SweepSpec:
        """A stored spec (checked again: the bounds it was made with may have changed)."""
        base = TrainConfig.from_dict(dict(data["base"]))
        return cls(**{**data, "base": base, "space": parse_space(data["space"], fields)})


def make_spec(*, base: TrainConfig, space: Mapping[str, Any] | Space,
              fields: Mapping[str, Mapping[str, Any]], name: str | None = None,
              method: str = "tpe", trials: int | None = None, metric: str = "val_accuracy",
              pruner: str = "none", max_concurrent: int = 1, seed: int = 0,
              max_trials: int = 1000, max_concurrent_limit: int = 64,
              check_config: Callable[[TrainConfig], None] | None = None) -> SweepSpec:
    """A checked spec; SpaceError (a 422) with what is wrong otherwise. `space` is JSON (the API)
    or already parsed (the command line); `fields` the bounds it must keep to; `check_config`
    refuses a config over the server's size limits (it is tried on the largest the space holds)."""
    if not isinstance(space, Mapping) or not all(isinstance(p, Range | Choice) for p in space.values()) \
            or not space:
        space = parse_space(space, fields)
    if method not in METHODS:
        raise SpaceError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if pruner not in PRUNERS:
        raise SpaceError(f"pruner must be one of {', '.join(PRUNERS)}; got {pruner!r}")
    if metric not in METRICS:
        raise SpaceError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if method == "grid":
        grid = grid_of(space)
        if grid is None:
            continuous = next(n for n, p in space.items() if p.grid() is None)
            raise SpaceError(f"a grid needs a finite list of values for every field, and "
                             f"{continuous} is a continuous range: give it a list of values "
                             f"({{\"values\": [...]}}; on the command line A;B;C) or a step, or use "
                             "method random or tpe")
        points = grid_size(grid)
        if trials is None:
            trials = points
        elif trials > points:
            raise SpaceError(f"trials must be at most {points} for this grid (the configurations "
                             f"it holds), got {trials}")
    trials = 12 if trials is None else trials
    if not 1 <= trials <= max_trials:
        hint = " (a grid has one per configuration: use fewer values)" if method == "grid" else ""
        raise SpaceError(f"trials must be from 1 to {max_trials}, got {trials}{hint}")
    if not 1 <= max_concurrent <= max_concurrent_limit:
        raise SpaceError(f"max_concurrent must be from 1 to {max_concurrent_limit}, got {max_concurrent}")
    if not 0 <= seed < 2**32:
        raise SpaceError(f"seed must be from 0 to {2**32 - 1}, got {seed}")
    if "validation_size" in space:
        raise SpaceError("validation_size cannot vary in a sweep: its trials are compared on one "
                         "held-out validation set")
    if base.validation_size == 0:
        raise SpaceError(f"a sweep optimises {metric}, measured on the held-out validation set: "
                         "validation_size must be above 0")
    name = (name or "").strip() or f"{method} over {', '.join(space)}"
    if len(name) > MAX_NAME:
        raise SpaceError(f"name must be at most {MAX_NAME} characters, got {len(name)}")
    for config in probe_configs(base, space):
        if check_config is not None:
            check_config(config)
    return SweepSpec(name, base, space, method, trials, metric, pruner, max_concurrent, seed)


# What makes a trial large: its memory, and its steps (epochs over the batch size).
COSTS: tuple[Callable[[TrainConfig], float], ...] = (
    estimated_memory_bytes, lambda config: config.epochs / config.batch_size)


def probe_configs(base: TrainConfig, space: Space) -> list[TrainConfig]:
    """Configs that stand for the whole space: each field at each of its values (a range at both
    ends) over the base, and the largest combinations (every field at its value that needs the
    most memory; at its value that makes the most steps). If these pass the engine and the
    server's limits, so does every trial."""
    configs, corners = [], [{} for _ in COSTS]
    for name, param in space.items():
        values = param.values if isinstance(param, Choice) else (param.low, param.high)
        largest: list[tuple[float, object] | None] = [None for _ in COSTS]
        for value in values:
            try:
                config = configure(base, {name: value})
            except ConfigError as error:
                raise SpaceError(f"space.{name}: {error}") from None
            configs.append(config)
            for index, cost in enumerate(COSTS):
                if largest[index] is None or cost(config) > largest[index][0]:
                    largest[index] = (cost(config), value)
        for corner, (_, value) in zip(corners, largest, strict=True):
            corner[name] = value
    for corner in corners:
        try:
            configs.append(configure(base, corner))
        except ConfigError as error:
            raise SpaceError(f"the space's largest configuration is refused: {error}") from None
    return configs
