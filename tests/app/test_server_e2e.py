"""End to end: `mnist-lab serve` under real uvicorn in a subprocess, real worker processes, real
MNIST (a 2,000-digit slice), real WebSocket clients (`websockets`) and real HTTP (`httpx`)."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time

import httpx
import pytest
from websockets.sync.client import connect

from app.runs.state import ACTIVE_STATUSES, STATUSES
from engine.model import load_model
from tests.app.conftest import TEST_SUBSET, TRAIN_SUBSET, digit_png
from tests.app.liveserver import LiveServer, strict_json, wait_for_status
from tests.waiting import wait_for

pytestmark = [pytest.mark.mnist, pytest.mark.slow]
TERMINAL = set(STATUSES) - set(ACTIVE_STATUSES)  # every status a run ends with


def server_env(mnist_dir) -> dict[str, str]:
    return {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": str(TRAIN_SUBSET),
            "MNIST_LAB_TEST_SUBSET": str(TEST_SUBSET),
            "MNIST_LAB_WORKER_NICE": "0",  # the test machine is shared: do not yield to others
            "MNIST_LAB_MAX_CONCURRENT_RUNS": "1"}  # these tests queue a run behind another


@pytest.fixture(scope="module")
def live(tmp_path_factory, mnist_dir):
    with LiveServer(tmp_path_factory.mktemp("live") / "data", server_env(mnist_dir)) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield server, client


def watch(server: LiveServer, run_id: int, after: int | None = None, until_terminal=True,
          limit_s: float = 90) -> list[dict]:
    """Every message of one connection, until the run's final status (or the first message)."""
    query = "" if after is None else f"?after={after}"
    messages = []
    with connect(f"{server.ws_url}/ws/runs/{run_id}{query}", open_timeout=10) as socket:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            message = strict_json(socket.recv(timeout=limit_s))
            messages.append(message)
            if not until_terminal:
                break
            status = message["run"]["status"] if message["type"] == "snapshot" else message.get("status")
            if message["type"] in ("snapshot", "status") and status in TERMINAL:
                break
    return messages


def steps_of(messages: list[dict]) -> list[int]:
    steps = []
    for message in messages:
        points = message.get("iterations" if message["type"] == "snapshot" else "points", [])
        steps += [point["step"] for point in points]
    return steps


def start_run(client: httpx.Client, **config) -> dict:
    response = client.post("/api/runs", json=config)
    assert response.status_code == 201, response.text
    return response.json()


def test_two_watchers_get_every_step_exactly_once_and_every_epoch(live):
    server, client = live
    run = start_run(client, epochs=3, batch_size=25, seed=1)
    results: dict[int, list[dict]] = {}
    watchers = [threading.Thread(target=lambda i=i: results.__setitem__(i, watch(server, run["id"])))
                for i in range(2)]
    for thread in watchers:
        thread.start()
    for thread in watchers:
        thread.join(120)
    steps_total = 3 * TRAIN_SUBSET // 25
    for messages in results.values():
        assert messages[0]["type"] == "snapshot"
        assert [m["seq"] for m in messages] == list(range(len(messages)))
        assert all(m["run_id"] == run["id"] for m in messages)
        assert steps_of(messages) == list(range(steps_total))
        epochs = [m for m in messages if m["type"] == "epoch"]
        assert [e["epoch"] for e in epochs] == [1, 2, 3]
        assert all(0.5 < e["val_accuracy"] <= 1 and e["train_loss"] > 0 for e in epochs)
        assert messages[-1]["type"] == "status" and messages[-1]["status"] == "completed"
        assert messages[-1]["run"]["test_accuracy"] > 0.7
        for message in messages:
            if message["type"] == "iterations":
                steps = [p["step"] for p in message["points"]]
                assert steps == list(range(steps[0], steps[0] + len(steps)))  # contiguous
    final = client.get(f"/api/runs/{run['id']}").json()
    assert [e["val_accuracy"] for e in final["epochs"]] == [
        e["val_accuracy"] for e in results[0] if e["type"] == "epoch"]

    # reconnect with `after`: exactly the later steps, the whole epoch history, the final status
    again = watch(server, run["id"], after=150)
    assert again[0]["type"] == "snapshot" and again[0]["run"]["status"] == "completed"
    assert steps_of(again) == list(range(151, steps_total)) and len(again) == 1
    assert [e["epoch"] for e in again[0]["epochs"]] == [1, 2, 3]


