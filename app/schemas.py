"""The API's shapes as Pydantic models: the request bodies it validates and the answers it
sends. Routes return these models and declare them as `response_model`, so FastAPI checks every
answer against its schema, and an answer model refuses fields it does not declare (`Answer`):
an answer cannot drift from what OpenAPI (/docs) documents. docs/API.md is the prose version."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.runs.state import RunStatus
from app.sweeps.record import SweepStatus
from app.sweeps.space import MAX_CHOICES
from app.sweeps.spec import METRICS, Method, Pruner
from engine.config import AUGMENT_BOUNDS
from engine.events import EpochEvent


class Answer(BaseModel):
    """What the server sends: exactly the declared fields, nothing else. Instances are checked
    again wherever they are validated (FastAPI validates each answer against its route's
    `response_model`), so one built without validation cannot slip through either."""

    model_config = ConfigDict(extra="forbid", revalidate_instances="always")


def _range(name: str) -> str:
    bounds = AUGMENT_BOUNDS[name]
    return f"({bounds.low:g}..{bounds.high:g})"


class Augmentation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shift: float | None = Field(None, description=f"max translation in pixels {_range('shift')}")
    rotation: float | None = Field(None, description=f"max rotation in degrees {_range('rotation')}")
    scale: float | None = Field(None, description=f"max relative zoom {_range('scale')}")
    shear: float | None = Field(None, description=f"max shear in degrees {_range('shear')}")
    elastic_alpha: float | None = Field(
        None, description=f"elastic distortion strength {_range('elastic_alpha')}")
    elastic_sigma: float | None = Field(
        None, description=f"elastic distortion smoothness {_range('elastic_sigma')}")
    thickness: float | None = Field(
        None, description=f"probability of thinning/thickening strokes {_range('thickness')}")


class RunConfig(BaseModel):
    """A run config: every field optional over the preset (default preset: `default`).
    Validated by the engine's TrainConfig, whose message comes back as a 422 detail."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"preset": "default", "epochs": 3},
        {"hidden_layers": [256, 128], "activation": "relu", "optimizer": "adam",
         "learning_rate": 0.001, "batch_size": 64, "epochs": 5, "dropout": 0.2, "seed": 1},
    ]})

    preset: str | None = Field(None, description="starting point; GET /api/options lists them")
    hidden_layers: list[int] | None = Field(None, description="hidden layer sizes, e.g. [256, 128]")
    activation: str | None = None
    init: str | None = None
    batch_norm: bool | None = None
    dropout: float | None = None
    optimizer: str | None = None
    learning_rate: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    lr_schedule: str | None = None
    lr_decay: float | None = None
    warmup_epochs: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    seed: int | None = None
    augmentation: Augmentation | None = None


def _answer_of(event: type, name: str, doc: str) -> type[Answer]:
    """An answer model with exactly the fields (and types) of an engine event dataclass."""
    hints = get_type_hints(event)
    fields: dict[str, Any] = {f.name: (hints[f.name], ...) for f in dataclasses.fields(event)}
    return create_model(name, __base__=Answer, __doc__=doc, **fields)


Epoch = _answer_of(EpochEvent, "Epoch", "One finished epoch: the engine's EpochEvent, field for field.")


class Progress(Answer):
    epoch: int = Field(description="the epoch of the latest step (0 before the first)")
    epochs: int
    step: int = Field(description="steps done so far")
    steps_per_epoch: int
    steps_total: int
    samples_per_second: float | None
    eta_s: float | None


class RunSummary(Answer):
    """A run as listed: everything but its per-epoch metrics."""

    id: int
    status: RunStatus
    config: dict
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    reason: str | None
    progress: Progress
    best_val_accuracy: float | None
    test_accuracy: float | None
    has_model: bool
    is_active_model: bool
    sweep_id: int | None = Field(description="the sweep this run is a trial of; null: a run of its own")
    trial: int | None = Field(description="its trial number in that sweep (Optuna's, from 0)")


