"""The API's shapes as Pydantic models: the request bodies it validates and the answers it
sends. Routes return these models and declare them as `response_model`, so FastAPI checks every
answer against its schema, and an answer model refuses fields it does not declare (`Answer`):
an answer cannot drift from what OpenAPI (/docs) documents. docs/API.md is the prose version."""

from __future__ import annotations

import base64
import dataclasses
import io
import unicodedata
from typing import Annotated, Any, Literal, get_type_hints

from PIL import Image, ImageDraw
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    WrapValidator,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.predictor import N_PIXELS
from app.runs.state import RunStatus
from app.sweeps.record import SweepStatus
from app.sweeps.space import MAX_CHOICES
from app.sweeps.spec import METRICS, Method, Pruner
from engine.config import AUGMENT_BOUNDS, shown
from engine.events import EpochEvent

# The largest id or step a request may name: the largest whole number every JSON reader holds
# exactly (JavaScript's Number.MAX_SAFE_INTEGER; SQLite's integers go to 2**63 - 1, but a bound
# above 2**53 is read as a float by many clients and fuzzers, so they could not keep to it).
MAX_ID = 2**53 - 1


def _a_number(value: Any) -> Any:
    """JSON numbers only: `true` or `"64"` is refused, not read as 1 or 64 (the engine would
    refuse them too; this says so before anything is coerced)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "true/false" if isinstance(value, bool) else type(value).__name__
        raise PydanticCustomError("number_type", "must be a JSON number, not {kind} ({value})",
                                  {"kind": "a string" if kind == "str" else kind, "value": shown(value)})
    return value


# Whole numbers (3.0 counts, as in JSON Schema; 3.5 does not) and numbers, never a bool or a string.
Integer = Annotated[int, BeforeValidator(_a_number)]
Number = Annotated[float, BeforeValidator(_a_number)]
Name = Annotated[str, StringConstraints(strict=True, max_length=64)]  # a preset or choice name


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

    shift: Number | None = Field(None, description=f"max translation in pixels {_range('shift')}")
    rotation: Number | None = Field(None, description=f"max rotation in degrees {_range('rotation')}")
    scale: Number | None = Field(None, description=f"max relative zoom {_range('scale')}")
    shear: Number | None = Field(None, description=f"max shear in degrees {_range('shear')}")
    elastic_alpha: Number | None = Field(
        None, description=f"elastic distortion strength {_range('elastic_alpha')}")
    elastic_sigma: Number | None = Field(
        None, description=f"elastic distortion smoothness {_range('elastic_sigma')}")
    thickness: Number | None = Field(
        None, description=f"probability of thinning/thickening strokes {_range('thickness')}")


class RunConfig(BaseModel):
    """A run config: every field optional over the preset (default preset: `default`).
    Validated by the engine's TrainConfig, whose message comes back as a 422 detail."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"preset": "default", "epochs": 3},
        {"hidden_layers": [256, 128], "activation": "relu", "optimizer": "adam",
         "learning_rate": 0.001, "batch_size": 64, "epochs": 5, "dropout": 0.2, "seed": 1},
    ]})

    preset: Name | None = Field(None, description="starting point; GET /api/options lists them")
    hidden_layers: list[Integer] | None = Field(None, description="hidden layer sizes, e.g. [256, 128]")
    activation: Name | None = None
    init: Name | None = None
    batch_norm: StrictBool | None = None
    dropout: Number | None = None
    optimizer: Name | None = None
    learning_rate: Number | None = None
    momentum: Number | None = None
    weight_decay: Number | None = None
    lr_schedule: Name | None = None
    lr_decay: Number | None = None
    warmup_epochs: Number | None = None
    batch_size: Integer | None = None
    epochs: Integer | None = None
    seed: Integer | None = None
    validation_size: Integer | None = Field(
        None, description="training digits held out for validation, the last ones (default 5000; "
                          "0: train on all and report no validation)")
    stats_every: Integer | None = Field(
        None, description="layer statistics every this many steps and after every epoch "
                          "(default 100; 0: none)")
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


class Samples(Answer):
    """The digits of a run: trained on, held out for validation, tested on once at the end."""

    train: int
    validation: int = Field(description="0: nothing held out, no validation")
    test: int


