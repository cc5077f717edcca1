"""`mnist-lab serve --executor ray` end to end: a real server under uvicorn whose runs train as
actors on a real Ray cluster (tests/ray/cluster.py), on the real MNIST slice, watched over real
WebSockets. The workers share no MNIST with the server (see the `ray_cluster` fixture)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from app.store import Store
from engine.model import load_model
from tests.app.conftest import TRAIN_SUBSET
from tests.app.liveserver import REPO, LiveServer, free_port, wait_for_status
from tests.app.test_server_e2e import TERMINAL, server_env, start_run, steps_of, watch
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.mnist, pytest.mark.slow]


def ray_server(data_dir, cluster, mnist_dir, **env) -> LiveServer:
    """A server whose runs go to `cluster` (the flags; RAY_ADDRESS would do as well)."""
    return LiveServer(data_dir, {**server_env(mnist_dir), **env},
                      args=("--executor", "ray", "--ray-address", cluster.address))


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_cluster, mnist_dir):
    data_dir = tmp_path_factory.mktemp("ray-served") / "data"
    with ray_server(data_dir, ray_cluster, mnist_dir, MNIST_LAB_MAX_CONCURRENT_RUNS="4") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield server, client, ray_cluster


def no_actors_left(cluster) -> bool:
    """No run's actor on the cluster, nor a process it forked."""
    return not cluster.actor_processes(forks=True)


def test_four_runs_at_once_every_step_stored_and_streamed_exactly_once(served):
    """Four runs on a two-CPU cluster (two wait for a CPU in Ray), each watched from the start:
    every step streamed and stored once, in order, every epoch, its model written by the server
    from the bytes the actor sent."""
    server, client, cluster = served
    runs = [start_run(client, epochs=2, batch_size=50, seed=10 + i) for i in range(4)]
    streams: dict[int, list[dict]] = {}
    watchers = [threading.Thread(target=lambda r=run: streams.__setitem__(r["id"], watch(server, r["id"])))
                for run in runs]
    for thread in watchers:
        thread.start()
    for thread in watchers:
        thread.join(300)
    steps_total = 2 * TRAIN_SUBSET // 50
    for run in runs:
        messages = streams[run["id"]]
        assert [m["seq"] for m in messages] == list(range(len(messages)))
        assert steps_of(messages) == list(range(steps_total))
        assert messages[-1]["type"] == "status" and messages[-1]["status"] == "completed", messages[-1]
        streamed_epochs = [m["epoch"] for m in messages if m["type"] == "epoch"]
        final = client.get(f"/api/runs/{run['id']}").json()
        assert [e["epoch"] for e in final["epochs"]] == [1, 2]
        assert messages[0]["type"] == "snapshot"  # with the epochs before the watcher came
        assert [e["epoch"] for e in messages[0]["epochs"]] + streamed_epochs == [1, 2]
        assert final["has_model"] and final["test_accuracy"] > 0.7
        stored = client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"]
        assert [point["step"] for point in stored] == list(range(steps_total))
        model = client.get(f"/api/runs/{run['id']}/model")
        assert model.status_code == 200
        path = server.data_dir / "downloaded.npz"
        path.write_bytes(model.content)
        _, metadata = load_model(path)
        assert metadata["run_id"] == run["id"] and metadata["epoch"] == 2
    assert not list((server.data_dir / "models").glob("*.part.npz"))
    wait_for(lambda: no_actors_left(cluster), 30, what="every finished run's actor to exit")


def test_a_run_stopped_mid_epoch_stops(served):
    server, client, cluster = served
    run = start_run(client, epochs=5, batch_size=1, seed=3)  # 2,000 steps an epoch
    wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["progress"]["step"] >= 50, 120,
             what="the run to take steps")
    stopped = client.post(f"/api/runs/{run['id']}/stop")
    assert stopped.status_code == 200
    stopped = stopped.json()
    assert stopped["status"] == "stopped" and stopped["reason"] == "stopped on request"
    steps = [p["step"] for p in client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"]]
    assert steps == list(range(len(steps))) and 50 <= len(steps) < TRAIN_SUBSET
    assert stopped["epochs"] == []  # it stopped inside its first epoch, not at its end
    wait_for(lambda: no_actors_left(cluster), 30, what="the stopped run's actor to exit")
    assert client.get(f"/api/runs/{run['id']}").json()["progress"]["step"] == stopped["progress"]["step"]


def test_pause_stops_training_on_the_cluster_until_resumed(served):
    server, client, _ = served
    run = start_run(client, epochs=200, batch_size=25, seed=2)
    streamed: list[dict] = []
    watcher = threading.Thread(target=lambda: streamed.extend(watch(server, run["id"])))
    watcher.start()
    wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["progress"]["step"] > 20, 120,
             what="the run to take steps")
    paused = client.post(f"/api/runs/{run['id']}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    before = len(client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"])
    assert before == paused.json()["progress"]["step"]
    # While it is paused, a whole other run trains on the cluster: the paused one takes no step.
    other = start_run(client, epochs=2, batch_size=50, seed=9)
    assert wait_for_status(client, other["id"], TERMINAL, 180)["status"] == "completed"
    assert client.get(f"/api/runs/{run['id']}").json()["progress"]["step"] == before
    assert len(client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"]) == before

    resumed = client.post(f"/api/runs/{run['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    wait_for(lambda: len(client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"])
             > before + 10, 60, what="training to continue")
    stopped = client.post(f"/api/runs/{run['id']}/stop").json()
    assert stopped["status"] == "stopped"
    watcher.join(60)
    statuses = [(i, m["status"]) for i, m in enumerate(streamed) if m["type"] == "status"]
    at_pause = next(i for i, status in statuses if status == "paused")
    at_resume = next(i for i, status in statuses if status == "running" and i > at_pause)
    assert steps_of(streamed[:at_pause]) == list(range(before))
    assert steps_of(streamed[at_pause:at_resume]) == []
    steps = [p["step"] for p in client.get(f"/api/runs/{run['id']}/metrics").json()["iterations"]]
    assert steps_of(streamed) == steps == list(range(len(steps)))


