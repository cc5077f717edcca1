"""Faults, each against a real `mnist-lab serve`, a real SQLite file and real MNIST (a slice):
a killed worker, a killed and restarted server, a diverging run, a data dir that turns read-only
or fills up, and WebSocket clients that stop reading or vanish mid-message."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from app.runs.state import ACTIVE_STATUSES, STATUSES
from bench.fault_soak import stored_steps  # every stored step of a run, page after page
from engine.model import load_model
from tests.app.liveserver import LiveServer, strict_json, wait_for_status
from tests.waiting import wait_for

pytestmark = pytest.mark.mnist

SLICE = {"MNIST_LAB_TRAIN_SUBSET": "2000", "MNIST_LAB_TEST_SUBSET": "500"}
# 63 steps an epoch on the slice: long enough to be caught mid-run, short enough for a test.
LONG_RUN = {"hidden_layers": [64], "epochs": 100, "batch_size": 32, "seed": 1}
SHORT_RUN = {"hidden_layers": [16], "epochs": 1, "batch_size": 100, "seed": 2}
ENDED = set(STATUSES) - set(ACTIVE_STATUSES)  # every status a run ends with
STROKE = [0.0] * 300 + [1.0] * 184 + [0.0] * 300  # 784 pixels with something drawn


def server_env(mnist_dir: Path, **extra: str) -> dict[str, str]:
    # One run at a time, whatever the machine's cores: these tests queue a run behind another.
    return {"MNIST_DIR": str(mnist_dir), **SLICE, "MNIST_LAB_MAX_CONCURRENT_RUNS": "1", **extra}


class Watcher(threading.Thread):
    """A WebSocket client in a thread that records every step, epoch and status it receives."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.points: list[dict] = []
        self.epochs: list[dict] = []
        self.statuses: list[dict] = []
        self.messages = 0
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            with connect(self.url, proxy=None, open_timeout=20) as ws:
                self.connected.set()
                while not self.stopping.is_set():
                    try:
                        message = strict_json(ws.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    self.messages += 1
                    kind = message["type"]
                    if kind == "snapshot":
                        self.points.extend(message["iterations"])
                        self.epochs = list(message["epochs"])
                        self.statuses.append({"status": message["run"]["status"], "reason": None})
                    elif kind == "iterations":
                        self.points.extend(message["points"])
                    elif kind == "epoch":
                        self.epochs.append(message)
                    elif kind == "status":
                        self.statuses.append(message)
        except ConnectionClosed:
            pass
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            self.connected.set()

    @property
    def steps(self) -> list[int]:
        return [point["step"] for point in self.points]

    @property
    def status(self) -> str | None:
        return self.statuses[-1]["status"] if self.statuses else None

    def stop(self) -> None:
        self.stopping.set()
        self.join(20)


def watch(server: LiveServer, run_id: int) -> Watcher:
    watcher = Watcher(f"{server.ws_url}/ws/runs/{run_id}")
    watcher.start()
    assert watcher.connected.wait(20)
    return watcher


def assert_every_step_once(steps: list[int], at_least: int = 1) -> None:
    assert len(steps) >= at_least
    assert steps == list(range(len(steps))), "steps missing or repeated"


def integrity(data_dir: Path) -> str:
    """SQLite's integrity check of the server's database (the server must not be running: it
    holds the database's lock while it does), with the connection closed again."""
    with contextlib.closing(sqlite3.connect(data_dir / "mnist-lab.sqlite3")) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


# --- the worker process dies --------------------------------------------------------------------------
def test_killed_worker_fails_the_run_keeps_its_steps_and_the_next_run_starts(tmp_path, mnist_dir):
    with LiveServer(tmp_path / "data", env=server_env(mnist_dir)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/api/runs", json=LONG_RUN).json()["id"]
        queued = client.post("/api/runs", json=SHORT_RUN).json()["id"]  # waits for the first
        watcher = watch(server, run_id)
        wait_for(lambda: len(watcher.epochs) >= 1 and len(watcher.points) > 80, 60, what="an epoch")
        workers = server.worker_pids()
        assert len(workers) == 1, server.children()
        os.kill(workers[0], signal.SIGKILL)

        run = wait_for_status(client, run_id, ENDED, 30)
        assert run["status"] == "failed"
        assert "killed by SIGKILL" in run["reason"]
        wait_for(lambda: watcher.status == "failed", 10, what="the status message")
        watcher.stop()
        assert watcher.error is None
        assert watcher.statuses[-1]["reason"] == run["reason"]

        metrics = strict_json(client.get(f"/api/runs/{run_id}/metrics").text)
        stored = [point["step"] for point in metrics["iterations"]]
        assert_every_step_once(stored)
        assert stored[: len(watcher.steps)] == watcher.steps  # everything streamed was kept
        assert len(metrics["epochs"]) >= 1
        assert run["has_model"]  # the model of the finished epochs survives
        assert client.post("/predict", json={"pixels": STROKE, "run_id": run_id}).status_code == 200

        assert client.get("/healthz").status_code == 200
        assert wait_for_status(client, queued, ENDED, 60)["status"] == "completed"


# --- the server dies -----------------------------------------------------------------------------------
def test_server_killed_mid_run_and_restarted_loses_nothing_reported(tmp_path, mnist_dir):
    data_dir = tmp_path / "data"
    env = server_env(mnist_dir)
    server = LiveServer(data_dir, env=env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            run_id = client.post("/api/runs", json=LONG_RUN).json()["id"]
            watcher = watch(server, run_id)
            wait_for(lambda: len(watcher.epochs) >= 2 and len(watcher.points) > 63 * 2 + 20, 90,
                     what="two epochs and some steps")
            workers = server.worker_pids()
        server.kill(signal.SIGKILL)
    finally:
        server.stop()
    watcher.stop()
    assert watcher.error is None
    wait_for(lambda: all(process_gone(pid) for pid in workers), 10, what="the orphaned worker to exit")

    assert integrity(data_dir) == "ok"

    with LiveServer(data_dir, env=env) as restarted, \
            httpx.Client(base_url=restarted.url, timeout=30) as client:
        run = strict_json(client.get(f"/api/runs/{run_id}").text)
        assert run["status"] == "interrupted"
        assert run["reason"]
        metrics = strict_json(client.get(f"/api/runs/{run_id}/metrics").text)
        stored = {point["step"]: point for point in metrics["iterations"]}
        assert_every_step_once(sorted(stored))
        missing = [point["step"] for point in watcher.points if stored.get(point["step"]) != point]
        assert not missing, f"{len(missing)} streamed steps are not stored, e.g. {missing[:5]}"
        streamed_epochs = [{k: v for k, v in e.items() if k not in ("type", "run_id", "seq")}
                           for e in watcher.epochs]
        assert metrics["epochs"][: len(streamed_epochs)] == streamed_epochs

        # The model of the last finished epoch is there and usable.
        assert run["has_model"]
        model_file = client.get(f"/api/runs/{run_id}/model")
        assert model_file.status_code == 200
        model_path = tmp_path / "downloaded.npz"
        model_path.write_bytes(model_file.content)
        _, metadata = load_model(model_path)
        # The model is the best stored epoch on validation (the server moves a checkpoint into
        # place only after storing its epoch, so the file never runs ahead of the record).
        assert len(metrics["epochs"]) >= 2
        accuracies = [e["val_accuracy"] for e in metrics["epochs"]]
        kept = metadata["epoch"]
        assert run["model_epoch"] == kept and kept <= len(accuracies)
        assert accuracies[kept - 1] == max(accuracies[:kept])  # the best so far when it was saved
        answer = client.post("/predict", json={"pixels": STROKE, "run_id": run_id})
        assert answer.status_code == 200
        assert abs(sum(answer.json()["probabilities"]) - 1) < 1e-4
        # And the restarted server trains again.
        again = client.post("/api/runs", json=SHORT_RUN).json()["id"]
        assert wait_for_status(client, again, ENDED, 60)["status"] == "completed"


# --- the run diverges ------------------------------------------------------------------------------------
def test_diverging_run_fails_with_reason_and_no_nan_anywhere(tmp_path, mnist_dir):
    with LiveServer(tmp_path / "data", env=server_env(mnist_dir)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        created = client.post("/api/runs", json={"learning_rate": 100, "optimizer": "sgd",
                                                 "epochs": 3, "batch_size": 32})
        assert created.status_code == 201
        run_id = created.json()["id"]
        watcher = watch(server, run_id)
        run = wait_for_status(client, run_id, ENDED, 60)
        wait_for(lambda: watcher.status == "failed", 10, what="the status message")
        watcher.stop()
        assert watcher.error is None  # every message parsed without NaN or Infinity
        assert run["status"] == "failed"
        assert run["reason"].startswith("diverged"), run["reason"]
        assert "learning rate" in run["reason"]
        for path in ("/api/runs", f"/api/runs/{run_id}", f"/api/runs/{run_id}/metrics",
                     "/api/active-model", "/api/options"):
            strict_json(client.get(path).text)  # raises on NaN or Infinity
        csv = client.get(f"/api/runs/{run_id}/metrics?format=csv").text.lower()
        assert "nan" not in csv and "inf" not in csv
        with connect(f"{server.ws_url}/ws/runs/{run_id}", proxy=None) as ws:
            snapshot = strict_json(ws.recv(timeout=10))
        assert snapshot["run"]["status"] == "failed"
        # The diverging step is recorded, with its loss (null: not a finite number); the steps
        # stored are every one before it, none after.
        diverged = run["diverged"]
        assert diverged is not None and set(diverged) == {"step", "loss"}
        assert diverged["loss"] is None or diverged["loss"] > 100
        assert f"at step {diverged['step']} " in run["reason"]
        steps = [point["step"] for point in client.get(f"/api/runs/{run_id}/metrics").json()
                 ["iterations"]]
        assert steps == list(range(diverged["step"]))
        assert len(csv.splitlines()) == 1 + len(steps)
        assert snapshot["run"]["diverged"] == diverged
        assert [point["step"] for point in snapshot["iterations"]] == steps
        assert client.get("/api/runs").json()["runs"][0]["diverged"] == diverged
        server.stop()  # and it is kept: a restarted server knows it
        server.start()
        assert client.get(f"/api/runs/{run_id}").json()["diverged"] == diverged


def children_of(pids: list[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) in pids:
                found.append(int(entry.name))
    return found


def test_a_stuck_run_gets_bounded_answers_to_step_and_stop(tmp_path, mnist_dir):
    """A paused run whose batches stop coming (the process that prepares them is frozen with
    SIGSTOP, so the trainer waits for its next batch): a step request answers 503 once no step
    came for stop_timeout_s (it waited forever), and a stop kills the training process and
    answers with the run ended. (Freezing the trainer itself would freeze the server too: setting
    a multiprocessing.Event waits for each process sleeping on it to wake.)"""
    env = server_env(mnist_dir, MNIST_LAB_STOP_TIMEOUT_S="2")
    with LiveServer(tmp_path / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/api/runs", json=LONG_RUN).json()["id"]
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["progress"]["step"] > 10, 60,
                 what="the run to train")
        paused = client.post(f"/api/runs/{run_id}/pause")
        assert paused.json()["status"] == "paused", paused.text
        preparers = children_of(server.worker_pids())  # (forked by the training process)
        if not preparers:
            pytest.skip("batches are prepared inline here (no fork): nothing to freeze apart")
        for pid in preparers:
            os.kill(pid, signal.SIGSTOP)
        try:
            stepped = client.post(f"/api/runs/{run_id}/step", json={"steps": 500})
            assert stepped.status_code == 503, stepped.text
            assert "took no step" in strict_json(stepped.text)["detail"]
            assert stepped.headers["retry-after"]
            stopped = client.post(f"/api/runs/{run_id}/stop")
            assert stopped.status_code == 200, stopped.text
            assert stopped.json()["status"] in ENDED
        finally:
            for pid in preparers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        assert client.get("/healthz").status_code == 200


# --- the data dir becomes read-only or full -------------------------------------------------------------
def needs_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root; this fault is not injected here")


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs as the data dir; unmounted afterwards."""
    needs_root("mounting a small tmpfs")
    mount_point = tmp_path / "data"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def immutable(folder: Path, on: bool) -> None:
    """Make the data dir and everything in it unwritable, even for root and through files the
    server already has open (a read-only remount is refused while files are open for writing;
    tmpfs ignores the flag on open files, ext4 and most disk file systems honour it)."""
    subprocess.run(["chattr", "-R", "+i" if on else "-i", str(folder)], check=True,
                   capture_output=True)


def fill(mount_point: Path) -> Path:
    """Write zeros until the file system is full."""
    filler = mount_point / "filler"
    with open(filler, "ab", buffering=0) as out:
        for chunk in (bytes(1 << 20), bytes(4096), bytes(1)):
            try:
                while out.write(chunk):
                    pass
            except OSError:
                pass
    return filler


def assert_clear_storage_error(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 507, response.text
    detail = strict_json(response.text)["detail"]
    assert "cannot write to its data dir" in detail and "Nothing already stored" in detail
    for word in words:
        assert word in detail, detail
    return detail


def completed_run(client: httpx.Client, data_dir: Path) -> tuple[int, dict, bytes]:
    run_id = client.post("/api/runs", json=SHORT_RUN).json()["id"]
    assert wait_for_status(client, run_id, ENDED, 60)["status"] == "completed"
    return (run_id, client.get(f"/api/runs/{run_id}/metrics").json(),
            (data_dir / "models" / f"run-{run_id}.npz").read_bytes())


def assert_intact(server: LiveServer, client: httpx.Client, data_dir: Path, run_id: int,
                  metrics: dict, model: bytes):
    assert client.get(f"/api/runs/{run_id}/metrics").json() == metrics
    assert (data_dir / "models" / f"run-{run_id}.npz").read_bytes() == model
    server.stop()  # (it holds the database's lock)
    assert integrity(data_dir) == "ok"
    server.start()


def test_read_only_data_dir_gives_a_clear_error_and_corrupts_nothing(tmp_path, mnist_dir):
    needs_root("making files immutable (chattr)")
    data_dir = tmp_path / "data"
    with LiveServer(data_dir, env=server_env(mnist_dir)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        done, metrics, model = completed_run(client, data_dir)
        try:
            immutable(data_dir, True)
        except subprocess.CalledProcessError as error:
            pytest.skip(f"this file system has no immutable flag: {error.stderr.strip()}")
        try:
            assert_clear_storage_error(client.post("/api/runs", json=SHORT_RUN), "read-only")
            assert_clear_storage_error(client.put("/api/active-model", json={"run_id": done}))
            assert client.get("/healthz").status_code == 200
            assert client.get(f"/api/runs/{done}/metrics").json() == metrics
            assert client.post("/predict", json={"pixels": STROKE}).status_code == 200
        finally:
            immutable(data_dir, False)
        assert_intact(server, client, data_dir, done, metrics, model)
        again = client.post("/api/runs", json=SHORT_RUN)  # writable again: works as before
        assert again.status_code == 201, again.text
        assert wait_for_status(client, again.json()["id"], ENDED, 60)["status"] == "completed"


def test_full_disk_gives_a_clear_error_and_corrupts_nothing(small_disk, mnist_dir):
    with LiveServer(small_disk, env=server_env(mnist_dir)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        done, metrics, model = completed_run(client, small_disk)
        filler = fill(small_disk)
        try:
            created = client.post("/api/runs", json=SHORT_RUN)
            if created.status_code == 201:  # SQLite had room for the row: the model cannot be saved
                run = wait_for_status(client, created.json()["id"], ENDED, 60)
                assert run["status"] == "failed"
                assert "No space left on device" in run["reason"], run["reason"]
            else:
                assert_clear_storage_error(created, "full")
            assert client.get("/healthz").status_code == 200
            assert client.get(f"/api/runs/{done}/metrics").json() == metrics
        finally:
            filler.unlink()
        assert_intact(server, client, small_disk, done, metrics, model)
        again = client.post("/api/runs", json=SHORT_RUN)  # space again: works as before
        assert again.status_code == 201, again.text
        assert wait_for_status(client, again.json()["id"], ENDED, 60)["status"] == "completed"


def stored_status(data_dir: Path, run_id: int) -> str:
    """The run's status in the database itself (the server must not be running)."""
    with contextlib.closing(sqlite3.connect(data_dir / "mnist-lab.sqlite3")) as db:
        return db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


def refused_mid_run(server: LiveServer, client: httpx.Client, data_dir: Path, refuse, allow,
                    problem: str) -> None:
    """A watched run trains; then the data dir refuses every write (`refuse`), later takes them
    again (`allow`). Meanwhile the server lives, streams no step it has not stored, answers new
    runs 507, reads and predictions as usual, pause, resume and stop promptly; afterwards what
    was held back is stored, streamed once, and the database says what the API said."""
    run_id = client.post("/api/runs", json=LONG_RUN).json()["id"]
    watcher = watch(server, run_id)
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["has_model"], 60,
             what="the model of the first epoch")
    refuse()
    try:
        held = wait_for(lambda: (run := client.get(f"/api/runs/{run_id}").json())["unstored"]
                        and run, 30, what="steps the disk refused")
        assert problem in held["unstored"]["problem"], held["unstored"]
        stored = stored_steps(client, run_id)
        # Training goes on, but what the disk refused is neither stored nor streamed.
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["progress"]["step"] > stored[-1] + 200, 60,
                 what="a few hundred steps more")
        assert stored_steps(client, run_id) == stored
        assert watcher.steps and watcher.steps[-1] <= stored[-1], "a step streamed, not stored"
        assert server.process.poll() is None
        assert_clear_storage_error(client.post("/api/runs", json=SHORT_RUN))
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/runs").status_code == 200
        assert client.post("/predict", json={"pixels": STROKE}).status_code == 200
        paused = client.post(f"/api/runs/{run_id}/pause")
        assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
        resumed = client.post(f"/api/runs/{run_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "running", resumed.text
        stopped = client.post(f"/api/runs/{run_id}/stop")  # (the client gives up after 30 s)
        assert stopped.status_code == 200, stopped.text
        final = stopped.json()
        assert final["status"] in ENDED and final["unstored"], final
        if final["status"] == "failed":  # the last model could not be saved
            assert "rror" in final["reason"], final["reason"]
        assert watcher.steps[-1] <= stored[-1]
    finally:
        allow()
    caught_up = wait_for(lambda: (run := client.get(f"/api/runs/{run_id}").json())["unstored"]
                         is None and run, 30, what="the held-back steps to be stored")
    assert caught_up["status"] == final["status"]
    steps = stored_steps(client, run_id)
    assert_every_step_once(steps, at_least=len(stored) + 200)
    assert len(steps) == caught_up["progress"]["step"]
    wait_for(lambda: watcher.status == final["status"] and len(watcher.steps) >= len(steps), 30,
             what="the watcher to get every step and the final status")
    watcher.stop()
    assert watcher.error is None
    assert watcher.steps == steps  # streamed once stored: every step once, in order
    server.stop()
    assert integrity(data_dir) == "ok"
    assert stored_status(data_dir, run_id) == final["status"]  # the record says what the API said
    server.start()
    assert client.get(f"/api/runs/{run_id}").json()["status"] == final["status"]
    assert stored_steps(client, run_id) == steps


def test_full_disk_mid_run_holds_steps_back_and_stores_them_once_there_is_room(small_disk,
                                                                                mnist_dir):
    fillers = []
    with LiveServer(small_disk, env=server_env(mnist_dir)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        refused_mid_run(server, client, small_disk, lambda: fillers.append(fill(small_disk)),
                        lambda: [filler.unlink() for filler in fillers], "full")


def test_read_only_data_dir_mid_run_keeps_the_server_and_stores_later(tmp_path, mnist_dir):
    needs_root("making files immutable (chattr)")
    data_dir = tmp_path / "data"
    with LiveServer(data_dir, env=server_env(mnist_dir)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        refused_mid_run(server, client, data_dir, lambda: immutable(data_dir, True),
                        lambda: immutable(data_dir, False), "")


# --- WebSocket clients that misbehave -----------------------------------------------------------------------
def raw_websocket(port: int, path: str, receive_buffer: int | None = None) -> socket.socket:
    """A hand-made WebSocket handshake on a plain socket, so a test can misbehave at will."""
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def unsent_bytes(server_port: int, client: socket.socket) -> int:
    """Bytes the server has queued for `client` that it did not take yet (from /proc/net/tcp)."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port):
            return int(queues.split(":")[0], 16)
    return 0


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed client or a dropped network would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_stalled_and_vanishing_clients_never_slow_training_or_others(tmp_path, mnist_dir):
    env = server_env(mnist_dir, MNIST_LAB_STREAM_SEND_TIMEOUT_S="3")
    run = {"hidden_layers": [32], "epochs": 3, "batch_size": 8, "seed": 4}  # 250 steps an epoch
    with LiveServer(tmp_path / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/api/runs", json=run).json()["id"]
        path = f"/ws/runs/{run_id}"
        stalled = [raw_websocket(server.port, path, receive_buffer=1024) for _ in range(3)]
        good = [watch(server, run_id) for _ in range(2)]
        vanished, latencies, most_unsent = 0, [], 0
        while client.get(f"/api/runs/{run_id}").json()["status"] not in ENDED:
            # Clients that read part of a message, or send half a frame, then vanish.
            sock = raw_websocket(server.port, path)
            if vanished % 2:
                sock.recv(7)
            else:
                sock.sendall(b"\x81\xfe\x10\x00")  # a text frame header promising 4096 bytes
            reset(sock)
            vanished += 1
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - started)
            most_unsent = max([most_unsent] + [unsent_bytes(server.port, s) for s in stalled])
            time.sleep(0.05)
        print(f"vanished={vanished} most_unsent={most_unsent} slowest_health={max(latencies):.3f}s")
        assert most_unsent > 0, "the stalled clients never held anything up: the test proves nothing"
        final = wait_for_status(client, run_id, ENDED, 1)
        assert final["status"] == "completed"
        for watcher in good:
            wait_for(lambda w=watcher: w.status == "completed", 10, what="the final status")
            watcher.stop()
            assert watcher.error is None
            assert_every_step_once(watcher.steps, at_least=750)
            assert len(watcher.epochs) == 3
        assert vanished >= 3
        assert max(latencies) < 5.0, "the server stalled"
        for sock in stalled:
            reset(sock)
        assert client.get("/healthz").status_code == 200