class Divergence(Answer):
    """Where a run diverged (engine.events.Divergence)."""

    step: int = Field(description="the first step whose loss was not finite or above 100; no "
                                  "update was made from it, so it is not among the stored steps")
    loss: float | None = Field(description="that loss; null when it was not a finite number")


class Unstored(Answer):
    """What the server holds for a run that is not stored yet: the data dir refused it (full or
    read-only). It is kept in order and stored, then streamed, as soon as the disk takes it."""

    steps: int = Field(description="steps taken but not stored yet (nor streamed)")
    epochs: int = Field(description="finished epochs not stored yet (nor streamed)")
    problem: str = Field(description="why: what is wrong with the data dir")


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
    samples: Samples
    best_val_accuracy: float | None = Field(description="the best epoch's, on the validation set")
    test_accuracy: float | None = Field(
        description="the kept model's (model_epoch), on the test set, measured once at the end")
    test_loss: float | None
    model_epoch: int | None = Field(description=(
        "the epoch whose weights the run's model holds: the best on validation (selected on "
        "validation), or the latest one when nothing is held out"))
    stepping: bool = Field(description="a step request (POST .../step) is under way")
    has_model: bool
    is_active_model: bool
    name: str | None = Field(description="the name its user gave it; null: none given")
    tags: list[str]
    notes: str | None
    diverged: Divergence | None = Field(description="where the loss blew up, for a run that "
                                                    "failed because it diverged; else null")
    sweep_id: int | None = Field(description="the sweep this run is a trial of; null: a run of its own")
    trial: int | None = Field(description="its trial number in that sweep (Optuna's, from 0)")
    unstored: Unstored | None = Field(None, description=(
        "null when everything the run reported is stored; else what is not yet (the data dir "
        "is full or read-only: free space or make it writable, and it is stored then)"))


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
    next_after: int | None = Field(description=(
        "null when these are the last stored steps; else more follow: ask again with "
        "after=<this> (the Link header says the same)"))


MAX_STEPS_PER_REQUEST = 1000  # the answer waits for them: a few seconds to half a minute


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"steps": 10}]})

    steps: Integer = Field(1, ge=1, le=MAX_STEPS_PER_REQUEST,
                       description="iterations to train before pausing again")


class HistogramAnswer(Answer):
    edges: list[float] = Field(description="bin edges, from one fixed grid (docs/inside.md)")
    counts: list[int] = Field(description="counts[i]: values in [edges[i], edges[i+1])")


class LayerStatsAnswer(Answer):
    name: str
    shape: list[int] = Field(description="(inputs, units)")
    weights: HistogramAnswer
    gradients: HistogramAnswer
    activations: HistogramAnswer
    grad_norm: float
    update_ratio: float
    dead_fraction: float | None


class FirstLayerAnswer(Answer):
    units: int
    images: list[str] = Field(description="per unit shown: 784 signed bytes, base64")
    class_activations: list[list[float] | None]


class LayersSnapshot(Answer):
    """The layer statistics of one watched step (the `layers` message, without its envelope)."""

    epoch: int
    step: int
    learning_rate: float
    epoch_end: bool
    layers: list[LayerStatsAnswer]
    first_layer: FirstLayerAnswer | None


class LayersHistory(Answer):
    snapshots: list[LayersSnapshot]
    more: bool = Field(description="more snapshots follow: ask again with after=<last step>")


class HiddenUnit(Answer):
    unit: int
    activation: float
    image: str = Field(description="its 784 incoming weights, signed bytes w/max|w|*127, base64")


class HiddenUnits(Answer):
    run_id: int
    model_epoch: int | None
    units: int = Field(description="units in the first hidden layer")
    active: int = Field(description="of them, how many fire (activation > 0) for this input")
    top: list[HiddenUnit]


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


