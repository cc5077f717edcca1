"""A damaged model file on a real `mnist-lab serve`: truncated, bit-flipped, or not a model at
all. Every read of that model answers 409 with what to do, other runs keep working, and when it
is the active model, default predictions say that it is."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.app.liveserver import LiveServer

pytestmark = pytest.mark.mnist

PIXELS = {"pixels": [0.0] * 300 + [1.0] * 184 + [0.0] * 300}


def truncated(original: bytes) -> bytes:
    return original[: len(original) // 2]


def bit_flipped(original: bytes) -> bytes:
    damaged = bytearray(original)
    for offset in range(len(damaged) // 3, len(damaged) // 3 + 64, 8):  # inside the weights
        damaged[offset] ^= 0x10
    return bytes(damaged)


def not_a_model(original: bytes) -> bytes:
    return b"this is a text file, not a model\n" * 10


@pytest.fixture(scope="module")
def server(tmp_path_factory, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "500", "MNIST_LAB_TEST_SUBSET": "100"}
    with LiveServer(tmp_path_factory.mktemp("corrupt") / "data", env=env) as live:
        damaged, healthy = live.train_tiny_model(), live.train_tiny_model()
        yield live, damaged, healthy


def model_file(server: LiveServer, run_id: int) -> Path:
    return server.data_dir / "models" / f"run-{run_id}.npz"


@pytest.mark.parametrize("damage", [truncated, bit_flipped, not_a_model])
def test_a_damaged_model_answers_409_with_what_to_do_and_others_keep_working(server, damage):
    live, damaged, healthy = server
    path = model_file(live, damaged)
    original = path.read_bytes()
    with httpx.Client(base_url=live.url, timeout=60) as client:
        try:
            path.write_bytes(damage(original))
            for answer in (client.post("/predict", json={**PIXELS, "run_id": damaged}),
                           client.get(f"/api/runs/{damaged}/evaluation"),
                           client.get(f"/api/runs/{damaged}/weights")):
                assert answer.status_code == 409, answer.text
                detail = answer.json()["detail"]
                assert f"run {damaged}" in detail and "damaged" in detail, detail
                assert f"DELETE /api/runs/{damaged}" in detail
            # The other run is untouched, and so is the server.
            assert client.post("/predict", json={**PIXELS, "run_id": healthy}).status_code == 200
            assert client.get(f"/api/runs/{healthy}/evaluation").status_code == 200
            assert client.get(f"/api/runs/{healthy}/weights").status_code == 200

            # As the active model: default predictions say so and how to choose another.
            assert client.put("/api/active-model", json={"run_id": damaged}).status_code == 200
            answer = client.post("/predict", json=PIXELS)
            assert answer.status_code == 409, answer.text
            detail = answer.json()["detail"]
            assert f"the active model (run {damaged})" in detail
            assert "PUT /api/active-model" in detail
            assert client.put("/api/active-model", json={"run_id": healthy}).status_code == 200
            assert client.post("/predict", json=PIXELS).json()["run_id"] == healthy
        finally:
            path.write_bytes(original)
            client.put("/api/active-model", json={"run_id": None})
        # Repaired (a new file version): read again and answered.
        assert client.post("/predict", json={**PIXELS, "run_id": damaged}).status_code == 200
