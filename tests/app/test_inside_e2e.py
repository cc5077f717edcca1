"""End to end, issue 12: honest metrics (validation held out, test once, the model selected on
validation), the layer statistics streamed and stored, and step mode, on a real server with
real workers and real MNIST (2,000 training digits; the last 5,000 of the 60,000 held out)."""

from __future__ import annotations

import base64
import time

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from tests.app.conftest import TEST_SUBSET, TRAIN_SUBSET
from tests.app.liveserver import LiveServer, strict_json, wait_for_status
from tests.app.test_server_e2e import TERMINAL, server_env, start_run, steps_of
from tests.waiting import wait_for

pytestmark = [pytest.mark.mnist, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(tmp_path_factory, mnist_dir):
    with LiveServer(tmp_path_factory.mktemp("inside") / "data", server_env(mnist_dir)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield server, client


def follow(server: LiveServer, run_id: int, limit_s: float = 120) -> list[dict]:
    """Every message of one connection until the run's final status."""
    messages = []
    with connect(f"{server.ws_url}/ws/runs/{run_id}", open_timeout=10,
                 max_size=16 * 1024 * 1024) as socket:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            message = strict_json(socket.recv(timeout=limit_s))
            messages.append(message)
            status = message["run"]["status"] if message["type"] == "snapshot" else message.get("status")
            if message["type"] in ("snapshot", "status") and status in TERMINAL:
                break
    return messages


def all_layers(client: httpx.Client, run_id: int, limit: int = 100) -> list[dict]:
    snapshots, after = [], -1
    while True:
        answer = client.get(f"/api/runs/{run_id}/layers", params={"after": after, "limit": limit})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        snapshots += page["snapshots"]
        if not page["more"]:
            return snapshots
        after = page["snapshots"][-1]["step"]


def test_a_default_run_reports_validation_and_a_final_test_that_differ(live):
    server, client = live
    run = start_run(client, epochs=3, seed=11)  # the default preset: 5,000 digits held out
    assert run["samples"] == {"train": TRAIN_SUBSET, "validation": 5000, "test": TEST_SUBSET}
    assert run["config"]["validation_size"] == 5000
    done = wait_for_status(client, run["id"], TERMINAL, 120)
    assert done["status"] == "completed"
    epochs = done["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    for epoch in epochs:
        assert 0.5 < epoch["val_accuracy"] <= 1 and epoch["val_loss"] > 0
        assert 0.5 < epoch["train_accuracy"] <= 1 and epoch["running_loss"] > 0
    best = max(epochs, key=lambda e: (e["val_accuracy"], -e["val_loss"]))
    assert done["model_epoch"] == best["epoch"]  # selected on validation
    assert done["best_val_accuracy"] == best["val_accuracy"]
    # Test: another set of digits, measured once, for the kept model.
    assert done["test_accuracy"] is not None and done["test_loss"] > 0
    assert all(done["test_loss"] != e["val_loss"] for e in epochs)
    evaluation = client.get(f"/api/runs/{run['id']}/evaluation").json()
    assert evaluation["samples"] == TEST_SUBSET
    assert evaluation["accuracy"] == pytest.approx(done["test_accuracy"])  # the model file's
    csv_head = client.get(f"/api/runs/{run['id']}/metrics", params={"format": "csv"}).text
    assert csv_head.split("\n")[0] == ("step,epoch,loss,train_loss,train_accuracy,val_loss,"
                                       "val_accuracy,running_loss,running_accuracy,duration_s,"
                                       "learning_rate")


def test_no_validation_reports_none_and_keeps_the_last_epoch(live):
    _, client = live
    run = start_run(client, epochs=2, batch_size=100, seed=12, validation_size=0)
    assert run["samples"]["validation"] == 0
    done = wait_for_status(client, run["id"], TERMINAL, 120)
    assert done["status"] == "completed" and done["model_epoch"] == 2
    assert done["best_val_accuracy"] is None
    assert all(e["val_accuracy"] is None and e["val_loss"] is None for e in done["epochs"])
    assert done["test_accuracy"] > 0.5
    assert client.post("/api/runs", json={"validation_size": 50_001}).status_code == 422


def test_layer_statistics_are_streamed_stored_and_paged(live):
    server, client = live
    run = start_run(client, epochs=2, batch_size=50, seed=13, stats_every=10)  # 40 steps an epoch
    messages = follow(server, run["id"])
    assert [m["seq"] for m in messages] == list(range(len(messages)))
    streamed = [m for m in messages if m["type"] == "layers"]
    steps = [m["step"] for m in streamed]
    assert steps == [0, 10, 20, 30, 39, 40, 50, 60, 70, 79]
    for message in streamed:  # after the step it measured
        before = messages[:messages.index(message)]
        assert message["step"] in steps_of(before)
        assert message["run_id"] == run["id"]
        assert [layer["name"] for layer in message["layers"]] == ["hidden1", "output"]
        hidden = message["layers"][0]
        assert hidden["shape"] == [784, 256]
        assert sum(hidden["weights"]["counts"]) == 784 * 256
        assert sum(hidden["activations"]["counts"]) == 256 * 256  # the probe: 256 digits
        assert len(hidden["weights"]["edges"]) == len(hidden["weights"]["counts"]) + 1
        assert hidden["grad_norm"] > 0 and 0 < hidden["update_ratio"] < 1
        assert 0 <= hidden["dead_fraction"] <= 1 and message["layers"][1]["dead_fraction"] is None
    ends = [m for m in streamed if m["epoch_end"]]
    assert [m["epoch"] for m in ends] == [1, 2]
    first = ends[-1]["first_layer"]
    assert first["units"] == 256 and len(first["images"]) == 64
    assert len(base64.b64decode(first["images"][0])) == 784
    stored = all_layers(client, run["id"], limit=3)  # four pages
    assert [s["step"] for s in stored] == steps
    assert stored[4] == {k: v for k, v in streamed[4].items() if k not in ("type", "run_id", "seq")}
    page = client.get(f"/api/runs/{run['id']}/layers", params={"after": 39, "limit": 2}).json()
    assert [s["step"] for s in page["snapshots"]] == [40, 50] and page["more"]
    assert client.get(f"/api/runs/{run['id']}/layers", params={"after": -5}).status_code == 422
    assert client.get("/api/runs/9999/layers").status_code == 404


def test_which_hidden_units_fire_for_a_digit(live, mnist_data):
    _, client = live
    run = start_run(client, epochs=1, batch_size=50, seed=14, stats_every=0)
    done = wait_for_status(client, run["id"], TERMINAL, 120)
    assert done["status"] == "completed"
    assert client.get(f"/api/runs/{run['id']}/layers").json() == {"snapshots": [], "more": False}
    seven = mnist_data.test_images[0]
    pixels = base64.urlsafe_b64encode(seven.tobytes()).decode().rstrip("=")
    answer = client.get(f"/api/runs/{run['id']}/hidden", params={"pixels": pixels, "top": 5})
    assert answer.status_code == 200, answer.text
    hidden = answer.json()
    assert hidden["units"] == 256 and hidden["model_epoch"] == 1 and 0 < hidden["active"] <= 256
    activations = [unit["activation"] for unit in hidden["top"]]
    assert len(activations) == 5 and activations == sorted(activations, reverse=True)
    assert activations[0] > 0
    image = np.frombuffer(base64.b64decode(hidden["top"][0]["image"]), dtype=np.int8)
    assert image.shape == (784,) and np.abs(image).max() == 127
    for bad in ("not base64!", base64.urlsafe_b64encode(b"\x00" * 100).decode()):
        refused = client.get(f"/api/runs/{run['id']}/hidden", params={"pixels": bad})
        assert refused.status_code == 422 and "784" in refused.json()["detail"]


def test_step_mode_trains_exactly_n_steps_and_pauses_again(live):
    server, client = live
    run = start_run(client, epochs=200, batch_size=25, seed=15, stats_every=100_000)
    run_id = run["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["progress"]["step"] > 5, 60,
             what="the run to take steps")
    assert client.post(f"/api/runs/{run_id}/step").status_code == 409  # running: pause first
    paused = client.post(f"/api/runs/{run_id}/pause").json()
    assert paused["status"] == "paused"
    done = paused["progress"]["step"]

    def stored() -> int:
        return len(client.get(f"/api/runs/{run_id}/metrics").json()["iterations"])

    assert stored() == done
    with connect(f"{server.ws_url}/ws/runs/{run_id}?after={done - 1}", open_timeout=10) as socket:
        assert strict_json(socket.recv(timeout=10))["type"] == "snapshot"
        stepped = client.post(f"/api/runs/{run_id}/step", json={"steps": 7})
        assert stepped.status_code == 200, stepped.text
        answer = stepped.json()
        assert answer["status"] == "paused" and not answer["stepping"]
        assert answer["progress"]["step"] == done + 7
        assert stored() == done + 7  # every step stored before the answer
        one = client.post(f"/api/runs/{run_id}/step").json()  # no body: one step
        assert one["progress"]["step"] == done + 8 and one["status"] == "paused"
        streamed, snapshots = [], []
        while len(streamed) < 8:
            message = strict_json(socket.recv(timeout=30))
            streamed += steps_of([message])
            if message["type"] == "layers" and not message["epoch_end"]:
                snapshots.append(message["step"])
        assert streamed == list(range(done, done + 8))
        while len(snapshots) < 2:
            message = strict_json(socket.recv(timeout=30))
            if message["type"] == "layers" and not message["epoch_end"]:
                snapshots.append(message["step"])
    # The last step of each request is measured, whatever the cadence (here: every 100,000).
    assert snapshots == [done + 6, done + 7]
    assert stored() == done + 8
    for body in ({"steps": 0}, {"steps": 1001}, {"steps": "3"}, {"stride": 2}):
        refused = client.post(f"/api/runs/{run_id}/step", json=body)
        assert refused.status_code == 422, body
    resumed = client.post(f"/api/runs/{run_id}/resume").json()
    assert resumed["status"] == "running"
    assert client.post(f"/api/runs/{run_id}/stop").json()["status"] == "stopped"
    assert client.post(f"/api/runs/{run_id}/step").status_code == 409
