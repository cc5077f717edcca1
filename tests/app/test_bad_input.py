"""Property-based bad input against a real `mnist-lab serve`: random JSON, wrong types, huge
numbers, NaN, empty and random bytes, truncated and oversized PNGs, at every endpoint. Never a
500, never a hung request (every request has a timeout), and the server stays healthy."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import zlib
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.app.liveserver import LiveServer, strict_json, wait_for_status

pytestmark = pytest.mark.mnist

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
REQUEST_TIMEOUT = 15.0  # a request taking longer counts as hung


@pytest.fixture(scope="module")
def server(tmp_path_factory, mnist_dir):
    """A server with one trained model, and small limits so that the random configs that happen
    to be valid train in a moment (or are refused by a limit)."""
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "300", "MNIST_LAB_TEST_SUBSET": "100",
           "MNIST_LAB_MAX_EPOCHS": "1", "MNIST_LAB_MAX_UNITS_PER_LAYER": "64",
           "MNIST_LAB_MAX_QUEUED_RUNS": "2", "MNIST_LAB_MAX_RUNS_KEPT": "30"}
    with LiveServer(tmp_path_factory.mktemp("bad-input") / "data", env=env) as live, \
            httpx.Client(base_url=live.url, timeout=60) as client:
        run = client.post("/api/runs", json={"hidden_layers": [16], "epochs": 1, "batch_size": 50})
        assert run.status_code == 201, run.text
        assert wait_for_status(client, run.json()["id"], {"completed", "failed"}, 60)["status"] == "completed"
        yield live
        assert client.get("/healthz").status_code == 200
        assert live.process.poll() is None
        log = live.log(last=None)  # errors.py logs "unhandled error", uvicorn "Exception in ASGI application"
        assert "unhandled error" not in log and "Exception in ASGI application" not in log, log


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as http:
        yield http


def assert_handled(response: httpx.Response) -> None:
    """A 2xx, or a 4xx whose body is JSON with a sentence; never a 5xx."""
    assert response.status_code < 500, (response.request.method, response.request.url, response.text)
    if response.status_code >= 400:
        body = strict_json(response.text)
        assert isinstance(body["detail"], str) and len(body["detail"]) > 5, body
    elif response.headers.get("content-type", "").startswith("application/json"):
        strict_json(response.text)


# --- strategies --------------------------------------------------------------------------------------------
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1e308, -1e308, 2**63, 2**64 + 1, 10**400]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=6)),
    max_leaves=20)
CONFIG_FIELDS = ["preset", "hidden_layers", "activation", "init", "batch_norm", "dropout", "optimizer",
                 "learning_rate", "momentum", "weight_decay", "lr_schedule", "lr_decay",
                 "warmup_epochs", "batch_size", "epochs", "seed", "augmentation"]
run_configs = st.dictionaries(
    st.one_of(st.sampled_from(CONFIG_FIELDS), st.text(max_size=12)),
    st.one_of(json_values, st.lists(st.integers(-5, 10**9), max_size=20),
              st.sampled_from(["relu", "adam", "default", "cosine", "he"])),
    max_size=6)


def to_json(value) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity included (not valid JSON)."""
    return json.dumps(value, allow_nan=True).encode()