# --- a run's name, tags and notes (PATCH /api/runs/{id}) -------------------------------------------
NAME_MAX_LENGTH = 120
NOTES_MAX_LENGTH = 4000
TAG_MAX_LENGTH = 40
TAGS_MAX_ITEMS = 20
# Letters (with their accents), digits and _ . : / + = @ # -, single spaces inside: no commas
# (the page lists tags separated by them), no quotes, no control characters.
TAG_CHARACTER = r"[\p{L}\p{M}\p{N}_.:/+=@#-]"
TAG_PATTERN = rf"^{TAG_CHARACTER}+(?: {TAG_CHARACTER}+)*$"
TAG_RULE = (f"1 to {TAG_MAX_LENGTH} letters, digits, single spaces (not at either end) and "
            "_ . : / + = @ # -")


# The same rule as a JSON Schema pattern for the OpenAPI document (control characters are
# Unicode's category Cc: U+0000..U+001F and U+007F..U+009F).
NO_CONTROL_CHARACTERS = "^[^\u0000-\u001f\u007f-\u009f]*$"
NO_CONTROL_CHARACTERS_BUT_LINES = "^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"


def _text(keep: str = ""):
    """The validator of a free-text field (after surrounding whitespace went): blank becomes None
    (no value), and control characters other than `keep` are refused."""
    def clean(value: str) -> str | None:
        bad = next((c for c in value if unicodedata.category(c) == "Cc" and c not in keep), None)
        if bad is not None:
            raise PydanticCustomError(
                "control_character", "the control character {code} is not allowed here; send "
                "plain text" + (" (line breaks and tabs are fine)" if keep else " on one line"),
                {"code": f"U+{ord(bad):04X}"})
        return value or None
    return clean


def _tag_error(value: Any, handler) -> str:
    """A string that is no tag gets the rule in its error (a pattern alone reads badly)."""
    try:
        return handler(value)
    except ValidationError:
        if not isinstance(value, str):
            raise
        raise PydanticCustomError("tag", "{tag} is not a tag: a tag is {rule}",
                                  {"tag": repr(value[:60]), "rule": TAG_RULE}) from None


Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=NAME_MAX_LENGTH),
                 AfterValidator(_text())]
Notes = Annotated[str, StringConstraints(strip_whitespace=True, max_length=NOTES_MAX_LENGTH),
                  AfterValidator(_text(keep="\n\r\t"))]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                       max_length=TAG_MAX_LENGTH, pattern=TAG_PATTERN),
                WrapValidator(_tag_error)]


class RunDetails(BaseModel):
    """What PATCH /api/runs/{id} sets: any of a run's name, tags and notes; a field left out
    keeps its value. Surrounding whitespace is dropped; a blank or null name or notes clears it."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"name": "wide adam", "tags": ["baseline", "lr-sweep"], "notes": "the reference run"},
        {"name": None},
    ]})

    name: Name | None = Field(None, description=f"up to {NAME_MAX_LENGTH} characters, one line; "
                                                "null clears it",
                              json_schema_extra={"pattern": NO_CONTROL_CHARACTERS})
    tags: list[Tag] = Field(default_factory=list, max_length=TAGS_MAX_ITEMS, description=(
        f"at most {TAGS_MAX_ITEMS}, each {TAG_RULE}; the list replaces the run's tags "
        "([] removes them all); a repeated tag is kept once"))
    notes: Notes | None = Field(None, description=f"up to {NOTES_MAX_LENGTH} characters; null "
                                                  "clears them",
                                json_schema_extra={"pattern": NO_CONTROL_CHARACTERS_BUT_LINES})

    @field_validator("tags")
    @classmethod
    def _once_each(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


class RunFieldBounds(Answer):
    """What a run's name, tags or notes may hold (PATCH /api/runs/{id})."""

    max_length: int = Field(description="most characters (of each tag), after surrounding "
                                        "whitespace is dropped")
    max_items: int | None = Field(None, description="most tags")
    pattern: str | None = Field(None, description="what each tag matches (a regular expression "
                                                  "with Unicode classes: JavaScript's `u` flag)")


RUN_FIELD_BOUNDS = {
    "name": RunFieldBounds(max_length=NAME_MAX_LENGTH),
    "tags": RunFieldBounds(max_length=TAG_MAX_LENGTH, max_items=TAGS_MAX_ITEMS, pattern=TAG_PATTERN),
    "notes": RunFieldBounds(max_length=NOTES_MAX_LENGTH),
}


