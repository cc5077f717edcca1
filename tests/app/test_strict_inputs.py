"""Strict inputs on a real `mnist-lab serve`: nothing is coerced (no bool or string read as a
number), integers in queries are bounded, what was sent is quoted only in part, and the server's
own limits (steps per run, units per layer) are the ones its answers name."""

from __future__ import annotations

import httpx
import pytest

from tests.app.liveserver import LiveServer, wait_for_status

pytestmark = pytest.mark.mnist

MEGABYTE_NAME = "x" * (1 << 20)


@pytest.fixture(scope="module")
def client(tmp_path_factory, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "2000", "MNIST_LAB_TEST_SUBSET": "200"}
    with LiveServer(tmp_path_factory.mktemp("strict") / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def detail(answer: httpx.Response, status: int = 422) -> str:
    assert answer.status_code == status, answer.text[:500]
    return answer.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"epochs": True}, "epochs"),
    ({"learning_rate": True}, "learning_rate"),
    ({"batch_size": "64"}, "batch_size"),
    ({"epochs": "3_0"}, "epochs"),
    ({"seed": "7"}, "seed"),
    ({"hidden_layers": [True, 64]}, "hidden_layers"),
    ({"hidden_layers": ["128"]}, "hidden_layers"),
    ({"augmentation": {"shift": "2"}}, "augmentation.shift"),
    ({"batch_norm": 1}, "batch_norm"),
    ({"batch_norm": "true"}, "batch_norm"),
    ({"dropout": False}, "dropout"),
])
def test_no_bool_or_string_is_read_as_a_number(client, body, field):
    text = detail(client.post("/api/runs", json=body))
    assert text.startswith(field), text
    assert client.get("/api/runs").json()["runs"] == []  # nothing was created


@pytest.mark.parametrize("run_id", [True, "1", 1.5, 2**64, 0])
def test_active_model_run_id_is_a_run_id_not_anything_like_one(client, run_id):
    text = detail(client.put("/api/active-model", json={"run_id": run_id}))
    assert "run_id" in text


@pytest.mark.parametrize("run_id", [True, "1", 2**64])
def test_predict_run_id_in_json_is_a_number(client, run_id):
    text = detail(client.post("/predict", json={"pixels": [0.5] * 784, "run_id": run_id}))
    assert "run_id" in text


@pytest.mark.parametrize("path, body", [
    ("/api/runs", {"preset": MEGABYTE_NAME}),
    ("/api/runs", {"activation": MEGABYTE_NAME}),
    ("/api/runs", {MEGABYTE_NAME: 1}),
    ("/api/runs", {"augmentation": {MEGABYTE_NAME: 1}}),
    ("/predict", {"pixels": [MEGABYTE_NAME] + [0.0] * 783}),
    ("/predict", {"pixels": [0.5] * 784, "run_id": MEGABYTE_NAME}),
    ("/predict", {MEGABYTE_NAME: 1}),
])
def test_a_megabyte_of_text_is_quoted_only_in_part(client, path, body):
    answer = client.post(path, json=body)
    assert answer.status_code in (409, 422)  # 409: the pixels are read once there is a model
    assert len(answer.content) < 2000, answer.text[:300]


def test_metrics_after_beyond_the_largest_exact_json_integer_is_422(client):
    run = client.post("/api/runs", json={"hidden_layers": [8], "epochs": 1, "batch_size": 500}).json()
    wait_for_status(client, run["id"], {"completed"}, 120)
    for after in (2**53, 2**63, 2**64 + 5, 10**30):
        text = detail(client.get(f"/api/runs/{run['id']}/metrics", params={"after": after}))
        assert "after" in text
    assert client.get(f"/api/runs/{run['id']}/metrics", params={"after": 2**53 - 1}).json()[
        "iterations"] == []
    assert client.get("/healthz").status_code == 200
    assert client.delete(f"/api/runs/{run['id']}").status_code == 204


def test_steps_per_run_are_limited_with_the_setting_to_change(client):
    text = detail(client.post("/api/runs", json={"hidden_layers": [8], "batch_size": 1, "epochs": 150}))
    assert "300,000 steps" in text and "MNIST_LAB_MAX_STEPS_PER_RUN" in text
    assert "larger batch size or fewer epochs" in text
    assert client.get("/api/options").json()["limits"]["max_steps_per_run"] == 100_000


def test_a_value_past_the_engines_bound_is_refused_with_the_servers(client):
    text = detail(client.post("/api/runs", json={"hidden_layers": [70000]}))
    assert "4096" in text and "MNIST_LAB_MAX_UNITS_PER_LAYER" in text and "65536" not in text
    text = detail(client.post("/api/runs", json={"epochs": 5000}))
    assert "at most 200" in text and "MNIST_LAB_MAX_EPOCHS" in text
