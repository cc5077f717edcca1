"""A sweep's search space and spec, read from JSON (the API) and from `--space` (the CLI), checked
against the fields' bounds: plain values, no server."""

from __future__ import annotations

import pytest

from app.sweeps.space import (
    Choice,
    Range,
    SpaceError,
    configure,
    decode,
    encode,
    grid_of,
    grid_size,
    params_of,
    parse_cli_param,
    parse_space,
    space_to_json,
)
from app.sweeps.spec import SweepSpec, make_spec, probe_configs
from engine.config import TrainConfig, field_bounds

FIELDS = field_bounds()
BASE = TrainConfig.from_dict({"preset": "notebook", "epochs": 3})


def test_the_issue_s_space_reads_the_same_from_json_and_from_the_command_line():
    space = parse_space({"learning_rate": {"min": 0.001, "max": 0.3, "log": True},
                         "hidden_layers": {"values": [[128], [256], [512, 256]]},
                         "batch_size": {"values": [64, 128, 256]}}, FIELDS)
    assert space == {
        "learning_rate": Range(0.001, 0.3, log=True),
        "hidden_layers": Choice(((128,), (256,), (512, 256))),
        "batch_size": Choice((64, 128, 256)),
    }
    typed = dict(parse_cli_param(text, FIELDS) for text in (
        "learning_rate=log:0.001:0.3", "hidden_layers=[128];[256];[512,256]", "batch_size=64;128;256"))
    assert typed == space
    assert parse_space(space_to_json(space), FIELDS) == space  # stored and read back


@pytest.mark.parametrize(("text", "expected"), [
    ("batch_size=32:256:32", Range(32, 256, integer=True, step=32)),
    ("epochs=1:5", Range(1, 5, integer=True)),
    ("dropout=0:0.5", Range(0.0, 0.5)),
    ("activation=relu;tanh", Choice(("relu", "tanh"))),
    ("batch_norm=true;false", Choice((True, False))),
    ("augmentation.rotation=0;10", Choice((0.0, 10.0))),
    ("optimizer = adam ; sgd", Choice(("adam", "sgd"))),
])
def test_command_line_forms(text, expected):
    assert parse_cli_param(text, FIELDS)[1] == expected


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "at least one field"),
    ([], "at least one field"),
    ({"colour": {"values": [1]}}, '"colour" is not a config field that can be swept'),
    ({"preset": {"values": ["fast"]}}, "not a config field"),
    ({"learning_rate": 0.1}, "must be an object"),
    ({"learning_rate": {"min": 0.3, "max": 0.001}}, "min (0.3) must be below max (0.001)"),
    ({"learning_rate": {"min": 0.1, "max": 0.1}}, "must be below max"),
    ({"dropout": {"min": 0, "max": 0.5, "log": True}}, "a log range needs min above 0"),
    ({"learning_rate": {"min": 0.001, "max": 5000}}, "space.learning_rate.max must be from 1e-08 to 1000"),
    ({"learning_rate": {"min": 0.001, "max": 0.3, "log": "yes"}}, "log must be true or false"),
    ({"learning_rate": {"min": 0.001, "max": 0.3, "values": [0.1]}}, "either values or min/max"),
    ({"learning_rate": {"min": 0.001}}, 'must be {"min": ..., "max": ...}'),
    ({"learning_rate": {"low": 0.001, "high": 0.3}}, "got the keys high, low"),
    ({"learning_rate": {"min": "0.001", "max": 0.3}}, 'must be a number from 1e-08 to 1000, got "0.001"'),
    ({"learning_rate": {"min": True, "max": 0.3}}, "got true"),
    ({"learning_rate": {"min": 0.001, "max": 0.3, "log": True, "step": 0.01}}, "either log or in steps"),
    ({"batch_size": {"min": 32, "max": 256, "step": 0.5}}, "step must be a whole number"),
    ({"batch_size": {"min": 32, "max": 64, "step": 64}}, "larger than the range"),
    ({"batch_size": {"min": 32.5, "max": 64}}, "must be a whole number, got 32.5"),
    ({"batch_size": {"values": [64, 0]}}, "space.batch_size.values[1] must be from 1 to 60000, got 0"),
    ({"batch_size": {"values": []}}, "non-empty list"),
    ({"batch_size": {"values": [64, 64]}}, "lists a value twice"),
    ({"batch_size": {"values": list(range(1, 100))}}, "at most 64"),
    ({"hidden_layers": {"min": 16, "max": 64}}, "takes lists of layer sizes, not a range"),
    ({"hidden_layers": {"values": [128]}}, "must be a list of layer sizes"),
    ({"hidden_layers": {"values": [[128, 0]]}}, "values[0] must be from 1 to 65536, got 0"),
    ({"hidden_layers": {"values": [[8] * 17]}}, "has 17 layers; at most 16"),
    ({"activation": {"values": ["relu", "swish"]}}, "must be one of relu, leaky_relu, sigmoid, tanh"),
    ({"activation": {"min": 1, "max": 2}}, "takes names, not a range"),
    ({"batch_norm": {"values": [1, 0]}}, "must be true or false, got 1"),
    ({"batch_norm": {"min": 0, "max": 1}}, "takes true/false, not a range"),
])
def test_a_space_that_cannot_be_swept_is_refused_with_the_field_and_what_would_do(raw, message):
    with pytest.raises(SpaceError) as refused:
        parse_space(raw, FIELDS)
    assert message in str(refused.value)


