"""Who may change what: the token, the start-up refusal, Host and Origin checks, CORS and the
per-client rate limit, against a real `mnist-lab serve` on loopback."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from app.security import (
    RateLimiter,
    allowed_origins,
    auth_required,
    check_exposure,
    is_loopback,
    rate_per_second,
)
from app.settings import Settings, SettingsError
from tests.app.liveserver import REPO, LiveServer, free_port, strict_json, wait_for_status

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every state-changing endpoint of docs/API.md (run 1 need not exist: auth comes first).
WRITES = [
    ("POST", "/api/runs", {"epochs": 1}),
    ("DELETE", "/api/runs/1", None),
    ("POST", "/api/runs/1/stop", None),
    ("POST", "/api/runs/1/pause", None),
    ("POST", "/api/runs/1/resume", None),
    ("PUT", "/api/active-model", {"run_id": 1}),
    ("PATCH", "/api/runs/1", {"name": "renamed"}),
]


# --- the rules, without a server -----------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST",
                                  "app.localhost"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.org",
                                  "localhost.example.org", ""])
def test_other_addresses_are_not_loopback(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "my-server.lan"])
def test_refuses_a_non_loopback_host_without_a_token(tmp_path, host):
    with pytest.raises(SettingsError) as refused:
        check_exposure(Settings(data_dir=tmp_path, host=host))
    message = str(refused.value)
    assert f"refusing to listen on {host}" in message
    assert "MNIST_LAB_TOKEN" in message and "127.0.0.1" in message


def test_a_token_makes_any_host_acceptable(tmp_path):
    check_exposure(Settings(data_dir=tmp_path, host="0.0.0.0", token=TOKEN))
    assert auth_required(Settings(data_dir=tmp_path, host="0.0.0.0", token=TOKEN))
    assert not auth_required(Settings(data_dir=tmp_path))


def test_a_short_token_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="at least 16"):
        check_exposure(Settings(data_dir=tmp_path, host="0.0.0.0", token="secret"))


def test_the_token_never_shows_in_the_settings_repr(tmp_path):
    assert TOKEN not in repr(Settings(data_dir=tmp_path, token=TOKEN))


def test_allowed_origins_are_normalised_and_checked(tmp_path):
    settings = Settings(data_dir=tmp_path, allowed_origins=" https://Lab.example.org/ ,http://localhost:5173")
    assert allowed_origins(settings) == ["https://lab.example.org", "http://localhost:5173"]
    with pytest.raises(SettingsError, match="not an origin"):
        allowed_origins(Settings(data_dir=tmp_path, allowed_origins="lab.example.org/page"))


def test_rate_limit_is_on_when_exposed_and_off_on_loopback_unless_configured(tmp_path):
    assert rate_per_second(Settings(data_dir=tmp_path)) is None
    assert rate_per_second(Settings(data_dir=tmp_path, host="0.0.0.0", token=TOKEN)) > 0
    assert rate_per_second(Settings(data_dir=tmp_path, rate_limit_per_s=7)) == 7
    assert rate_per_second(Settings(data_dir=tmp_path, host="0.0.0.0", token=TOKEN,
                                    rate_limit_per_s=0)) is None


def test_token_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert wait == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    now[0] += 100
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # never more than the burst
    assert limiter.take("a") > 0


def test_token_bucket_memory_is_bounded():
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=1, clock=lambda: now[0])
    limiter.MAX_CLIENTS = 100
    for client in range(1000):
        limiter.take(str(client))
        now[0] += 0.01
    assert len(limiter._buckets) <= 101


def test_serve_refuses_to_start_on_0000_without_a_token(tmp_path):
    """The real command: exits with a clear message before binding anything."""
    env = {"PATH": "/usr/bin:/bin", "MNIST_LAB_TOKEN": ""}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "refusing to listen on 0.0.0.0 without a token" in done.stderr
    assert "Traceback" not in done.stderr


# --- a server with a token ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guarded")
    with LiveServer(folder / "data", env={"MNIST_LAB_TOKEN": TOKEN, "MNIST_LAB_TRAIN_SUBSET": "200",
                                          "MNIST_LAB_TEST_SUBSET": "100"}) as server:
        yield server


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_state_changes_need_the_token(guarded, method, path, body):
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        missing = client.request(method, path, json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in strict_json(missing.text)["detail"]
        wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer " + "x" * 26})
        assert wrong.status_code == 403
        assert "not this server's token" in wrong.json()["detail"]
        scheme = client.request(method, path, json=body, headers={"Authorization": f"Basic {TOKEN}"})
        assert scheme.status_code == 401
        with_token = client.request(method, path, json=body, headers=AUTH)
        assert with_token.status_code not in (401, 403), with_token.text


def test_reads_and_predict_stay_open(guarded):
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        for path in ("/healthz", "/api/runs", "/api/active-model", "/api/options"):
            assert client.get(path).status_code == 200, path
        assert client.get("/api/options").json()["auth_required"] is True
        predict = client.post("/predict", json={"pixels": [0.0] * 784})
        assert predict.status_code not in (401, 403)  # 409 (no model yet) or 200


def test_a_run_can_be_created_and_deleted_with_the_token(guarded):
    with httpx.Client(base_url=guarded.url, timeout=30, headers=AUTH) as client:
        created = client.post("/api/runs", json={"hidden_layers": [8], "epochs": 1})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        assert client.delete(f"/api/runs/{run_id}").status_code == 204
        assert client.get(f"/api/runs/{run_id}").status_code == 404


def test_foreign_host_header_is_refused_on_loopback(guarded):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: refused."""
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        refused = client.get("/api/runs", headers={"Host": f"evil.example:{guarded.port}"})
        assert refused.status_code == 400
        assert "answers only to this machine's names" in refused.json()["detail"]
        for name in (f"localhost:{guarded.port}", f"127.0.0.1:{guarded.port}", f"[::1]:{guarded.port}"):
            assert client.get("/healthz", headers={"Host": name}).status_code == 200, name