def test_stream_refuses_unknown_runs_and_bad_after(live):
    server, _ = live
    for path, code in (("/ws/runs/999", 4404), ("/ws/runs/1?after=soon", 4422)):
        with connect(f"{server.ws_url}{path}") as socket:
            with pytest.raises(Exception) as closed:
                socket.recv(timeout=10)
            assert getattr(closed.value, "rcvd", None) is not None
            assert closed.value.rcvd.code == code and closed.value.rcvd.reason


def training_and_watched(server: LiveServer, client: httpx.Client, seed: int, steps: int):
    """A long run, taking its first `steps` steps, and a thread that collects every message of
    its stream (in the list returned) until it ends."""
    run = start_run(client, epochs=200, batch_size=25, seed=seed)
    streamed: list[dict] = []
    watcher = threading.Thread(target=lambda: streamed.extend(watch(server, run["id"])))
    watcher.start()
    wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["progress"]["step"] > steps, 60,
             what="the run to take steps")
    return run, streamed, watcher


def test_pause_resume_stop(live):
    server, client = live
    run, streamed, watcher = training_and_watched(server, client, seed=2, steps=20)
    paused = client.post(f"/api/runs/{run['id']}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert client.post(f"/api/runs/{run['id']}/pause").status_code == 409
    # The answer comes once the worker has stopped between two steps, with every step stored.
    before = len(client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"])
    assert before == paused.json()["progress"]["step"]
    resumed = client.post(f"/api/runs/{run['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert client.post(f"/api/runs/{run['id']}/resume").status_code == 409
    wait_for(lambda: len(client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"])
             > before + 10, 30, what="training to continue")
    stopped = client.post(f"/api/runs/{run['id']}/stop").json()
    assert stopped["status"] == "stopped" and stopped["reason"] == "stopped on request"
    steps = client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"]
    assert [p["step"] for p in steps] == list(range(len(steps))) and len(steps) > before
    for action in ("stop", "pause", "resume"):
        assert client.post(f"/api/runs/{run['id']}/{action}").status_code == 409

    # The stream tells it in order: every step before "paused", none until "running".
    watcher.join(60)
    statuses = [(i, m["status"]) for i, m in enumerate(streamed) if m["type"] == "status"]
    at_pause = next(i for i, status in statuses if status == "paused")
    at_resume = next(i for i, status in statuses if status == "running" and i > at_pause)
    assert steps_of(streamed[:at_pause]) == list(range(before))
    assert steps_of(streamed[at_pause:at_resume]) == []
    assert steps_of(streamed)[:len(steps)] == [p["step"] for p in steps]


def test_a_running_run_is_named_and_its_watchers_see_the_new_name(live):
    server, client = live
    run, streamed, watcher = training_and_watched(server, client, seed=9, steps=5)
    named = client.patch(f"/api/runs/{run['id']}", json={"name": "live one", "tags": ["e2e"]})
    assert named.status_code == 200, named.text
    assert named.json()["status"] == "running" and named.json()["name"] == "live one"
    after = named.json()["progress"]["step"] + 5
    wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["progress"]["step"] > after, 30,
             what="training to go on after the rename")
    stopped = client.post(f"/api/runs/{run['id']}/stop").json()
    assert stopped["status"] == "stopped" and stopped["name"] == "live one"
    assert stopped["tags"] == ["e2e"]
    watcher.join(60)
    # The feed said so, without a change of status, and kept streaming steps after it.
    renamed = next(i for i, m in enumerate(streamed)
                   if m["type"] == "status" and m["run"]["name"] == "live one")
    assert streamed[renamed]["status"] == "running" and streamed[renamed]["run"]["tags"] == ["e2e"]
    assert all(m["run"]["name"] is None for m in streamed[:renamed]
               if m["type"] in ("snapshot", "status"))
    assert streamed[-1]["status"] == "stopped" and streamed[-1]["run"]["name"] == "live one"
    steps = client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"]
    assert steps_of(streamed)[:len(steps)] == [p["step"] for p in steps]
    assert steps_of(streamed[renamed:])  # steps kept coming after it


def test_the_run_list_stream_says_when_the_list_changed(live):
    server, client = live
    with connect(f"{server.ws_url}/ws/runs", open_timeout=10) as socket:

        def announced() -> int:
            message = strict_json(socket.recv(timeout=10))
            assert message["type"] == "changed" and set(message) == {"type", "revision"}
            return message["revision"]

        def listed() -> tuple[int, dict[int, dict]]:
            answer = client.get("/api/runs").json()
            return answer["revision"], {run["id"]: run for run in answer["runs"]}

        def changed_since(revision: int) -> tuple[int, dict[int, dict]]:
            """The list has a newer revision, and the socket announces it."""
            now, runs = listed()
            assert now > revision
            while announced() < now:
                pass
            return now, runs

        assert announced() == listed()[0]  # on connect: the revision now
        first = start_run(client, epochs=100, batch_size=2, seed=5)["id"]  # 1,000 steps an epoch
        wait_for(lambda: client.get(f"/api/runs/{first}").json()["has_model"], 60,
                 what="the first epoch")
        revision, runs = listed()
        assert runs[first]["status"] == "running"
        assert client.post(f"/api/runs/{first}/pause").json()["status"] == "paused"
        # Nothing changes on its own while the only training slot is paused: every change below
        # is the request's.
        revision, runs = changed_since(revision)
        assert runs[first]["status"] == "paused"

        second = start_run(client, epochs=1)["id"]
        revision, runs = changed_since(revision)
        assert runs[second]["status"] == "queued"
        assert client.post(f"/api/runs/{second}/stop").status_code == 200
        revision, runs = changed_since(revision)
        assert runs[second]["status"] == "stopped"
        assert client.put("/api/active-model", json={"run_id": first}).status_code == 200
        revision, runs = changed_since(revision)
        assert runs[first]["is_active_model"]
        assert client.delete(f"/api/runs/{second}").status_code == 204
        revision, runs = changed_since(revision)
        assert second not in runs
        assert client.post(f"/api/runs/{first}/stop").status_code == 200
        revision, runs = changed_since(revision)
        assert runs[first]["status"] == "stopped"
        # An ended run changes nothing more: the next change is the next request's, alone.
        assert client.put("/api/active-model", json={"run_id": None}).status_code == 200
        assert listed()[0] == revision + 1


def test_predict_during_training_uses_the_latest_epoch(live, mnist_data):
    server, client = live
    run = start_run(client, epochs=200, batch_size=25, seed=3)
    pixels = (mnist_data.test_images[TEST_SUBSET + 5] / 255.0).tolist()

    def model_epoch() -> int:
        """The epoch of the run's model file as the server has it now (0: none yet)."""
        answer = client.get(f"/api/runs/{run['id']}/model")
        if answer.status_code != 200:
            return 0
        path = server.data_dir.parent / f"model-{run['id']}.npz"
        path.write_bytes(answer.content)
        return load_model(path)[1]["epoch"]

    def prediction_with_a_known_model() -> tuple[int, dict]:
        """A prediction, and the epoch of the model that made it (unchanged around it)."""
        while True:
            epoch = wait_for(model_epoch, 60, what="the first checkpoint")
            answer = client.post("/predict", json={"pixels": pixels, "run_id": run["id"]}).json()
            if model_epoch() == epoch:
                return epoch, answer

    first_epoch, first = prediction_with_a_known_model()
    assert first["run_id"] == run["id"] and len(first["probabilities"]) == 10
    # However fast the epochs go by, wait for a model later than the one that answered first.
    wait_for(lambda: model_epoch() > first_epoch, 60, what=f"a model after epoch {first_epoch}")
    later = client.post("/predict", json={"pixels": pixels, "run_id": run["id"]}).json()
    assert later["probabilities"] != first["probabilities"]  # newer weights were loaded
    assert client.get(f"/api/runs/{run['id']}").json()["status"] == "running"

    png = digit_png(7, mnist_data)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    by_url = client.post("/predict", json={"image": data_url, "run_id": run["id"]}).json()
    upload = client.post("/predict", files={"file": ("seven.png", png, "image/png")},
                         data={"run_id": str(run["id"])}).json()
    assert by_url["run_id"] == upload["run_id"] == run["id"]
    assert len(by_url["input"]) == 784 and by_url["digit"] in range(10)
    client.post(f"/api/runs/{run['id']}/stop")


def test_bad_inputs_over_a_real_socket(live):
    _, client = live
    nan_body = b'{"pixels": [NaN' + b", 0.5" * 783 + b"]}"
    for body, status in ((nan_body, 422), (b"{oops", 422), (b"[]", 422),
                         (json.dumps({"image": "x" * (3 << 20)}).encode(), 413)):
        response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == status
        assert isinstance(strict_json(response.content)["detail"], str)

    def stream():  # chunked, no Content-Length
        for _ in range(64):
            yield b"0" * 65536

    response = client.post("/predict", content=stream(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert client.get("/healthz").status_code == 200


def test_a_killed_worker_fails_its_run_and_the_server_goes_on(live):
    server, client = live
    doomed = start_run(client, epochs=200, batch_size=25, seed=4)
    wait_for(lambda: client.get(f"/api/runs/{doomed['id']}").json()["has_model"], 60,
             what="the first checkpoint")
    waiting = start_run(client, epochs=1, batch_size=50, seed=5)
    assert waiting["status"] == "queued"  # one run trains at a time
    workers = wait_for(server.worker_pids, 10, what="the worker process")
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    failed = wait_for_status(client, doomed["id"], TERMINAL, 30)
    assert failed["status"] == "failed" and "SIGKILL" in failed["reason"]
    assert failed["has_model"] and len(failed["epochs"]) >= 1
    assert len(client.get(f"/api/runs/{doomed['id']}/metrics").json()["iterations"]) >= 80
    assert client.get("/healthz").status_code == 200
    done = wait_for_status(client, waiting["id"], TERMINAL, 60)
    assert done["status"] == "completed"


def test_restart_keeps_history_and_marks_unfinished_runs_interrupted(tmp_path, mnist_dir):
    data_dir = tmp_path / "data"
    first = LiveServer(data_dir, server_env(mnist_dir)).start()
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            running = start_run(client, epochs=200, batch_size=25, seed=6)
            queued = start_run(client, epochs=1, seed=7)
            wait_for(lambda: len(client.get(f"/api/runs/{running['id']}").json()["epochs"]) >= 2,
                     60, what="two epochs")
            workers = server_workers = first.worker_pids()
            assert len(workers) == 1
        first.kill(signal.SIGKILL)  # no shutdown at all
        wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") and _alive(pid)
                                 for pid in server_workers), 10, what="the orphaned worker to exit")
    finally:
        first.stop()

    with LiveServer(data_dir, server_env(mnist_dir)) as second, \
            httpx.Client(base_url=second.url, timeout=30) as client:
        runs = {run["id"]: run for run in client.get("/api/runs").json()["runs"]}
        assert runs[running["id"]]["status"] == runs[queued["id"]]["status"] == "interrupted"
        assert "server stopped" in runs[running["id"]]["reason"]
        again = client.get(f"/api/runs/{running['id']}").json()
        assert len(again["epochs"]) >= 2 and again["has_model"]
        steps = [p["step"] for p in client.get(f"/api/runs/{running['id']}/metrics").json()["iterations"]]
        assert steps == list(range(len(steps))) and len(steps) >= 2 * TRAIN_SUBSET // 25
        assert client.get(f"/api/runs/{running['id']}/model").status_code == 200
        answer = client.post("/predict", json={"pixels": [0.0] * 300 + [1.0] * 184 + [0.0] * 300}).json()
        assert answer["run_id"] == running["id"]
        snapshot = watch(second, running["id"], until_terminal=False)[0]
        assert snapshot["run"]["status"] == "interrupted" and len(snapshot["iterations"]) == len(steps)

        # a clean shutdown while training: the worker is stopped, the run is interrupted
        fresh = start_run(client, epochs=200, batch_size=25, seed=8)
        wait_for(lambda: client.get(f"/api/runs/{fresh['id']}").json()["progress"]["step"] > 10, 60,
                 what="the run to start")
        workers = second.worker_pids()
    second_data = second.data_dir
    assert not any(_alive(pid) for pid in workers)
    with LiveServer(second_data, server_env(mnist_dir)) as third, \
            httpx.Client(base_url=third.url, timeout=30) as client:
        last = client.get(f"/api/runs/{fresh['id']}").json()
        assert last["status"] == "interrupted" and "shut down" in last["reason"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
