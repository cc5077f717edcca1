"""The REST API through TestClient against real worker processes and real MNIST (a small slice):
shapes, status codes, and a readable message for every bad input."""

from __future__ import annotations

import base64
import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from engine.cli import config_flags
from engine.config import TrainConfig, field_bounds
from engine.footprint import parameter_count
from engine.model import load_model
from tests.app.conftest import TEST_SUBSET, blank_png, digit_png
from tests.engine.test_config import config_setting, just_outside

pytestmark = pytest.mark.mnist


def assert_readable(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10
    for word in words:
        assert word in detail, detail
    return detail


# --- meta ---------------------------------------------------------------------------------------
def test_health_options_and_docs(fresh):
    assert fresh.get("/healthz").json()["status"] == "ok"
    options = fresh.get("/api/options").json()
    assert {"default", "notebook"} <= {preset["name"] for preset in options["presets"]}
    assert "adam" in options["choices"]["optimizer"]
    assert options["limits"]["max_body_bytes"] == 2 * 1024 * 1024
    assert fresh.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert_readable(fresh.get("/api/nothing-here"), 404, "/docs")
    page = fresh.get("/")
    assert page.status_code == 200 and "MNIST Lab" in page.text
    assert fresh.get("/static/css/app.css").status_code == 200


def test_options_fields_are_the_engine_bounds_tightened_by_the_server_limits(fresh):
    options = fresh.get("/api/options").json()
    fields, limits = options["fields"], options["limits"]
    engine = field_bounds()
    assert set(fields) == set(engine)
    tightened = {("epochs", "max"): "max_epochs", ("batch_size", "max"): "max_batch_size",
                 ("hidden_layers", "max"): "max_units_per_layer",
                 ("hidden_layers", "max_items"): "max_hidden_layers"}
    for name, bounds in engine.items():
        for key, value in bounds.items():
            limit = tightened.get((name, key))
            expected = value if limit is None else min(value, limits[limit])
            assert fields[name][key] == expected, (name, key)
    for name, choices in options["choices"].items():
        assert fields[name]["choices"] == choices
    assert options["cli_flags"] == config_flags()


def test_options_give_the_page_the_network_sizes_the_engine_counts_parameters_with(fresh):
    network = fresh.get("/api/options").json()["network"]
    config = TrainConfig.from_dict({"hidden_layers": [100, 30], "batch_norm": True})
    inputs, classes = network["inputs"], network["classes"]
    counted = (inputs * 100 + 100) + (100 * 30 + 30) + (30 * classes + classes) \
        + network["batch_norm_parameters_per_unit"] * 130  # what static/js/controls.js computes
    assert (inputs, classes) == (network["image_side"] ** 2, 10)
    assert counted == parameter_count(config)
    page = fresh.get("/").text
    assert f'data-testid="model-input" width="{network["image_side"]}"' in page


def test_a_value_just_outside_an_advertised_range_is_refused(fresh):
    fields = fresh.get("/api/options").json()["fields"]
    numeric = {name: bounds for name, bounds in fields.items() if "min" in bounds}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - {n.split(".")[0] for n in numeric} \
        == {"activation", "init", "optimizer", "lr_schedule", "batch_norm", "preset"}
    for name, bounds in numeric.items():
        assert bounds["min"] < bounds["max"], name
        word = "layer" if name == "hidden_layers" else name.split(".")[-1].replace("_", " ")
        for value in just_outside(bounds):
            response = fresh.post("/api/runs", json=config_setting(name, value))
            assert word in assert_readable(response, 422).replace("_", " "), (name, value)
    too_many = [16] * (fields["hidden_layers"]["max_items"] + 1)
    response = fresh.post("/api/runs", json={"hidden_layers": too_many})
    assert "hidden layers" in assert_readable(response, 422).replace("_", " ")
    assert fresh.get("/api/runs").json()["runs"] == []


# --- runs: validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("body, words", [
    ({"learning_rate": "fast"}, ["learning_rate"]),
    ({"learning_rate": -1}, ["learning_rate", "between"]),
    ({"epochs": 2.5}, ["epochs"]),
    ({"hidden_layers": 128}, ["hidden_layers"]),
    ({"activation": "swish"}, ["activation", "relu"]),
    ({"preset": "nope"}, ["preset", "default"]),
    ({"colour": "red"}, ["colour"]),
    ({"augmentation": {"shift": 50}}, ["augmentation.shift"]),
    ([1, 2], []),
])
def test_bad_run_configs_are_422_with_a_sentence(fresh, body, words):
    assert_readable(fresh.post("/api/runs", json=body), 422, *words)
    assert fresh.get("/api/runs").json()["runs"] == []


