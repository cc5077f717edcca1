"""Pause and resume on a real `mnist-lab serve`: a pause right after a resume reaches the worker
(issue 13, item 8: one pause in ten waited the whole stop timeout for a confirmation that never
came, because the resume and the pause flipped the worker's event before it woke up)."""

from __future__ import annotations

import httpx
import pytest

from tests.app.liveserver import LiveServer, wait_for_status

pytestmark = pytest.mark.mnist

ROUNDS = 40
TIMED_OUT = "has not paused after"  # the server's warning when a pause was not confirmed in time


def test_pause_right_after_resume_is_confirmed_by_the_worker_every_time(tmp_path, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "2000",
           "MNIST_LAB_TEST_SUBSET": "500", "MNIST_LAB_STOP_TIMEOUT_S": "3"}
    run = {"hidden_layers": [32], "epochs": 100, "batch_size": 32, "seed": 5}
    with LiveServer(tmp_path / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/api/runs", json=run).json()["id"]
        wait_for_status(client, run_id, {"running"}, 60)
        statuses = []
        for _ in range(ROUNDS):
            paused = client.post(f"/api/runs/{run_id}/pause")
            statuses.append(paused.json()["status"])
            resumed = client.post(f"/api/runs/{run_id}/resume")
            assert resumed.status_code == 200, resumed.text
        client.post(f"/api/runs/{run_id}/stop")
        log = server.log(None)
    assert statuses == ["paused"] * ROUNDS
    timeouts = log.count(TIMED_OUT)
    assert timeouts == 0, f"{timeouts} of {ROUNDS} pauses were never confirmed by the worker"