class Run(RunSummary):
    epochs: list[Epoch]


class RunList(Answer):
    runs: list[RunSummary]
    active_model_run_id: int | None
    revision: int = Field(description="Grows whenever this list changes (WS /ws/runs says when); "
                                      "starts again from 0 when the server restarts")


class Point(Answer):
    step: int
    epoch: int
    loss: float


class Metrics(Answer):
    iterations: list[Point]
    epochs: list[Epoch]


class Misclassified(Answer):
    index: int = Field(description="index in the test set")
    true: int
    predicted: int
    confidence: float
    runner_up: int = Field(description="the model's second choice")
    runner_up_confidence: float = Field(description="the probability of its second choice")
    pixels: list[int] = Field(description="784 ints 0..255, row-major")


class Evaluation(Answer):
    accuracy: float
    samples: int
    confusion_matrix: list[list[int]] = Field(description="10x10, rows = true digit")
    per_class_accuracy: list[float]
    misclassified: list[Misclassified]
    misclassified_total: int = Field(description="every misclassified test digit")


class MisclassifiedPage(Answer):
    total: int = Field(description="misclassified test digits that match the filter")
    offset: int
    items: list[Misclassified]


class Weights(Answer):
    units: int
    offset: int = Field(description="the unit of the first image")
    images: list[list[float]]


class ActiveModel(Answer):
    run_id: int | None
    chosen_by: Literal["user", "best"] | None


class ActiveModelChoice(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"run_id": 3}]})

    run_id: int | None = Field(description="the run whose model /predict uses; null: the best one")


class Prediction(BaseModel):
    digit: int
    probabilities: list[float]
    run_id: int
    input: list[float] | None = Field(None, description="the 784 values (0..1) the model saw")


class BatchPrediction(BaseModel):
    predictions: list[Prediction]
    run_id: int


class Health(Answer):
    status: Literal["ok"]
    version: str


class Preset(Answer):
    name: str
    description: str
    config: dict


class FieldBounds(Answer):
    """The values a config field may take on this server (engine bounds tightened by limits)."""

    min: int | float | None = Field(None, description="smallest value (of each item of a list)")
    max: int | float | None = Field(None, description="largest value (of each item of a list)")
    integer: bool | None = Field(None, description="whole numbers only")
    max_items: int | None = Field(None, description="longest list (hidden_layers)")
    choices: list[str] | None = Field(None, description="the allowed names")


class SweepOptions(Answer):
    methods: list[str]
    pruners: list[str]
    metrics: dict[str, Literal["maximize", "minimize"]] = Field(
        description="the metrics a sweep may optimise, and in which direction")
    statuses: list[str]


class Options(Answer):
    presets: list[Preset]
    choices: dict[str, list[str]]
    fields: dict[str, FieldBounds] = Field(description=(
        "per config field: {min, max, integer} for numbers (hidden_layers: of each layer's size, "
        "plus max_items), {choices} for names; augmentation fields as 'augmentation.<name>'"))
    limits: dict[str, int | float | None]
    auth_required: bool
    cli_flags: dict[str, str] = Field(description=(
        "config field -> the `mnist-lab train` option that sets it (augmentation fields as "
        "'augmentation.<name>'; booleans also take `--no-<option>`)"))
    statuses: list[RunStatus] = Field(description="every status a run may have")
    active_statuses: list[RunStatus] = Field(description="the statuses of a run that may change")
    sweeps: SweepOptions


class Error(Answer):
    detail: str


# --- sweeps -------------------------------------------------------------------------------------------
StrictInt = Annotated[int, Field(strict=True)]
MAX_SWEPT_FIELDS = 24