@pytest.mark.parametrize("raw, words", [
    (b'{"learning_rate": NaN}', ["learning_rate"]),
    (b'{"epochs": 3', ["JSON"]),
    (b"", ["JSON"]),
])
def test_bad_json_is_422(fresh, raw, words):
    response = fresh.post("/api/runs", content=raw, headers={"Content-Type": "application/json"})
    assert_readable(response, 422, *words)


def test_unknown_runs_are_404_and_bad_ids_422(fresh):
    for method, path in [("GET", "/api/runs/99"), ("DELETE", "/api/runs/99"),
                         ("POST", "/api/runs/99/stop"), ("POST", "/api/runs/99/pause"),
                         ("GET", "/api/runs/99/metrics"), ("GET", "/api/runs/99/model"),
                         ("GET", "/api/runs/99/evaluation"), ("GET", "/api/runs/99/weights")]:
        assert_readable(fresh.request(method, path), 404, "99")
    assert_readable(fresh.get("/api/runs/abc"), 422, "run_id")
    assert_readable(fresh.post("/api/runs/1/explode"), 422, "action")
    assert_readable(fresh.put("/api/active-model", json={"run_id": 5}), 404)


def test_predict_without_any_model_is_409(fresh):
    assert_readable(fresh.post("/predict", json={"pixels": [0.0] * 784}), 409, "no trained model")
    assert fresh.get("/api/active-model").json() == {"run_id": None, "chosen_by": None}


