"""Limits against exhaustion: each refused with a clear 4xx, before anything starts."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from app.limits import LimitExceeded, StreamSlots, check_capacity, check_run_config
from app.settings import Settings
from engine.config import TrainConfig
from engine.footprint import estimated_memory_bytes
from tests.app.liveserver import LiveServer, strict_json, wait_for_status
from tests.waiting import wait_for


def config(**values) -> TrainConfig:
    return TrainConfig.from_dict(values)


def refusal(settings: Settings, cfg: TrainConfig) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as refused:
        check_run_config(cfg, settings)
    return refused.value


# --- run configs -------------------------------------------------------------------------------------
def test_each_size_limit_names_itself(tmp_path):
    settings = Settings(data_dir=tmp_path, max_hidden_layers=2, max_units_per_layer=100,
                        max_epochs=5, max_batch_size=64, max_parameters=50_000)
    cases = {
        "MNIST_LAB_MAX_HIDDEN_LAYERS": config(hidden_layers=[10, 10, 10]),
        "MNIST_LAB_MAX_UNITS_PER_LAYER": config(hidden_layers=[101]),
        "MNIST_LAB_MAX_EPOCHS": config(hidden_layers=[10], epochs=6),
        "MNIST_LAB_MAX_BATCH_SIZE": config(hidden_layers=[10], batch_size=65),
        "MNIST_LAB_MAX_PARAMETERS": config(hidden_layers=[70]),  # 784*70+70+70*10+10 = 55,660
    }
    for setting, cfg in cases.items():
        refused = refusal(settings, cfg)
        assert refused.status_code == 422
        assert setting in refused.detail, refused.detail
    check_run_config(config(hidden_layers=[60], epochs=5, batch_size=64), settings)


def test_a_run_needing_too_much_memory_is_refused(tmp_path):
    cfg = config(hidden_layers=[2048, 2048], batch_size=8192, optimizer="adam")
    assert estimated_memory_bytes(cfg) > 512 * 2**20
    refused = refusal(Settings(data_dir=tmp_path, max_run_memory_mb=512), cfg)
    assert refused.status_code == 422
    assert "MB of memory" in refused.detail and "MNIST_LAB_MAX_RUN_MEMORY_MB" in refused.detail
    check_run_config(cfg, Settings(data_dir=tmp_path, max_run_memory_mb=8192))


def test_the_servers_own_memory_for_a_runs_steps_is_counted(tmp_path):
    """A small network with many steps: it trains in little memory, but the server keeps every
    step of it; 60 epochs of batch 8 over MNIST's 55,000 digits not held out are 412,500 steps,
    ~200 MB in the server."""
    cfg = config(hidden_layers=[8], batch_size=8, epochs=60)
    training_mb = estimated_memory_bytes(cfg) / 2**20
    settings = Settings(data_dir=tmp_path, max_steps_per_run=10**6,
                        max_run_memory_mb=int(training_mb) + 100)
    refused = refusal(settings, cfg)
    assert "in the server for its 412,500 steps" in refused.detail, refused.detail
    assert "fewer steps" in refused.detail
    check_run_config(cfg.replace(epochs=6), settings)  # a tenth of the steps fits


def test_presets_fit_the_default_limits(tmp_path):
    from engine.config import preset_config
    from engine.presets import PRESETS

    for preset in PRESETS.values():
        check_run_config(preset_config(preset.name), Settings(data_dir=tmp_path))


def test_capacity_queue_then_runs_kept(tmp_path):
    settings = Settings(data_dir=tmp_path, max_queued_runs=2, max_runs_kept=4)
    check_capacity(settings, ["running", "queued", "completed"])
    full_queue = pytest.raises(LimitExceeded)
    with full_queue as refused:
        check_capacity(settings, ["running", "queued", "queued"])
    assert refused.value.status_code == 429 and refused.value.headers["Retry-After"] == "30"
    assert "MNIST_LAB_MAX_QUEUED_RUNS" in refused.value.detail
    with pytest.raises(LimitExceeded) as refused:
        check_capacity(settings, ["completed", "failed", "stopped", "queued"])
    assert refused.value.status_code == 409 and "DELETE /api/runs/{id}" in refused.value.detail


def test_stream_slots_per_run_and_total():
    slots = StreamSlots(per_run=2, total=3)
    assert slots.take(1) is None and slots.take(1) is None
    assert "MNIST_LAB_MAX_STREAM_CLIENTS_PER_RUN" in slots.take(1)
    assert slots.take(2) is None
    assert "MNIST_LAB_MAX_STREAM_CLIENTS" in slots.take(2)
    slots.give_back(1)
    assert slots.take(2) is None
    assert slots.in_use == 3
    for reason in (StreamSlots(0, 1000).take(10**9), StreamSlots(5, 0).take(1)):
        assert len(reason.encode()) <= 123  # fits a WebSocket close reason


# --- end to end --------------------------------------------------------------------------------------
@pytest.mark.mnist
def test_limits_on_a_live_server(tmp_path, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "2000", "MNIST_LAB_TEST_SUBSET": "200",
           "MNIST_LAB_MAX_QUEUED_RUNS": "2", "MNIST_LAB_MAX_RUNS_KEPT": "4",
           "MNIST_LAB_MAX_RUN_MEMORY_MB": "400", "MNIST_LAB_MAX_STREAM_CLIENTS_PER_RUN": "2",
           "MNIST_LAB_MAX_STREAM_CLIENTS": "3"}
    long_run = {"hidden_layers": [32], "epochs": 100, "batch_size": 32}
    with LiveServer(tmp_path / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        options = client.get("/api/options").json()
        assert options["limits"]["max_queued_runs"] == 2
        assert options["limits"]["max_stream_clients_per_run"] == 2

        too_big = client.post("/api/runs", json={"hidden_layers": [5000]})
        assert too_big.status_code == 422
        assert "MNIST_LAB_MAX_UNITS_PER_LAYER" in strict_json(too_big.text)["detail"]
        too_much_memory = client.post("/api/runs", json={"hidden_layers": [2048, 2048],
                                                         "batch_size": 4096})
        assert too_much_memory.status_code == 422
        assert "MB of memory" in too_much_memory.json()["detail"]
        assert client.get("/api/runs").json()["runs"] == []  # nothing was created

        first = client.post("/api/runs", json=long_run).json()["id"]
        wait_for_status(client, first, {"running"}, 60)
        assert client.post(f"/api/runs/{first}/pause").status_code == 200
        second = client.post("/api/runs", json=long_run).json()["id"]
        third = client.post("/api/runs", json=long_run).json()["id"]
        full = client.post("/api/runs", json=long_run)
        assert full.status_code == 429
        assert int(full.headers["retry-after"]) >= 1
        assert "MNIST_LAB_MAX_QUEUED_RUNS" in full.json()["detail"]
        assert client.post(f"/api/runs/{third}/stop").json()["status"] == "stopped"
        fourth = client.post("/api/runs", json=long_run)
        assert fourth.status_code == 201
        assert client.post(f"/api/runs/{fourth.json()['id']}/stop").status_code == 200
        kept = client.post("/api/runs", json=long_run)
        assert kept.status_code == 409
        assert "MNIST_LAB_MAX_RUNS_KEPT" in kept.json()["detail"]

        # Two watchers per run, three in all; a refused one is told why with code 1013.
        url = f"{server.ws_url}/ws/runs"
        with contextlib.ExitStack() as stack:
            first_watchers = [_watch(stack, f"{url}/{first}") for _ in range(2)]
            assert all(first_watchers)
            closed = _refused(stack, f"{url}/{first}")
            assert closed.code == 1013 and "MNIST_LAB_MAX_STREAM_CLIENTS_PER_RUN" in closed.reason
            assert _watch(stack, f"{url}/{second}")
            closed = _refused(stack, f"{url}/{second}")
            assert closed.code == 1013 and "MNIST_LAB_MAX_STREAM_CLIENTS" in closed.reason
            first_watchers[0].close()  # a closed watcher gives its slot back
            wait_for(lambda: _watch(stack, f"{url}/{first}"), 10, 0.2, "a free slot")
        for run_id in (first, second):
            client.post(f"/api/runs/{run_id}/stop")


def _watch(stack: contextlib.ExitStack, url: str):
    """A connected watcher that got its snapshot, or None if it was refused."""
    ws = stack.enter_context(connect(url, proxy=None))
    try:
        if strict_json(ws.recv(timeout=10))["type"] == "snapshot":
            return ws
    except ConnectionClosed:
        pass
    return None


def _refused(stack: contextlib.ExitStack, url: str):
    """The close frame of a watcher the server turned away."""
    ws = stack.enter_context(connect(url, proxy=None))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return closed.value.rcvd