def test_a_killed_actor_fails_its_run_with_a_reason_and_the_server_goes_on(served):
    server, client, cluster = served
    wait_for(lambda: no_actors_left(cluster), 30, what="earlier runs' actors to exit")
    doomed = start_run(client, epochs=200, batch_size=25, seed=4)
    wait_for(lambda: client.get(f"/api/runs/{doomed['id']}").json()["has_model"], 120,
             what="the first checkpoint")
    actors = wait_for(cluster.actor_processes, 10, what="the run's actor process")
    assert len(actors) == 1
    os.kill(actors[0], signal.SIGKILL)
    failed = wait_for_status(client, doomed["id"], TERMINAL, 60)
    assert failed["status"] == "failed", failed
    assert "Ray actor training this run died" in failed["reason"], failed["reason"]
    assert f"pid {actors[0]}" in failed["reason"] and "start a new run" in failed["reason"]
    assert failed["has_model"] and len(failed["epochs"]) >= 1
    steps = [p["step"] for p in client.get(f"/api/runs/{doomed['id']}/metrics").json()["iterations"]]
    assert steps == list(range(len(steps))) and len(steps) >= TRAIN_SUBSET // 25
    assert client.get("/healthz").status_code == 200
    after = start_run(client, epochs=1, batch_size=50, seed=5)
    assert wait_for_status(client, after["id"], TERMINAL, 120)["status"] == "completed"


def test_the_actors_end_with_the_server_however_it_ends(tmp_path, ray_cluster, mnist_dir):
    """A clean shutdown stops them (the run is interrupted); a server killed outright takes them
    with it too (Ray ends the actors of a driver that is gone)."""
    data_dir = tmp_path / "data"
    wait_for(lambda: no_actors_left(ray_cluster), 30, what="earlier runs' actors to exit")
    runs = []
    for ending in ("shutdown", "SIGKILL"):
        server = ray_server(data_dir, ray_cluster, mnist_dir).start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                run = start_run(client, epochs=200, batch_size=25, seed=8)
                runs.append(run["id"])
                wait_for(lambda r=run["id"]: client.get(f"/api/runs/{r}").json()["progress"]["step"]
                         > 10, 120, what="the run to train")
            assert len(ray_cluster.actor_processes()) == 1
            if ending == "SIGKILL":
                server.kill(signal.SIGKILL)
        finally:
            server.stop()
        assert "Traceback" not in server.log(None), server.log()
        wait_for(lambda: no_actors_left(ray_cluster), 60, what=f"the actors to end after a {ending}")
    store = Store(data_dir / "mnist-lab.sqlite3")  # (a server starting now would say the same)
    try:
        shut_down, killed = (store.run(run_id) for run_id in runs)
    finally:
        store.close()
    assert shut_down["status"] == "interrupted" and "shut down" in shut_down["reason"], shut_down
    assert killed["status"] == "running"  # as the killed server left it; its successor marks it


def test_serve_refuses_a_cluster_that_does_not_answer(tmp_path, mnist_dir):
    closed = free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()), "--data-dir",
         str(tmp_path), "--executor", "ray", "--ray-address", f"127.0.0.1:{closed}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MNIST_DIR": str(mnist_dir)})
    assert result.returncode == 2, result.stderr
    assert f"no Ray cluster answers at 127.0.0.1:{closed}" in result.stderr
    assert "ray start --head" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_an_unknown_executor(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--data-dir", str(tmp_path), "--executor", "k8s"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "executor must be one of local, ray, got 'k8s'" in result.stderr