# --- a finished run ---------------------------------------------------------------------------------
def test_completed_run_has_metrics_model_and_evaluation(trained):
    client, run = trained
    run_id = run["id"]
    assert run["progress"]["step"] == run["progress"]["steps_total"] == 2 * 40
    assert [epoch["epoch"] for epoch in run["epochs"]] == [1, 2]
    assert run["test_accuracy"] > 0.7 and run["has_model"] and run["is_active_model"]
    assert run["config"]["batch_size"] == 50 and run["config"]["preset"] == "default"

    listed = client.get("/api/runs").json()
    assert listed["active_model_run_id"] == run_id and "epochs" not in listed["runs"][0]

    metrics = client.get(f"/api/runs/{run_id}/metrics").json()
    assert [p["step"] for p in metrics["iterations"]] == list(range(80))
    assert metrics["epochs"] == run["epochs"]
    later = client.get(f"/api/runs/{run_id}/metrics?after=69").json()["iterations"]
    assert [p["step"] for p in later] == list(range(70, 80))
    csv_rows = client.get(f"/api/runs/{run_id}/metrics?format=csv").text.strip().splitlines()
    assert csv_rows[0].startswith("step,epoch,loss,train_loss") and len(csv_rows) == 81
    assert csv_rows[40].split(",")[6] == str(run["epochs"][0]["val_accuracy"])

    model, metadata = load_model(io.BytesIO(client.get(f"/api/runs/{run_id}/model").content))
    assert metadata["run_id"] == run_id and model.config.batch_size == 50

    evaluation = client.get(f"/api/runs/{run_id}/evaluation").json()
    matrix = np.array(evaluation["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == TEST_SUBSET
    assert evaluation["accuracy"] == pytest.approx(np.trace(matrix) / TEST_SUBSET)
    assert evaluation["accuracy"] == pytest.approx(run["test_accuracy"])
    wrong = int(matrix.sum() - np.trace(matrix))
    assert evaluation["misclassified_total"] == wrong
    for item in evaluation["misclassified"]:
        assert item["true"] != item["predicted"] and len(item["pixels"]) == 784
        assert matrix[item["true"], item["predicted"]] > 0
        assert item["runner_up"] != item["predicted"]
        assert item["runner_up_confidence"] <= item["confidence"]

    # Every mistake, a page at a time, most confident first; a filter to one cell of the matrix.
    pages, offset = [], 0
    while offset < wrong:
        page = client.get(f"/api/runs/{run_id}/misclassified?offset={offset}&limit=7").json()
        assert page["total"] == wrong and page["offset"] == offset
        pages += page["items"]
        offset += 7
    assert len({item["index"] for item in pages}) == wrong
    assert pages[:len(evaluation["misclassified"])] == evaluation["misclassified"]
    confidences = [item["confidence"] for item in pages]
    assert confidences == sorted(confidences, reverse=True)
    true, predicted = np.unravel_index(np.argmax(matrix - np.diag(np.diag(matrix))), matrix.shape)
    cell = client.get(f"/api/runs/{run_id}/misclassified?true={true}&predicted={predicted}"
                      "&limit=100").json()
    assert cell["total"] == matrix[true, predicted] == len(cell["items"])
    assert {(i["true"], i["predicted"]) for i in cell["items"]} == {(true, predicted)}
    assert client.get(f"/api/runs/{run_id}/misclassified?true=10").status_code == 422

    weights = client.get(f"/api/runs/{run_id}/weights").json()
    assert weights["units"] == 256 and len(weights["images"]) == 64 and weights["offset"] == 0
    assert max(max(abs(v) for v in image) for image in weights["images"]) == pytest.approx(1.0)
    rest = client.get(f"/api/runs/{run_id}/weights?offset=64&limit=256").json()
    assert rest["offset"] == 64 and len(rest["images"]) == 256 - 64
    assert rest["images"][0] != weights["images"][0]
    assert client.get(f"/api/runs/{run_id}/weights?limit=257").status_code == 422


def test_transitions_that_make_no_sense_are_409(trained):
    client, run = trained
    for action in ("stop", "pause", "resume"):
        assert_readable(client.post(f"/api/runs/{run['id']}/{action}"), 409, "completed")


def test_active_model_choice(trained):
    client, run = trained
    chosen = client.put("/api/active-model", json={"run_id": run["id"]}).json()
    assert chosen == {"run_id": run["id"], "chosen_by": "user"}
    assert client.put("/api/active-model", json={"run_id": None}).json()["chosen_by"] == "best"
    assert_readable(client.put("/api/active-model", json={"run": 1}), 422)


# --- /predict ------------------------------------------------------------------------------------
def test_predict_pixels_of_real_digits(trained, mnist_data):
    client, run = trained
    images = mnist_data.test_images[TEST_SUBSET:TEST_SUBSET + 20] / 255.0
    labels = mnist_data.test_labels[TEST_SUBSET:TEST_SUBSET + 20]
    answer = client.post("/predict", json={"pixels": images[0].tolist()}).json()
    assert answer["run_id"] == run["id"] and len(answer["input"]) == 784
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    batch = client.post("/predict", json={"pixels": images.tolist(), "run_id": run["id"]}).json()
    digits = [p["digit"] for p in batch["predictions"]]
    assert batch["predictions"][0]["digit"] == answer["digit"]
    assert np.mean(np.array(digits) == labels) >= 0.6


def test_predict_drawings(trained, mnist_data):
    """Real test digits drawn large and off-centre, as a data URL (transparent background, dark
    ink), as bare base64 (white background) and as an upload: the same picture gives the same
    answer on every path, and most digits are recognised even by this small model."""
    client, _ = trained
    correct = 0
    for digit in range(10):
        png = digit_png(digit, mnist_data)
        data_url = "data:image/png;base64," + base64.b64encode(png).decode()
        answer = client.post("/predict", json={"image": data_url}).json()
        upload = client.post("/predict", files={"file": ("digit.png", png, "image/png")}).json()
        assert upload == answer
        bare = base64.b64encode(digit_png(digit, mnist_data, transparent=False)).decode()
        opaque = client.post("/predict", json={"image": bare}).json()
        assert np.allclose(opaque["input"], answer["input"], atol=0.05)
        assert max(answer["input"]) == pytest.approx(1.0, abs=1e-3)
        correct += answer["digit"] == digit
    assert correct >= 7


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def _huge_png() -> bytes:
    return _png("1", (20000, 20000))  # a few kB that would decode to 400 megapixels


@pytest.mark.parametrize("body, words", [
    ({"pixels": [0.5] * 783}, ["783", "784"]),
    ({"pixels": [0.5] * 783 + [2.0]}, ["0..1"]),
    ({"pixels": [0.5] * 783 + [255]}, ["255"]),
    ({"pixels": [0.5] * 783 + ["0.5"]}, ["numbers"]),
    ({"pixels": [0.5] * 783 + [True]}, ["numbers"]),
    ({"pixels": []}, ["784"]),
    ({"pixels": [[0.5] * 784, [0.5] * 10]}, ["pixels[1]"]),
    ({"pixels": "zeros"}, ["784"]),
    ({"image": "data:image/png;base64,%%%"}, ["base64"]),
    ({"image": base64.b64encode(b"not an image at all").decode()}, ["cannot be decoded"]),
    ({"image": base64.b64encode(blank_png()).decode()}, ["nothing is drawn"]),
    ({"image": base64.b64encode(_huge_png()).decode()}, ["pixels", "scale it down"]),
    ({"image": base64.b64encode(_png("L", (9000, 2))).decode()}, ["9000x2", "8192"]),
    ({"image": 42}, ["data URL"]),
    ({}, ["pixels"]),
    ({"pixels": [0.0] * 784, "image": "x"}, ["either"]),
    ({"pixels": [0.0] * 784, "run_id": "seven"}, ["run_id"]),
    ({"pixels": [0.0] * 784, "extra": 1}, ["extra"]),
])
def test_predict_bad_inputs_are_422(trained, body, words):
    assert_readable(trained[0].post("/predict", json=body), 422, *words)


@pytest.mark.parametrize("raw, words", [
    (b'{"pixels": [NaN' + b", 0.5" * 783 + b"]}", ["NaN"]),
    (b'{"pixels": [Infinity' + b", 0.5" * 783 + b"]}", ["NaN or infinity"]),
    (b'{"pixels": [1e999' + b", 0.5" * 783 + b"]}", ["NaN or infinity"]),
    (b'{"pixels": [', ["JSON"]),
    (b"[1, 2]", ["object"]),
    (b"", ["empty"]),
])
def test_predict_malformed_json_is_422(trained, raw, words):
    response = trained[0].post("/predict", content=raw, headers={"Content-Type": "application/json"})
    assert_readable(response, 422, *words)


def test_predict_unknown_run_is_404_and_uploads_need_a_file(trained):
    client, _ = trained
    assert_readable(client.post("/predict", json={"pixels": [0.0] * 784, "run_id": 999}), 404)
    assert_readable(client.post("/predict", files={"picture": ("a.png", blank_png(), "image/png")}),
                    422, "file")
    assert_readable(client.post("/predict", files={"file": ("a.png", b"", "image/png")}), 422)


def test_bodies_over_the_cap_are_413(trained):
    client, _ = trained
    big = json.dumps({"image": "A" * (2 * 1024 * 1024)})
    assert_readable(client.post("/predict", content=big,
                                headers={"Content-Type": "application/json"}), 413, "MB")

    def chunks():  # no Content-Length: the bytes that arrive are counted
        for _ in range(40):
            yield b"A" * 65536

    assert_readable(client.post("/predict", content=chunks(),
                                headers={"Content-Type": "application/json"}), 413)
    assert_readable(client.post("/api/runs", content=big,
                                headers={"Content-Type": "application/json"}), 413)
    upload = {"file": ("big.png", b"\x89PNG" + b"0" * (3 * 1024 * 1024), "image/png")}
    assert_readable(client.post("/predict", files=upload), 413)
