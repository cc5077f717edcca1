"""The Docker image, built from the repository's Dockerfile and run by a real daemon: its commands,
its health, its token, and a real prediction from a model trained inside it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine.data import MnistData
from tests.app.liveserver import wait_for, wait_for_status
from tests.docker.conftest import Container
from tests.docker.daemon import Docker

# The first test also waits for the fixtures: debootstrap (once per month) and `docker build`.
pytestmark = pytest.mark.timeout(3600)

TINY_RUN = {"preset": "notebook", "epochs": 1, "seed": 1}  # 784-128-10, one epoch: ~95% correct
DIGITS = 200  # test digits predicted in one batch (rounded pixels keep the body far below 2 MB)


def test_the_image_runs_unprivileged_and_its_commands_work_without_the_benchmark(
        docker: Docker, image: str):
    def in_image(*command: str):
        return docker.run("run", "--rm", image, *command, check=False, timeout=300)

    assert in_image("id", "-u").stdout.strip() == "10001"
    presets = in_image("mnist-lab", "presets")
    assert presets.returncode == 0, presets.stderr
    assert "notebook" in presets.stdout
    bench = in_image("mnist-lab", "bench", "--epochs", "1")  # bench/ is not in the product wheel
    assert bench.returncode == 2
    assert "source checkout" in bench.stderr and "Traceback" not in bench.stderr, bench.stderr


def test_healthz_answers_and_docker_reports_the_container_healthy(docker: Docker, server: Container):
    with server.client() as client:
        answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"

    def health() -> str | None:  # the Dockerfile's HEALTHCHECK, run by the daemon every 30 s
        state = docker.run("inspect", "--format", "{{.State.Health.Status}}", server.name)
        status = state.stdout.strip()
        assert status != "unhealthy", server.logs()
        return status == "healthy"

    wait_for(health, 120, 1.0, "Docker's HEALTHCHECK to report the container healthy")


def test_writes_without_the_token_are_refused_and_change_nothing(server: Container):
    with server.client() as client:
        before = client.get("/api/runs").json()["runs"]
        missing = client.post("/api/runs", json=TINY_RUN)
        wrong = client.post("/api/runs", json=TINY_RUN,
                            headers={"Authorization": f"Bearer {server.token}x"})
        after = client.get("/api/runs").json()["runs"]
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in missing.json()["detail"]
    assert wrong.status_code == 403
    assert after == before


def test_predict_needs_a_model_which_the_token_holder_trains_and_a_new_container_keeps(
        containers: Callable[..., Container], mnist_data: MnistData):
    first = containers()
    images = mnist_data.test_images[:DIGITS].reshape(DIGITS, -1) / 255.0
    labels = mnist_data.test_labels[:DIGITS]
    pixels = {"pixels": np.round(images, 3).tolist()}
    with first.client() as client:
        before = client.post("/predict", json={"pixels": pixels["pixels"][0]})
        assert before.status_code == 409, before.text
        assert "no trained model" in before.json()["detail"]

        created = client.post("/api/runs", json=TINY_RUN,
                              headers={"Authorization": f"Bearer {first.token}"})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        run = wait_for_status(client, run_id, {"completed", "failed", "stopped"}, timeout=900)
        assert run["status"] == "completed", (run, first.logs())
        accuracy = _accuracy(client.post("/predict", json=pixels), run_id, labels)
    assert accuracy >= 0.85, f"{accuracy:.1%} of {DIGITS} test digits right after one epoch"

    first.remove()  # the same volume in a new container: the run and its model are still there
    second = containers(volume=first.volume)
    with second.client() as client:
        runs = client.get("/api/runs").json()["runs"]
        assert [(run["id"], run["status"]) for run in runs] == [(run_id, "completed")]
        assert _accuracy(client.post("/predict", json=pixels), run_id, labels) == accuracy


def _accuracy(answer, run_id: int, labels: np.ndarray) -> float:
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == len(labels)
    for prediction in predictions:
        assert prediction["run_id"] == run_id
        probabilities = np.array(prediction["probabilities"])
        assert probabilities.shape == (10,) and abs(probabilities.sum() - 1) < 1e-4
        assert prediction["digit"] == int(probabilities.argmax())
    return float(np.mean(np.array([p["digit"] for p in predictions]) == labels))