class SpaceParam(BaseModel):
    """How one config field varies: a range (`min`, `max`, optionally `log` or `step`) or a
    list of `values`. Checked against GET /api/options `fields`."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(None, description="lowest value of a range")
    max: float | None = Field(None, description="highest value of a range")
    log: bool | None = Field(None, description="sample the range on a log scale")
    step: float | None = Field(None, description="values from min in steps of this")
    values: list[Any] | None = Field(None, max_length=MAX_CHOICES,
                                     description="the values to try (hidden_layers: lists of sizes)")


class SweepCreate(BaseModel):
    """A sweep: trials of `base` with the `space`'s fields varied, searched by `method`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "learning rate and width", "base": {"preset": "fast", "epochs": 4},
        "space": {"learning_rate": {"min": 0.001, "max": 0.3, "log": True},
                  "hidden_layers": {"values": [[128], [256], [512, 256]]},
                  "batch_size": {"values": [64, 128, 256]}},
        "method": "tpe", "trials": 12, "metric": "val_accuracy", "pruner": "median",
        "max_concurrent": 2}]})

    name: str | None = Field(None, max_length=120, description="default: the method and fields")
    base: RunConfig | Annotated[str, Field(max_length=64)] = Field(
        "default", description="the config every trial starts from: a run config or a preset name")
    space: dict[str, SpaceParam] = Field(max_length=MAX_SWEPT_FIELDS)
    method: Method = "tpe"
    trials: StrictInt | None = Field(None, description="trials to train (default 12; a grid: all "
                                                        "its configurations)")
    metric: Literal[tuple(METRICS)] = "val_accuracy"  # type: ignore[valid-type]
    pruner: Pruner = "none"
    max_concurrent: StrictInt | None = Field(None, description="trials training at once (default: "
                                                                "the server's max_concurrent_runs)")
    seed: StrictInt = Field(0, description="the sampler's seed")


class SweepSpec(Answer):
    """What the sweep was asked to do, resolved: the base as a full config."""

    name: str
    base: dict
    space: dict[str, dict[str, Any]]
    method: Method
    trials: int
    metric: str
    pruner: Pruner
    max_concurrent: int
    seed: int


class SweepTrial(Answer):
    trial: int = Field(description="Optuna's trial number, from 0")
    run_id: int = Field(description="the run that trains it: open, compare or predict with it")
    status: RunStatus
    reason: str | None
    params: dict[str, Any] = Field(description="the swept fields' values")
    config: dict
    value: float | None = Field(description="the metric after its latest epoch")
    epochs: int = Field(description="epochs it finished")
    pruned: bool


class SweepProgress(Answer):
    planned: int = Field(description="trials the sweep trains")
    finished: int = Field(description="trials that ended and count (interrupted ones are redone)")
    running: int = Field(description="trials queued or training")
    pruned: int
    failed: int
    epochs_trained: int
    epochs_pruned: int = Field(description="epochs the pruned trials did not train")


class SweepSummary(Answer):
    id: int
    name: str
    status: SweepStatus
    reason: str | None
    created_at: str
    finished_at: str | None
    spec: SweepSpec
    progress: SweepProgress
    best_trial: SweepTrial | None = Field(description="the completed trial with the best metric")


class Sweep(SweepSummary):
    trials: list[SweepTrial] = Field(description="every trial, by trial number")


class SweepList(Answer):
    sweeps: list[SweepSummary]


PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {
                "pixels": {"description": "784 numbers in 0..1, or a list of such lists",
                           "type": "array", "items": {}},
                "image": {"type": "string", "description": "data URL or base64 of a PNG/JPEG"},
                "run_id": {"type": "integer", "description": "default: the active model"},
            }},
            "examples": {
                "pixels": {"value": {"pixels": [0.0] * 300 + [1.0] * 184 + [0.0] * 300}},
                "image": {"value": {"image": "data:image/png;base64,iVBORw0KGgo..."}},
            },
        },
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"},
                "run_id": {"type": "integer"},
            }, "required": ["file"]},
        },
    },
}
