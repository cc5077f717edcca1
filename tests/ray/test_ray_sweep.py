"""A sweep on a Ray cluster: the sweep service talks to the run service only, so its trials train
as actors like any run of `mnist-lab serve --executor ray`; each trial watched live from its start
gets every step exactly once, and stores it once."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.app.conftest import TRAIN_SUBSET
from tests.app.test_server_e2e import steps_of, watch
from tests.ray.test_ray_server import no_actors_left, ray_server
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.mnist, pytest.mark.slow]


def test_a_sweep_of_four_trials_completes_through_the_ray_executor(tmp_path, ray_cluster, mnist_dir):
    data_dir = tmp_path / "data"
    with ray_server(data_dir, ray_cluster, mnist_dir, MNIST_LAB_MAX_CONCURRENT_RUNS="2") as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/api/sweeps", json={
            "name": "on ray", "method": "grid", "max_concurrent": 2,
            "base": {"hidden_layers": [32], "epochs": 2, "batch_size": 50, "seed": 3},
            "space": {"learning_rate": {"values": [0.01, 0.03, 0.1, 0.2]}}})
        assert answer.status_code == 201, answer.text
        sweep_id = answer.json()["id"]
        streams: dict[int, list[dict]] = {}
        watchers: list[threading.Thread] = []

        def watch_new_trials():
            sweep = client.get(f"/api/sweeps/{sweep_id}").json()
            for trial in sweep["trials"]:
                if trial["run_id"] not in streams:  # watched from the moment it appears
                    streams[trial["run_id"]] = []
                    thread = threading.Thread(target=lambda r=trial["run_id"]: streams[r].extend(
                        watch(server, r, limit_s=300)))
                    thread.start()
                    watchers.append(thread)
            return sweep if sweep["status"] != "running" else None

        sweep = wait_for(watch_new_trials, 600, 0.1, "the sweep on the cluster")
        for thread in watchers:
            thread.join(300)
        assert sweep["status"] == "completed", sweep
        assert sorted(t["params"]["learning_rate"] for t in sweep["trials"]) == [0.01, 0.03, 0.1, 0.2]
        steps_total = 2 * TRAIN_SUBSET // 50
        for trial in sweep["trials"]:
            assert trial["status"] == "completed" and trial["epochs"] == 2
            messages = streams[trial["run_id"]]
            assert steps_of(messages) == list(range(steps_total))  # each step once, in order
            assert messages[-1]["type"] == "status" and messages[-1]["status"] == "completed"
            stored = client.get(f"/api/runs/{trial['run_id']}/metrics").json()["iterations"]
            assert [point["step"] for point in stored] == list(range(steps_total))
            run = client.get(f"/api/runs/{trial['run_id']}").json()
            assert run["has_model"] and run["sweep_id"] == sweep_id
        best = sweep["best_trial"]
        assert best["value"] == max(t["value"] for t in sweep["trials"])
        assert client.put("/api/active-model", json={"run_id": best["run_id"]}).status_code == 200
        wait_for(lambda: no_actors_left(ray_cluster), 30, what="every trial's actor to exit")