@pytest.mark.parametrize("text", ["learning_rate", "learning_rate=", "=0.1:0.2",
                                  "learning_rate=log:0.1", "learning_rate=a:b",
                                  "learning_rate=0.1:0.2:0.01:3"])
def test_a_malformed_space_option_says_how_to_write_one(text):
    with pytest.raises(SpaceError, match="--space"):
        parse_cli_param(text, FIELDS)


def test_the_server_s_tighter_bounds_apply():
    tight = {**FIELDS, "batch_size": {**FIELDS["batch_size"], "max": 512}}
    with pytest.raises(SpaceError, match="must be from 1 to 512, got 1024"):
        parse_space({"batch_size": {"values": [128, 1024]}}, tight)


def test_params_become_a_config_and_are_read_back_from_it():
    params = {"learning_rate": 0.01, "hidden_layers": [64, 32], "augmentation.rotation": 8.0,
              "batch_norm": True}
    config = configure(BASE, params)
    assert (config.learning_rate, config.hidden_layers, config.augmentation.rotation,
            config.batch_norm, config.preset, config.epochs) == (0.01, (64, 32), 8.0, True,
                                                                  "notebook", 3)
    space = parse_space({name: {"values": [value]} for name, value in params.items()}, FIELDS)
    assert params_of(config.to_dict(), space) == params


def test_choices_of_lists_reach_optuna_as_text_and_come_back():
    assert encode((512, 256)) == "[512, 256]" and encode(0.1) == 0.1 and encode("relu") == "relu"
    assert decode("hidden_layers", "[512, 256]") == [512, 256]
    assert decode("activation", "relu") == "relu"


def test_a_grid_enumerates_steps_and_values():
    space = parse_space({"batch_size": {"min": 32, "max": 128, "step": 32},
                         "hidden_layers": {"values": [[16], [32, 16]]},
                         "dropout": {"min": 0, "max": 0.2, "step": 0.1}}, FIELDS)
    grid = grid_of(space)
    assert grid == {"batch_size": [32, 64, 96, 128], "hidden_layers": ["[16]", "[32, 16]"],
                    "dropout": [0.0, 0.1, 0.2]}
    assert grid_size(grid) == 24
    assert grid_of(parse_space({"learning_rate": {"min": 0.01, "max": 0.1}}, FIELDS)) is None


def make(**overrides) -> SweepSpec:
    values = {"base": BASE, "fields": FIELDS,
              "space": {"learning_rate": {"min": 0.001, "max": 0.3, "log": True}}}
    return make_spec(**{**values, **overrides})


def test_a_spec_s_defaults_and_its_stored_form():
    spec = make()
    assert (spec.method, spec.trials, spec.metric, spec.pruner, spec.max_concurrent, spec.seed) == (
        "tpe", 12, "val_accuracy", "none", 1, 0)
    assert spec.name == "tpe over learning_rate" and spec.direction == "maximize"
    assert SweepSpec.from_json(spec.to_json(), FIELDS) == spec
    assert make(metric="val_loss").better(0.1, 0.2) and make().better(0.9, 0.8)


def test_a_grid_trains_each_configuration_once_by_default():
    grid = {"batch_size": {"values": [64, 128, 256]}, "activation": {"values": ["relu", "tanh"]}}
    assert make(space=grid, method="grid").trials == 6
    assert make(space=grid, method="grid", trials=4).trials == 4
    with pytest.raises(SpaceError, match="at most 6 for this grid"):
        make(space=grid, method="grid", trials=7)
    with pytest.raises(SpaceError, match="learning_rate is a continuous range"):
        make(method="grid")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"method": "bayes"}, "method must be one of grid, random, tpe"),
    ({"pruner": "hyperband"}, "pruner must be one of none, median, asha"),
    ({"metric": "test_accuracy"}, "metric must be one of val_accuracy, val_loss"),
    ({"trials": 0}, "trials must be from 1 to 50"),
    ({"trials": 51}, "trials must be from 1 to 50"),
    ({"max_concurrent": 0}, "max_concurrent must be from 1 to 4"),
    ({"max_concurrent": 5}, "max_concurrent must be from 1 to 4"),
    ({"name": "x" * 121}, "name must be at most 120 characters"),
])
def test_a_spec_out_of_bounds_is_refused(overrides, message):
    with pytest.raises(SpaceError, match=message.replace("(", r"\(")):
        make(max_trials=50, max_concurrent_limit=4, **overrides)


def test_the_largest_configuration_is_checked_against_the_size_limits():
    space = {"hidden_layers": {"values": [[64], [2048, 2048]]}, "batch_size": {"values": [32, 4096]}}
    probes = probe_configs(BASE, parse_space(space, FIELDS))
    assert len(probes) == 6  # each value over the base, and the largest combinations
    largest, longest = probes[-2:]
    assert (largest.hidden_layers, largest.batch_size) == ((2048, 2048), 4096)  # most memory
    assert longest.batch_size == 32  # most steps
    epochs = probe_configs(BASE, parse_space({"epochs": {"min": 1, "max": 50},
                                              "batch_size": {"values": [16, 256]}}, FIELDS))[-1]
    assert (epochs.epochs, epochs.batch_size) == (50, 16)

    def small_server(config: TrainConfig) -> None:
        if config.batch_size * sum(config.hidden_layers) > 4096 * 2048:
            raise SpaceError("too large for this server")

    with pytest.raises(SpaceError, match="too large"):
        make(space=space, check_config=small_server)
    make(space={"hidden_layers": space["hidden_layers"]}, check_config=small_server)
