"""TrainConfig validation: every bad field gives a ConfigError that names it; presets + overrides."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from engine.config import AugmentConfig, ConfigError, TrainConfig, field_bounds, preset_config
from engine.presets import PRESETS


def test_default_preset_when_none_is_named():
    assert TrainConfig.from_dict({}) == TrainConfig.from_dict(None) == preset_config("default")
    assert TrainConfig.from_dict({}).preset == "default"


def test_preset_overrides_keep_the_rest_of_the_preset():
    config = TrainConfig.from_dict({"preset": "notebook", "learning_rate": 0.01, "epochs": 3})
    notebook = preset_config("notebook")
    assert config.learning_rate == 0.01 and config.epochs == 3
    assert config.preset == "notebook"
    assert config.replace(learning_rate=notebook.learning_rate, epochs=notebook.epochs) == notebook


def test_none_means_keep_the_preset_value():
    assert TrainConfig.from_dict({"preset": "notebook", "learning_rate": None}).learning_rate == 0.05


def test_round_trip_through_json():
    config = TrainConfig.from_dict({"hidden_layers": [64, 32], "augmentation": {"rotation": 10}})
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.hidden_layers == (64, 32) and again.augmentation.rotation == 10.0


def test_every_preset_is_valid_and_described():
    assert {"notebook", "default"} <= set(PRESETS)
    for preset in PRESETS.values():
        assert preset.description
        config = preset_config(preset.name)
        assert TrainConfig.from_dict(config.to_dict()) == config


def test_notebook_preset_is_the_notebook():
    c = preset_config("notebook")
    assert (c.hidden_layers, c.activation, c.init, c.optimizer) == ((128,), "relu", "notebook", "sgd")
    assert (c.learning_rate, c.lr_schedule, c.lr_decay, c.batch_size, c.epochs) == (
        0.05, "step", 0.5, 128, 10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rat": 0.1}, "unknown config field.*learning_rat.*known fields"),
        ({"preset": "fastest"}, "unknown preset 'fastest'; available presets: notebook"),
        ({"learning_rate": "fast"}, "learning_rate must be a number"),
        ({"learning_rate": math.nan}, "learning_rate must be between"),
        ({"learning_rate": math.inf}, "learning_rate must be between"),
        ({"learning_rate": 0}, "learning_rate must be between"),
        ({"learning_rate": 5000}, "learning_rate must be between"),
        ({"batch_size": 0}, "batch_size must be between 1 and 60000"),
        ({"batch_size": 12.5}, "batch_size must be a whole number"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"epochs": "10"}, "epochs must be an integer"),
        ({"dropout": 0.99}, "dropout must be between 0 and 0.95"),
        ({"dropout": -0.1}, "dropout must be between"),
        ({"momentum": 1.0}, "momentum must be between"),
        ({"hidden_layers": 128}, "hidden_layers must be a list"),
        ({"hidden_layers": "128"}, "hidden_layers must be a list"),
        ({"hidden_layers": [128, 0]}, r"hidden_layers\[\] must be between 1"),
        ({"hidden_layers": [128, "wide"]}, r"hidden_layers\[\] must be an integer"),
        ({"hidden_layers": [8] * 17}, "at most 16 layers"),
        ({"activation": "gelu"}, "activation must be one of relu, leaky_relu, sigmoid, tanh"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, momentum, nesterov, adam"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of constant, step, cosine"),
        ({"init": "xavier"}, "init must be one of"),
        ({"batch_norm": "yes"}, "batch_norm must be true or false"),
        ({"seed": -1}, "seed must be between"),
        ({"augmentation": {"rotate": 5}}, "unknown augmentation field.*rotate"),
        ({"augmentation": {"rotation": 500}}, "augmentation.rotation must be between 0 and 90"),
        ({"augmentation": [1]}, "augmentation must be an object"),
    ],
)
def test_bad_fields_are_named_in_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(overrides)


@pytest.mark.parametrize("not_an_object", [[1, 2], "default", 3])
def test_a_config_must_be_an_object(not_an_object):
    with pytest.raises(ConfigError, match="must be a JSON object"):
        TrainConfig.from_dict(not_an_object)


def test_replace_validates_too():
    with pytest.raises(ConfigError, match="epochs"):
        preset_config("default").replace(epochs=0)


def test_configs_are_immutable():
    with pytest.raises(AttributeError):
        preset_config("default").epochs = 3  # type: ignore[misc]


# --- the published bounds (engine.config.field_bounds, served by GET /api/options) -----------------
def config_setting(name: str, value) -> dict:
    """A config that sets the field `name` (as field_bounds names it) to `value`."""
    if name.startswith("augmentation."):
        return {"augmentation": {name.removeprefix("augmentation."): value}}
    if name == "hidden_layers":  # the bounds are those of each layer's size
        return {"hidden_layers": [value]}
    return {name: value}


def just_outside(bounds: dict) -> tuple:
    """The nearest values below `min` and above `max` (whole numbers for an integer field)."""
    if bounds["integer"]:
        return bounds["min"] - 1, bounds["max"] + 1
    return math.nextafter(bounds["min"], -math.inf), math.nextafter(bounds["max"], math.inf)


def test_field_bounds_cover_every_field_and_are_json():
    published = field_bounds()
    assert json.loads(json.dumps(published)) == published
    names = {name.split(".")[0] for name in published}
    assert names == {f.name for f in dataclasses.fields(TrainConfig)} - {"batch_norm", "preset"}
    assert {f"augmentation.{f.name}" for f in dataclasses.fields(AugmentConfig)} <= set(published)
    assert published["activation"]["choices"] == ["relu", "leaky_relu", "sigmoid", "tanh"]
    assert published["hidden_layers"]["max_items"] == 16


@pytest.mark.parametrize("name", [name for name, b in field_bounds().items() if "min" in b])
def test_published_bounds_are_exactly_what_validation_accepts(name):
    bounds = field_bounds()[name]
    assert bounds["min"] < bounds["max"]
    for value in (bounds["min"], bounds["max"]):
        TrainConfig.from_dict(config_setting(name, value))
    field = "hidden_layers[]" if name == "hidden_layers" else name
    for value in just_outside(bounds):
        with pytest.raises(ConfigError, match=re.escape(f"{field} must be between")):
            TrainConfig.from_dict(config_setting(name, value))
    if bounds["integer"]:
        with pytest.raises(ConfigError, match="whole number"):
            TrainConfig.from_dict(config_setting(name, bounds["min"] + 0.5))


@pytest.mark.parametrize("name", [name for name, b in field_bounds().items() if "choices" in b])
def test_published_choices_are_exactly_what_validation_accepts(name):
    for choice in field_bounds()[name]["choices"]:
        assert getattr(TrainConfig.from_dict({name: choice}), name) == choice
    with pytest.raises(ConfigError, match=f"{name} must be one of"):
        TrainConfig.from_dict({name: "none_of_these"})
