"""The sweep API without training anything: what it refuses (422, 404, 409, with a message a
person understands) and how it shows a sweep whose trials are runs in a real store. Sweeps that
train are in test_sweeps_e2e.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from app.store import Store
from app.sweeps.spec import make_spec
from engine.config import TrainConfig, field_bounds

GOOD = {"name": "lr", "base": {"preset": "notebook", "epochs": 3},
        "space": {"learning_rate": {"min": 0.001, "max": 0.3, "log": True}},
        "method": "tpe", "trials": 4, "pruner": "median", "max_concurrent": 2}


def epoch(number: int, accuracy: float) -> dict:
    return {"epoch": number, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1 - accuracy,
            "val_accuracy": accuracy, "running_loss": 1.1, "running_accuracy": 0.45,
            "duration_s": 1.0, "learning_rate": 0.1}


def stored_sweep(settings: Settings) -> int:
    """A finished sweep of three trials in the store: completed (0.8), pruned after 1 of 3
    epochs (0.3), completed (0.9)."""
    base = TrainConfig.from_dict({"preset": "notebook", "epochs": 3})
    spec = make_spec(base=base, fields=field_bounds(), space={
        "learning_rate": {"min": 0.001, "max": 0.3, "log": True},
        "hidden_layers": {"values": [[32], [64, 32]]}}, name="two fields", trials=3,
        pruner="median")
    store = Store(settings.database_path)
    sweep = store.create_sweep(spec.name, spec.to_json(), "2030-01-01T00:00:00Z")
    for trial, (rate, layers, accuracies, status) in enumerate([
            (0.01, [32], [0.7, 0.8, 0.8], "completed"), (0.001, [64, 32], [0.3], "pruned"),
            (0.2, [64, 32], [0.85, 0.9, 0.9], "completed")]):
        config = base.replace(learning_rate=rate, hidden_layers=layers).to_dict()
        run = store.create_run(config, f"2030-01-01T00:00:0{trial}Z", sweep["id"], trial)
        for number, accuracy in enumerate(accuracies, start=1):
            store.add_epoch(run["id"], epoch(number, accuracy))
        store.update_run(run["id"], status=status, epoch=len(accuracies),
                         best_val_accuracy=max(accuracies))
    store.update_sweep(sweep["id"], status="completed", finished_at="2030-01-01T00:05:00Z")
    store.close()
    return sweep["id"]


@pytest.fixture
def client(tmp_path):
    settings = Settings(data_dir=tmp_path, max_concurrent_runs=1, max_sweep_trials=50,
                        max_sweep_concurrent=4, max_runs_kept=10)
    sweep_id = stored_sweep(settings)
    with TestClient(create_app(settings)) as client:
        client.sweep_id = sweep_id
        yield client


def refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail
    return detail


def test_a_stored_sweep_shows_its_trials_their_values_and_the_best(client):
    sweep = client.get(f"/api/sweeps/{client.sweep_id}").json()
    assert (sweep["name"], sweep["status"], sweep["spec"]["method"], sweep["spec"]["trials"]) == (
        "two fields", "completed", "tpe", 3)
    assert sweep["spec"]["space"]["hidden_layers"] == {"values": [[32], [64, 32]]}
    trials = {trial["trial"]: trial for trial in sweep["trials"]}
    assert [trials[n]["value"] for n in range(3)] == [0.8, 0.3, 0.9]
    assert trials[1]["pruned"] and trials[1]["status"] == "pruned" and trials[1]["epochs"] == 1
    assert trials[2]["params"] == {"learning_rate": 0.2, "hidden_layers": [64, 32]}
    assert trials[2]["config"]["init"] == "notebook"
    assert sweep["best_trial"]["trial"] == 2 and sweep["best_trial"]["run_id"] == trials[2]["run_id"]
    assert sweep["progress"] == {"planned": 3, "finished": 3, "running": 0, "pruned": 1, "failed": 0,
                                 "epochs_trained": 7, "epochs_pruned": 2}
    listed = client.get("/api/sweeps").json()["sweeps"]
    assert [s["id"] for s in listed] == [client.sweep_id] and "trials" not in listed[0]
    run = client.get(f"/api/runs/{trials[1]['run_id']}").json()  # a trial is a run
    assert (run["sweep_id"], run["trial"], run["status"]) == (client.sweep_id, 1, "pruned")


def test_options_name_the_statuses_and_what_a_sweep_may_use(client):
    options = client.get("/api/options").json()
    assert "pruned" in options["statuses"] and options["active_statuses"] == ["queued", "running",
                                                                              "paused"]
    assert options["sweeps"] == {"methods": ["grid", "random", "tpe"],
                                 "pruners": ["none", "median", "asha"],
                                 "metrics": {"val_accuracy": "maximize", "val_loss": "minimize"},
                                 "statuses": ["running", "completed", "stopped", "failed"]}
    assert options["limits"]["max_sweep_trials"] == 50


@pytest.mark.parametrize(("change", "status", "words"), [
    ({"space": {}}, 422, ["at least one field"]),
    ({"space": {"learning_rate": {"min": 0.3, "max": 0.001}}}, 422, ["space.learning_rate", "below max"]),
    ({"space": {"lr": {"min": 0.01, "max": 0.3}}}, 422, ['"lr" is not a config field', "learning_rate"]),
    ({"space": {"learning_rate": {"min": 0.01, "max": 0.3, "low": 1}}}, 422,
     ["space.learning_rate.low is not a known field"]),
    ({"space": {"batch_size": {"values": [64, 100000]}}}, 422, ["from 1 to 8192, got 100000"]),
    ({"space": {"hidden_layers": {"values": [[8192]]}}}, 422, ["from 1 to 4096"]),
    ({"space": {"hidden_layers": {"values": [[4096, 4096, 4096]]}}, "base": {"batch_size": 8192}},
     422, ["larger than the server allows"]),
    ({"method": "grid"}, 422, ["learning_rate is a continuous range"]),
    ({"method": "bayes"}, 422, ["method"]),
    ({"pruner": "hyperband"}, 422, ["pruner"]),
    ({"metric": "test_accuracy"}, 422, ["metric"]),
    ({"trials": 0}, 422, ["trials must be from 1 to 50"]),
    ({"trials": 51}, 422, ["trials must be from 1 to 50"]),
    ({"trials": "4"}, 422, ["trials"]),
    ({"trials": True}, 422, ["trials"]),
    ({"max_concurrent": 5}, 422, ["max_concurrent must be from 1 to 4"]),
    ({"base": "no-such-preset"}, 422, ["unknown preset"]),
    ({"base": {"learning_rate": -1}}, 422, ["learning_rate"]),
    ({"colour": "red"}, 422, ["colour is not a known field"]),
    ({"trials": 8}, 409, ["3 runs are stored", "room for 8 more", "MNIST_LAB_MAX_RUNS_KEPT"]),
])
def test_a_sweep_that_cannot_run_is_refused_before_anything_starts(client, change, status, words):
    refused(client.post("/api/sweeps", json={**GOOD, **change}), status, *words)
    assert len(client.get("/api/sweeps").json()["sweeps"]) == 1
    assert len(client.get("/api/runs").json()["runs"]) == 3


def test_missing_and_finished_sweeps(client):
    refused(client.get("/api/sweeps/99"), 404, "there is no sweep 99")
    refused(client.post("/api/sweeps/99/stop"), 404, "there is no sweep 99")
    refused(client.delete("/api/sweeps/99"), 404, "there is no sweep 99")
    refused(client.post(f"/api/sweeps/{client.sweep_id}/stop"), 409, "is completed",
            "only a running sweep")


def test_deleting_a_sweep_deletes_its_trials_runs(client):
    runs = [t["run_id"] for t in client.get(f"/api/sweeps/{client.sweep_id}").json()["trials"]]
    assert client.put("/api/active-model", json={"run_id": runs[0]}).status_code in (200, 409)
    assert client.delete(f"/api/sweeps/{client.sweep_id}").status_code == 204
    assert client.get("/api/sweeps").json()["sweeps"] == []
    assert client.get("/api/runs").json()["runs"] == []
    refused(client.get(f"/api/runs/{runs[0]}"), 404)


def test_openapi_documents_the_sweep_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths["/api/sweeps"])
    assert {"get", "delete"} <= set(paths["/api/sweeps/{sweep_id}"])
    assert "post" in paths["/api/sweeps/{sweep_id}/stop"]


def test_a_sweep_whose_stored_spec_cannot_be_read_does_not_stop_the_server(tmp_path):
    settings = Settings(data_dir=tmp_path, max_concurrent_runs=1)
    good = stored_sweep(settings)
    store = Store(settings.database_path)
    broken = store.create_sweep("damaged", {"space": {"colour": {"values": [1]}}}, "2030-01-02T00:00:00Z")
    store.close()
    with TestClient(create_app(settings)) as client:
        assert [s["id"] for s in client.get("/api/sweeps").json()["sweeps"]] == [good]
        refused(client.get(f"/api/sweeps/{broken['id']}"), 404)
        assert len(client.get("/api/runs").json()["runs"]) == 3  # the good sweep's trials
