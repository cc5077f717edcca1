"""Sequential models: structure rules, whole-model gradients, prediction, save/load."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.layers import BatchNorm, Dense, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from engine.losses import SoftmaxCrossEntropy
from engine.model import (
    ModelError,
    Sequential,
    build_model,
    load_model,
    model_bytes,
    save_model,
)
from tests.engine.test_layers import assert_close, numerical_gradient


def small_config(**fields) -> TrainConfig:
    return TrainConfig.from_dict({"hidden_layers": [16, 12], "seed": 3, **fields})


# --- structure -----------------------------------------------------------------------------------
def test_softmax_must_be_last():
    with pytest.raises(ModelError, match="must be the last layer"):
        Sequential([Dense(4, 3), Softmax(), Dense(3, 2)])


def test_exactly_one_softmax():
    with pytest.raises(ModelError, match="exactly one Softmax"):
        Sequential([Dense(4, 3), ReLU(), Dense(3, 2)])
    with pytest.raises(ModelError, match="exactly one Softmax"):
        Sequential([Dense(4, 3), Softmax(), Dense(3, 2), Softmax()])


def test_build_model_follows_the_config():
    model = build_model(small_config(batch_norm=True, dropout=0.2, activation="tanh"))
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Dense", "BatchNorm", "Tanh", "Dropout", "Dense", "BatchNorm", "Tanh",
                     "Dropout", "Dense", "Softmax"]
    assert [d.shape for d in model.dense_layers] == [(784, 16), (16, 12), (12, 10)]
    assert model.parameter_count() == 784 * 16 + 16 + 16 * 12 + 12 + 12 * 10 + 10 + 2 * (16 + 12)
    assert model.dtype == np.float32


def test_auto_init_is_he_for_relu_and_glorot_for_tanh():
    wide = {"hidden_layers": [1000]}
    relu = build_model(TrainConfig.from_dict({**wide, "activation": "relu"}))
    tanh = build_model(TrainConfig.from_dict({**wide, "activation": "tanh"}))
    assert relu.dense_layers[0].W.value.std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)
    assert tanh.dense_layers[0].W.value.std() == pytest.approx(np.sqrt(2 / 1784), rel=0.02)


# --- whole-model gradient --------------------------------------------------------------------------
def test_whole_model_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    f64 = np.float64
    model = Sequential([
        Dense(6, 5, "he", rng, f64), BatchNorm(5, dtype=f64), ReLU(),
        Dense(5, 4, "glorot", rng, f64), Tanh(),
        Dense(4, 4, "glorot", rng, f64), LeakyReLU(0.1),
        Dense(4, 3, "glorot", rng, f64), Sigmoid(),
        Dense(3, 3, "glorot", rng, f64), Softmax(),
    ])
    for dense in model.dense_layers:
        dense.b.value[:] = 0.1 * rng.standard_normal(dense.b.value.shape)
    x = rng.standard_normal((7, 6))
    labels = rng.integers(0, 3, 7)
    loss = SoftmaxCrossEntropy()

    def objective() -> float:
        return loss.forward(model.forward(x, training=True), labels)

    objective()
    model.backward(loss.backward())
    analytic = [p.grad.copy() for p in model.parameters()]
    assert len(analytic) == 2 * 5 + 2
    first_bias = model.dense_layers[0].b  # followed by BatchNorm, which subtracts it right away
    for parameter, grad in zip(model.parameters(), analytic, strict=True):
        numeric = numerical_gradient(objective, parameter.value)
        assert_close(grad, numeric, may_vanish=parameter is first_bias)
    np.testing.assert_allclose(first_bias.grad, 0, atol=1e-12)


# --- prediction ------------------------------------------------------------------------------------
def test_predict_proba_gives_probabilities_for_any_batch_size():
    model = build_model(small_config())
    x = np.random.default_rng(0).random((4097, 784), dtype=np.float32)
    p = model.predict_proba(x, batch_size=1000)
    assert p.shape == (4097, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(x), p.argmax(axis=1))
    np.testing.assert_allclose(model.predict_proba(x[:5]), p[:5], rtol=1e-6)


def test_predict_rejects_a_wrong_shape():
    with pytest.raises(ModelError, match=r"expected an \(N, 784\) batch"):
        build_model(small_config()).predict_proba(np.zeros((2, 28, 28)))


# --- save and load ---------------------------------------------------------------------------------
def trained_looking_model(**fields):
    model = build_model(small_config(**fields))
    rng = np.random.default_rng(1)
    for p in model.parameters():
        p.value += 0.1 * rng.standard_normal(p.value.shape).astype(np.float32)
    return model


@pytest.mark.parametrize("fields", [{}, {"batch_norm": True, "dropout": 0.3}])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, fields):
    model = trained_looking_model(**fields)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            layer.running_mean[:] = 0.5
            layer.running_var[:] = 2.0
    path = save_model(model, tmp_path / "sub" / "model.npz", {"test_accuracy": 0.97})
    loaded, metadata = load_model(path)
    x = np.random.default_rng(2).random((50, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.config == model.config
    assert metadata["test_accuracy"] == 0.97
    assert metadata["engine_version"] and metadata["created"]
    assert not list(path.parent.glob("*.tmp"))


def test_a_batch_norm_model_file_in_the_saved_format_loads(tmp_path):
    """The file format, written by hand (not by save_model): `layers.<i>.<name>` arrays, the
    config and metadata as JSON strings. Files saved when running statistics were Parameters have
    exactly these names, so they load into the plain arrays."""
    config = small_config(hidden_layers=[3], batch_norm=True)
    rng = np.random.default_rng(5)
    arrays = {
        "layers.0.W": rng.standard_normal((784, 3)).astype(np.float32),
        "layers.0.b": rng.standard_normal(3).astype(np.float32),
        "layers.1.gamma": np.array([1.5, 0.5, 2.0], np.float32),
        "layers.1.beta": np.array([0.1, -0.2, 0.3], np.float32),
        "layers.1.running_mean": np.array([0.25, -1.0, 4.0], np.float32),
        "layers.1.running_var": np.array([2.0, 0.5, 9.0], np.float32),
        "layers.3.W": rng.standard_normal((3, 10)).astype(np.float32),
        "layers.3.b": rng.standard_normal(10).astype(np.float32),
    }
    path = tmp_path / "by-hand.npz"
    np.savez(path, config_json=np.array(json.dumps(config.to_dict())),
             metadata_json=np.array(json.dumps({"run_id": 1})), **arrays)
    model, metadata = load_model(path)
    norm = model.layers[1]
    assert isinstance(norm, BatchNorm) and metadata == {"run_id": 1}
    assert isinstance(norm.running_mean, np.ndarray) and isinstance(norm.running_var, np.ndarray)
    np.testing.assert_array_equal(norm.running_mean, arrays["layers.1.running_mean"])
    np.testing.assert_array_equal(norm.running_var, arrays["layers.1.running_var"])
    assert not any(p.value is norm.running_mean or p.value is norm.running_var
                   for p in model.parameters())  # statistics: no optimiser touches them
    x = rng.random((4, 784), dtype=np.float32)
    z = x @ arrays["layers.0.W"] + arrays["layers.0.b"]
    z = (z - arrays["layers.1.running_mean"]) / np.sqrt(arrays["layers.1.running_var"] + 1e-5)
    h = np.maximum(z * arrays["layers.1.gamma"] + arrays["layers.1.beta"], 0)
    logits = h @ arrays["layers.3.W"] + arrays["layers.3.b"]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(x), expected / expected.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-7)


def test_load_from_a_file_object(tmp_path):
    model = trained_looking_model()
    data = save_model(model, tmp_path / "m.npz").read_bytes()
    loaded, _ = load_model(io.BytesIO(data))
    x = np.ones((2, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_model_bytes_are_the_saved_file(tmp_path):
    """What a worker without the server's disk sends: the same format, read back the same way."""
    model = trained_looking_model()
    data = model_bytes(model, {"epoch": 3})
    loaded, metadata = load_model(io.BytesIO(data))
    assert metadata["epoch"] == 3
    x = np.ones((2, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    (tmp_path / "m.npz").write_bytes(data)
    assert load_model(tmp_path / "m.npz")[1]["epoch"] == 3


def rewrite(path, **changes):
    """Copy a saved model's arrays, apply changes (None deletes), write them back."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    np.savez(path, **arrays)
    return path


@pytest.fixture
def saved(tmp_path):
    return save_model(trained_looking_model(), tmp_path / "model.npz")


def test_load_rejects_a_wrong_shape(saved):
    rewrite(saved, **{"layers.0.W": np.zeros((784, 17), dtype=np.float32)})
    with pytest.raises(ModelError, match=r"layers.0.W has shape \(784, 17\), the config needs"):
        load_model(saved)


def test_load_rejects_a_missing_array(saved):
    rewrite(saved, **{"layers.2.b": None})
    with pytest.raises(ModelError, match=r"missing \['layers.2.b'\]"):
        load_model(saved)


def test_load_rejects_an_unexpected_array(saved):
    rewrite(saved, **{"layers.9.W": np.zeros(3, dtype=np.float32)})
    with pytest.raises(ModelError, match="unexpected"):
        load_model(saved)


def test_load_rejects_nan_weights(saved):
    w = np.zeros((784, 16), dtype=np.float32)
    w[3, 4] = np.nan
    rewrite(saved, **{"layers.0.W": w})
    with pytest.raises(ModelError, match="layers.0.W contains NaN"):
        load_model(saved)


def test_load_rejects_non_numeric_weights(saved):
    rewrite(saved, **{"layers.0.b": np.array(["x"] * 16)})
    with pytest.raises(ModelError, match="floating-point"):
        load_model(saved)


def test_load_rejects_a_missing_config(saved):
    rewrite(saved, config_json=None)
    with pytest.raises(ModelError, match="lacks config_json"):
        load_model(saved)


@pytest.mark.parametrize("config_json", ["not json", "[1, 2]", json.dumps({"epochs": 0})])
def test_load_rejects_an_invalid_config(saved, config_json):
    rewrite(saved, config_json=np.array(config_json))
    with pytest.raises(ModelError, match="invalid config"):
        load_model(saved)


def test_load_rejects_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("these are not the weights you are looking for")
    with pytest.raises(ModelError, match=r"not a readable MNIST Lab model file"):
        load_model(path)


def test_load_rejects_a_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not a readable"):
        load_model(tmp_path / "nope.npz")


def test_load_never_unpickles_object_arrays(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("unpickled!",))

    rewrite(saved, **{"layers.0.b": np.array([Exploit()], dtype=object)})
    with pytest.raises(ModelError, match="not a readable"):
        load_model(saved)
    assert not marker.exists()


def test_only_config_built_models_can_be_saved(tmp_path):
    with pytest.raises(ModelError, match="TrainConfig"):
        save_model(Sequential([Dense(784, 10), Softmax()]), tmp_path / "m.npz")