def png_bytes(size: int = 64) -> bytes:
    picture = Image.new("L", (size, size), 255)
    picture.paste(0, (size // 3, size // 5, size // 2, 4 * size // 5))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge picture (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


PNG = png_bytes()
images = st.one_of(
    st.binary(max_size=2000),
    st.integers(0, len(PNG)).map(lambda cut: PNG[:cut]),  # every truncation of a real PNG
    st.integers(8, len(PNG) - 1).flatmap(  # one corrupted byte
        lambda at: st.integers(0, 255).map(lambda b: PNG[:at] + bytes([b]) + PNG[at + 1:])),
    st.sampled_from([b"", PNG, png_claiming(100_000, 100_000), png_claiming(1, 10**9),
                     png_claiming(0, 0), b"\xff\xd8\xff\xe0" + b"\0" * 20]),
)
image_texts = st.one_of(
    images.map(lambda data: base64.b64encode(data).decode()),
    images.map(lambda data: "data:image/png;base64," + base64.b64encode(data).decode()),
    st.text(max_size=50),
    st.sampled_from(["data:", "data:image/png;base64,", "data:image/png,abc", "====", " "]),
)
pixel_lists = st.one_of(
    st.lists(numbers, min_size=784, max_size=784),
    st.lists(st.floats(0, 1), min_size=0, max_size=800),
    st.lists(st.lists(st.floats(0, 1), min_size=784, max_size=784), min_size=1, max_size=3),
    st.lists(json_values, max_size=5),
    json_values,
)
predict_bodies = st.one_of(
    st.fixed_dictionaries({"pixels": pixel_lists}, optional={"run_id": json_values}),
    st.fixed_dictionaries({"image": st.one_of(image_texts, json_values)},
                          optional={"run_id": json_values}),
    json_values,
)
run_ids = st.one_of(st.integers(-3, 5), st.integers(2**62, 2**70), st.text(max_size=12),
                    st.sampled_from(["..", "%2e%2e", "1.5", "1e3", "NaN", "-0", "../../etc/passwd"]))


# --- the properties ----------------------------------------------------------------------------------------
@EXAMPLES
@given(body=run_configs)
def test_random_run_configs(client, body):
    assert_handled(client.post("/api/runs", content=to_json(body),
                               headers={"Content-Type": "application/json"}))


@EXAMPLES
@given(body=predict_bodies)
def test_random_predict_json(client, body):
    assert_handled(client.post("/predict", content=to_json(body),
                               headers={"Content-Type": "application/json"}))


@EXAMPLES
@given(data=images, run_id=st.one_of(st.none(), st.text(max_size=8)))
def test_random_uploads(client, data, run_id):
    fields = {} if run_id is None else {"run_id": run_id}
    assert_handled(client.post("/predict", files={"file": ("digit.png", data, "image/png")}, data=fields))


@EXAMPLES
@given(raw=st.binary(max_size=3000),
       content_type=st.sampled_from(["application/json", "multipart/form-data",
                                     "multipart/form-data; boundary=xyz", "text/plain",
                                     "application/x-www-form-urlencoded", "image/png", ""]),
       path=st.sampled_from(["/predict", "/api/runs", "/api/active-model", "/api/runs/1/stop"]))
def test_random_bytes_anywhere(client, raw, content_type, path):
    method = "PUT" if path == "/api/active-model" else "POST"
    assert_handled(client.request(method, path, content=raw, headers={"Content-Type": content_type}))


@EXAMPLES
@given(run_id=run_ids,
       suffix=st.sampled_from(["", "/metrics", "/model", "/evaluation", "/misclassified",
                               "/weights", "/stop", "/pause", "/resume"]),
       method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
       query=st.dictionaries(st.sampled_from(["after", "format", "x"]),
                             st.one_of(st.text(max_size=10), st.integers(-(2**70), 2**70)), max_size=2))
def test_random_run_paths(client, run_id, suffix, method, query):
    if method == "DELETE" and suffix == "" and run_id == 1:
        return  # keep the trained model for the other properties
    path = f"/api/runs/{quote(str(run_id), safe='%.')}{suffix}"
    assert_handled(client.request(method, path, params=query))


@EXAMPLES
@given(body=json_values)
def test_random_active_model_choices(client, body):
    assert_handled(client.put("/api/active-model", content=to_json(body),
                              headers={"Content-Type": "application/json"}))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=st.one_of(st.integers(-2, 3), st.text(alphabet="0123456789abc-.%", max_size=8)),
       after=st.one_of(st.none(), st.text(max_size=8), st.integers(-(2**70), 2**70)))
def test_random_stream_requests(server, run_id, after):
    """Every WebSocket request is answered: a snapshot, or a close or refusal with a reason."""
    url = f"{server.ws_url}/ws/runs/{quote(str(run_id), safe='')}"
    if after is not None:
        url += f"?after={quote(str(after), safe='')}"
    try:
        with connect(url, proxy=None, open_timeout=REQUEST_TIMEOUT) as ws:
            try:
                first = strict_json(ws.recv(timeout=REQUEST_TIMEOUT))
                assert first["type"] == "snapshot"
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code >= 1000
                assert closed.rcvd.code != 1011, closed.rcvd  # 1011: an internal error
    except InvalidStatus as refused:
        assert refused.response.status_code < 500


@pytest.mark.parametrize("path", ["/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
                                  "/static/%2e%2e/%2e%2e/pyproject.toml", "/api/runs/..%2f..%2fetc",
                                  "//etc/passwd", "/static//etc/passwd"])
def test_no_path_reaches_the_filesystem_unchecked(server, path):
    """Sent byte for byte (HTTP clients would normalise the dots away)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404, 422), answer[:300]
    assert b"root:" not in answer and b"[project]" not in answer


def test_still_healthy_and_still_predicting(client):
    assert client.get("/healthz").status_code == 200
    digit = np.zeros((28, 28))
    digit[6:22, 13:16] = 1.0
    answer = client.post("/predict", json={"pixels": digit.ravel().tolist(), "run_id": 1})
    assert answer.status_code == 200, answer.text
    assert abs(sum(answer.json()["probabilities"]) - 1) < 1e-4