def test_writes_from_another_origin_are_refused_even_with_the_token(guarded):
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{guarded.port + 1}"):
            refused = client.post("/api/runs/1/stop", headers={**AUTH, "Origin": origin})
            assert refused.status_code == 403, origin
            assert "MNIST_LAB_ALLOWED_ORIGINS" in refused.json()["detail"]
        same = client.post("/api/runs/999/stop", headers={**AUTH, "Origin": guarded.url})
        assert same.status_code == 404  # passed the guard, reached the route
        # Reads are not refused for their Origin, and no CORS header lets the page read them.
        read = client.get("/api/runs", headers={"Origin": "http://evil.example"})
        assert read.status_code == 200
        assert "access-control-allow-origin" not in read.headers


def test_websocket_from_another_origin_is_refused(guarded):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{guarded.ws_url}/ws/runs/999", origin="http://evil.example", proxy=None,
                open_timeout=10)
    assert refused.value.response.status_code == 403
    assert b"MNIST_LAB_ALLOWED_ORIGINS" in refused.value.response.body


@pytest.mark.parametrize("origin", [None, "same", "localhost"])
def test_websocket_from_this_server_or_no_browser_is_accepted(guarded, origin):
    origin = {None: None, "same": guarded.url, "localhost": f"http://localhost:{guarded.port}"}[origin]
    with connect(f"{guarded.ws_url}/ws/runs/999", origin=origin, proxy=None, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:  # accepted, then closed: no run 999
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4404


# --- configured origins turn CORS on -------------------------------------------------------------------
def test_allowed_origins_get_websockets_and_cors(tmp_path):
    allowed = "http://lab.example:5173"
    with LiveServer(tmp_path / "data", env={"MNIST_LAB_ALLOWED_ORIGINS": allowed}) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            preflight = client.options("/api/runs", headers={
                "Origin": allowed, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == allowed
            read = client.get("/api/runs", headers={"Origin": allowed})
            assert read.headers["access-control-allow-origin"] == allowed
            other = client.get("/api/runs", headers={"Origin": "http://evil.example"})
            assert "access-control-allow-origin" not in other.headers
        with connect(f"{server.ws_url}/ws/runs/999", origin=allowed, proxy=None, open_timeout=10) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 4404
        with pytest.raises(InvalidStatus):
            connect(f"{server.ws_url}/ws/runs/999", origin="http://evil.example", proxy=None,
                    open_timeout=10)


# --- rate limit --------------------------------------------------------------------------------------------
def test_reads_and_predict_are_rate_limited_per_client(tmp_path):
    env = {"MNIST_LAB_RATE_LIMIT_PER_S": "1", "MNIST_LAB_RATE_LIMIT_BURST": "5"}
    with LiveServer(tmp_path / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        statuses = []
        for _ in range(50):  # the start-up health checks spent part of the burst already
            statuses.append(client.get("/api/runs").status_code)
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
        limited = client.post("/predict", json={"pixels": [0.0] * 784})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "too many requests" in strict_json(limited.text)["detail"]
        time.sleep(int(limited.headers["retry-after"]) + 0.1)
        assert client.get("/api/runs").status_code == 200


# --- model files ----------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this would create a file: proof that a pickle inside a model was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.mnist
def test_a_model_file_with_a_pickle_inside_is_refused_not_executed(tmp_path, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "300", "MNIST_LAB_TEST_SUBSET": "100"}
    marker = tmp_path / "pickle-ran"
    with LiveServer(tmp_path / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/api/runs", json={"hidden_layers": [8], "epochs": 1}).json()["id"]
        assert wait_for_status(client, run_id, {"completed", "failed"}, 60)["status"] == "completed"
        pixels = {"pixels": [0.0] * 300 + [1.0] * 184 + [0.0] * 300, "run_id": run_id}
        assert client.post("/predict", json=pixels).status_code == 200
        model_path = tmp_path / "data" / "models" / f"run-{run_id}.npz"
        payload = np.empty(1, dtype=object)
        payload[0] = _Payload(str(marker))
        with open(model_path, "wb") as out:  # same name, new contents: the cache must reload it
            np.savez(out, **{"layer0.weight": payload})
        refused = client.post("/predict", json=pixels)
        assert refused.status_code == 409, refused.text
        assert "model" in refused.json()["detail"]
        assert client.get(f"/api/runs/{run_id}/evaluation").status_code == 409
        assert not marker.exists()
        assert client.get("/healthz").status_code == 200


# --- exposed (checked on the guard itself: these tests never bind a public address) -----------------
def scope(method: str, path: str, headers: dict[str, str], client: str = "203.0.113.7") -> dict:
    return {"type": "http", "method": method, "path": path, "client": (client, 50000),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


def test_exposed_guard_needs_the_token_for_writes_only_and_limits_every_client(tmp_path):
    from app.security import EXPOSED_RATE_PER_S, Guard

    guard = Guard(app=None, settings=Settings(data_dir=tmp_path, host="0.0.0.0", port=8000,
                                              token=TOKEN, rate_limit_burst=3))
    host = {"Host": "lab.example.org:8000"}  # any name: the Host check is for loopback only
    assert guard.check(scope("GET", "/api/runs", host)) is None
    assert guard.check(scope("POST", "/predict", host, client="198.51.100.1")) is None
    status, detail, headers = guard.check(scope("POST", "/api/runs", host, client="198.51.100.2"))
    assert status == 401 and "Authorization: Bearer" in detail
    assert guard.check(scope("DELETE", "/api/runs/3", {**host, **AUTH}, client="198.51.100.3")) is None
    assert guard.check(scope("GET", "/healthz", host)) is None
    assert guard.check(scope("GET", "/healthz", host)) is None
    status, detail, headers = guard.check(scope("GET", "/healthz", host))  # 4th from one client
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert f"{EXPOSED_RATE_PER_S:g} a second" in detail
    assert guard.check(scope("GET", "/healthz", host, client="192.0.2.9")) is None  # another client