class ActiveModel(Answer):
    run_id: int | None
    chosen_by: Literal["user", "best"] | None


class ActiveModelChoice(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"run_id": 3}]})

    run_id: Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_a_number)] | None = Field(
        description="the run whose model /predict uses; null: the best one")


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


class Network(Answer):
    inputs: int = Field(description="pixels of a digit, the input layer's size (28 x 28)")
    image_side: int = Field(description="a digit's side in pixels")
    classes: int = Field(description="digits 0-9, the output layer's size")
    batch_norm_parameters_per_unit: int = Field(description=(
        "parameters a batch norm adds per hidden unit (scale and shift); a network's count is "
        "the weights and biases of each layer plus these"))


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
    run_fields: list[str] = Field(description="what PATCH /api/runs/{id} may set on any run")
    run_field_bounds: dict[str, RunFieldBounds] = Field(description="what each of them may hold")
    statuses: list[RunStatus] = Field(description="every status a run may have")
    active_statuses: list[RunStatus] = Field(description="the statuses of a run that may change")
    sweeps: SweepOptions
    network: Network


class Error(Answer):
    """Every error answer: what happened and what to do, in a sentence."""

    detail: str


class Issue(Answer):
    """One way a request failed its schema."""

    loc: list[str | int] = Field(description="where: body, path or query, then the field")
    msg: str
    type: str = Field(description="Pydantic's error type, e.g. missing, int_parsing")


class Invalid(Answer):
    """A 422: the request was understood but cannot be done as sent."""

    detail: str = Field(description="what is wrong, in a sentence")
    errors: list[Issue] | None = Field(None, description=(
        "each problem, where the request failed its schema (absent when the problem is one the "
        "schema cannot say, such as a run too large for the server as a whole)"))


# --- sweeps -------------------------------------------------------------------------------------------
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
    trials: Integer | None = Field(None, description="trials to train (default 12; a grid: all "
                                                        "its configurations)")
    metric: Literal[tuple(METRICS)] = "val_accuracy"  # type: ignore[valid-type]
    pruner: Pruner = "none"
    max_concurrent: Integer | None = Field(None, description="trials training at once (default: "
                                                                "the server's max_concurrent_runs)")
    seed: Integer = Field(0, description="the sampler's seed")


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


PIXEL = {"type": "number", "minimum": 0, "maximum": 1}
# One drawn digit: 784 values in 0..1, row-major, white ink on black, something drawn.
DRAWN_DIGIT = {"type": "array", "items": PIXEL, "minItems": N_PIXELS, "maxItems": N_PIXELS,
               "contains": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}


def _example_png() -> str:
    """A data URL of a small drawn "1" (a PNG made here), the example of `image`."""
    picture = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(picture).line([(14, 4), (14, 23)], fill=255, width=3)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


RUN_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID,
          "description": "the run whose model predicts; default: the active model"}
RUN_ID_OR_NULL = {"anyOf": [RUN_ID, {"type": "null"}],
                  "description": "the run whose model predicts; null or left out: the active model"}
PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "pixels": {"description": "784 numbers in 0..1 (a 28x28 digit, row-major, "
                                              "white ink on black), or a list of such lists",
                               # maxItems of a batch: the server's max_predict_batch (app.contract)
                               "anyOf": [DRAWN_DIGIT, {"type": "array", "items": DRAWN_DIGIT,
                                                       "minItems": 1}]},
                    "image": {"type": "string", "minLength": 1,
                              "description": "a PNG or JPEG: a data URL (canvas.toDataURL()) or "
                                             "its base64"},
                    "run_id": RUN_ID_OR_NULL,
                },
                # exactly one of pixels and image (both: 422)
                "oneOf": [{"required": ["pixels"]}, {"required": ["image"]}],
            },
            "examples": {
                "pixels": {"value": {"pixels": [0.0] * 300 + [1.0] * 184 + [0.0] * 300}},
                "image": {"value": {"image": _example_png()}},
            },
        },
        "multipart/form-data": {
            "schema": {"type": "object", "additionalProperties": False, "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "a PNG or JPEG file"},
                "run_id": RUN_ID,
            }, "required": ["file"]},
        },
    },
}
