"""Sweeps on a real `mnist-lab serve` training real MNIST (a slice): a sweep with pruning runs to
the end and its trials are runs like any other (streamed, stored, predicted with), trials train
side by side on the local pool, a stop stops them, and a sweep goes on after the server is
killed."""

from __future__ import annotations

import signal

import httpx
import numpy as np
import pytest

from tests.app.conftest import TEST_SUBSET, TRAIN_SUBSET
from tests.app.liveserver import LiveServer
from tests.app.test_server_e2e import steps_of, watch
from tests.waiting import wait_for

pytestmark = [pytest.mark.mnist, pytest.mark.slow]
# Small and quick: 20 steps an epoch on the slice, no augmentation.
BASE = {"preset": "notebook", "init": "he", "hidden_layers": [32], "batch_size": 100, "epochs": 3,
        "lr_schedule": "constant"}
GRID = [0.2, 0.1, 0.05, 0.00001, 0.00003, 0.0001]  # three that learn, three that barely move


def server_env(mnist_dir, **extra) -> dict[str, str]:
    return {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": str(TRAIN_SUBSET),
            "MNIST_LAB_TEST_SUBSET": str(TEST_SUBSET), "MNIST_LAB_WORKER_NICE": "0",
            "MNIST_LAB_MAX_CONCURRENT_RUNS": "2", **extra}


@pytest.fixture(scope="module")
def live(tmp_path_factory, mnist_dir):
    with LiveServer(tmp_path_factory.mktemp("sweeps") / "data", server_env(mnist_dir)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        yield server, client


def start_sweep(client: httpx.Client, **body) -> dict:
    response = client.post("/api/sweeps", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_sweep(client: httpx.Client, sweep_id: int, timeout: float = 600) -> dict:
    def ended():
        sweep = client.get(f"/api/sweeps/{sweep_id}").json()
        return sweep if sweep["status"] != "running" else None
    return wait_for(ended, timeout, 0.5, f"sweep {sweep_id} to end")


def test_a_sweep_with_pruning_completes_and_its_trials_are_runs(live, mnist_data):
    server, client = live
    sweep = start_sweep(client, name="learning rates", base=BASE, method="grid", pruner="asha",
                        space={"learning_rate": {"values": GRID}}, max_concurrent=1)
    assert sweep["status"] == "running" and sweep["spec"]["trials"] == len(GRID)
    assert [t["status"] for t in sweep["trials"]] in (["queued"], ["running"])
    sweep = wait_for_sweep(client, sweep["id"])
    assert sweep["status"] == "completed" and sweep["reason"] is None
    trials = sweep["trials"]
    assert sorted(t["params"]["learning_rate"] for t in trials) == sorted(GRID)  # each point once
    assert [t["trial"] for t in trials] == list(range(len(GRID)))
    pruned = [t for t in trials if t["status"] == "pruned"]
    completed = [t for t in trials if t["status"] == "completed"]
    assert pruned and len(pruned) + len(completed) == len(GRID), trials
    assert sweep["progress"]["pruned"] == len(pruned)
    assert sweep["progress"]["epochs_pruned"] == sum(3 - t["epochs"] for t in pruned) > 0
    best = max(completed, key=lambda t: t["value"])
    assert sweep["best_trial"] == best and best["params"]["learning_rate"] >= 0.05

    for trial in trials:  # every trial is an ordinary run, its curves and model kept
        run = client.get(f"/api/runs/{trial['run_id']}").json()
        assert (run["sweep_id"], run["trial"], run["status"]) == (sweep["id"], trial["trial"],
                                                                  trial["status"])
        assert len(run["epochs"]) == trial["epochs"]
        if trial in completed:
            assert trial["epochs"] == 3
        # A trial's value is its kept epoch's: the model its run keeps, the best on validation.
        kept = run["epochs"][run["model_epoch"] - 1]
        assert run["has_model"] and kept["val_accuracy"] == trial["value"]
        assert kept["val_accuracy"] == max(epoch["val_accuracy"] for epoch in run["epochs"])
        if trial in pruned:
            assert trial["epochs"] < 3 and "pruned after epoch" in run["reason"]
            assert "successive halving" in trial["reason"]
        metrics = client.get(f"/api/runs/{trial['run_id']}/metrics").json()
        assert len(metrics["iterations"]) >= 20 * trial["epochs"]
    streamed = watch(server, pruned[0]["run_id"])  # a finished trial streams like any run
    assert steps_of(streamed) == list(range(len(steps_of(streamed)))) and streamed[0]["epochs"]

    digit = np.round(mnist_data.test_images[0] / 255.0, 3).tolist()
    answer = client.post("/predict", json={"pixels": digit, "run_id": best["run_id"]})
    assert answer.status_code == 200 and answer.json()["run_id"] == best["run_id"]
    chosen = client.put("/api/active-model", json={"run_id": best["run_id"]}).json()
    assert chosen == {"run_id": best["run_id"], "chosen_by": "user"}
    listed = client.get("/api/sweeps").json()["sweeps"]
    assert listed[0]["id"] == sweep["id"] and listed[0]["best_trial"]["trial"] == best["trial"]


def test_trials_train_side_by_side_and_a_stop_stops_them(live):
    server, client = live
    sweep = start_sweep(client, base={**BASE, "epochs": 100}, method="random", trials=6,
                        space={"learning_rate": {"min": 0.01, "max": 0.3, "log": True}},
                        max_concurrent=2)

    def two_training():
        trials = client.get(f"/api/sweeps/{sweep['id']}").json()["trials"]
        return [t for t in trials if t["status"] == "running" and t["epochs"] >= 1]
    assert len(wait_for(lambda: len(two_training()) == 2 and two_training(), 120, 0.2,
                        "two trials training at once")) == 2
    assert len(server.worker_pids()) == 2

    stopped = client.post(f"/api/sweeps/{sweep['id']}/stop").json()
    assert stopped["status"] == "stopped" and stopped["finished_at"]
    assert {t["status"] for t in stopped["trials"]} == {"stopped"}
    assert len(stopped["trials"]) == 2  # nothing more was started
    assert client.post(f"/api/sweeps/{sweep['id']}/stop").status_code == 409
    assert wait_for(lambda: not server.worker_pids(), 30, what="the workers to exit") is True
    assert client.delete(f"/api/sweeps/{sweep['id']}").status_code == 204
    run_ids = {run["id"] for run in client.get("/api/runs").json()["runs"]}
    assert not run_ids & {t["run_id"] for t in stopped["trials"]}


def test_a_sweep_goes_on_after_the_server_is_killed(tmp_path, mnist_dir):
    data_dir = tmp_path / "data"
    body = {"name": "restart", "base": {**BASE, "epochs": 2, "batch_size": 20}, "method": "grid",
            "space": {"learning_rate": {"values": [0.1, 0.05]}}, "max_concurrent": 1}
    first = LiveServer(data_dir, server_env(mnist_dir)).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            sweep = start_sweep(client, **body)
            trial = wait_for(lambda: [t for t in client.get(f"/api/sweeps/{sweep['id']}").json()[
                "trials"] if t["epochs"] >= 1 and t["status"] == "running"], 120, 0.05,
                "a trial halfway")[0]
        first.kill(signal.SIGKILL)  # no shutdown at all: the trial is cut off mid-epoch
    finally:
        first.stop()

    with LiveServer(data_dir, server_env(mnist_dir)) as second, \
            httpx.Client(base_url=second.url, timeout=60) as client:
        resumed = client.get(f"/api/sweeps/{sweep['id']}").json()
        trials = {t["trial"]: t for t in resumed["trials"]}
        assert trials[trial["trial"]]["status"] == "interrupted"
        done = wait_for_sweep(client, sweep["id"])
        assert done["status"] == "completed", done
        again = [t for t in done["trials"] if t["trial"] != trial["trial"]
                 and t["params"] == trial["params"]]
        assert len(again) == 1 and again[0]["status"] == "completed"  # the same point, redone
        finished = [t for t in done["trials"] if t["status"] == "completed"]
        assert sorted(t["params"]["learning_rate"] for t in finished) == [0.05, 0.1]
        assert done["progress"]["finished"] == 2 and done["progress"]["planned"] == 2
