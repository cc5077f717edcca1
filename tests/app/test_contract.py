"""The OpenAPI document tells the truth: Schemathesis (a third-party API fuzzer) runs every one of
its checks against a real `mnist-lab serve` training real MNIST (a slice), on a fixed seed and a
fixed number of examples per operation, and finds nothing. Alongside, the parts of the contract
a reader can check by hand: the bounds in the schema are the server's, 405s list every method of
the path, the CSV export is declared.

A bigger budget, by hand (docs/API.md):
    MNIST_LAB_CONTRACT_EXAMPLES=500 MNIST_LAB_CONTRACT_SEED=7 \
        .venv/bin/python -m pytest tests/app/test_contract.py
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app import schemas
from app.contract import TAG_PATTERN_PUBLISHED
from app.inspection import PIXELS_PATTERN, decode_pixels
from app.main import create_app
from app.predictor import InputError
from app.settings import Settings
from tests.app.liveserver import REPO, LiveServer

# The server the fuzzer tries: real MNIST (a slice) and limits under which every config the
# schema allows field by field also fits the run size limits as a whole (parameters, steps,
# memory: JSON Schema cannot say those), and that still admit every preset and the document's
# own examples. Trains stay cheap: 200 digits an epoch, one run at a time, a few runs kept.
CONTRACT_SERVER = {
    "MNIST_LAB_TRAIN_SUBSET": "200", "MNIST_LAB_TEST_SUBSET": "200",
    "MNIST_LAB_MAX_CONCURRENT_RUNS": "1", "MNIST_LAB_MAX_HIDDEN_LAYERS": "2",
    "MNIST_LAB_MAX_UNITS_PER_LAYER": "800", "MNIST_LAB_MAX_EPOCHS": "50",
    "MNIST_LAB_MAX_BATCH_SIZE": "500", "MNIST_LAB_MAX_QUEUED_RUNS": "4",
    "MNIST_LAB_MAX_RUNS_KEPT": "12", "MNIST_LAB_MAX_SWEEP_TRIALS": "12",
    "MNIST_LAB_MAX_SWEEP_CONCURRENT": "2", "MNIST_LAB_MAX_ACTIVE_SWEEPS": "1",
}
SEED = int(os.environ.get("MNIST_LAB_CONTRACT_SEED", "1"))
EXAMPLES = int(os.environ.get("MNIST_LAB_CONTRACT_EXAMPLES", "30"))  # per operation and phase


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as client:
        yield client


def operations(document: dict) -> list[tuple[str, str]]:
    return [(method, path) for path, item in document["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch")]


@pytest.mark.mnist
@pytest.mark.slow
def test_schemathesis_with_every_check_finds_nothing(tmp_path, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), **CONTRACT_SERVER}
    with LiveServer(tmp_path / "data", env=env) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
        command = [str(Path(sys.executable).parent / "schemathesis"),
                   "--config-file", str(REPO / "schemathesis.toml"), "--no-color",
                   "run", f"{server.url}/openapi.json", "--checks", "all",
                   "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "1",
                   # a step, pause or stop answers once the worker is between two steps,
                   # which may be after a validation pass of up to 50,000 digits
                   "--generation-database", "none", "--request-timeout", "180"]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                timeout=900)
        report = result.stdout + result.stderr
        assert result.returncode == 0, f"{report[-20000:]}\n--- server log:\n{server.log()}"
    tested = re.search(r"Tested: (\d+)", report)
    assert tested and int(tested.group(1)) == len(operations(document)), report[-3000:]
    passed = re.search(r"(\d+) generated, (\d+) passed", report)
    assert passed and int(passed.group(1)) == int(passed.group(2)) > 0, report[-3000:]


def test_the_schema_holds_every_config_bound_of_this_server(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", max_epochs=7, max_units_per_layer=100)
    with TestClient(create_app(settings)) as client:
        fields = client.get("/api/options").json()["fields"]
        models = client.get("/openapi.json").json()["components"]["schemas"]
    config, augmentation = models["RunConfig"]["properties"], models["Augmentation"]["properties"]

    def value(prop: dict) -> dict:
        return next(branch for branch in prop.get("anyOf", [prop]) if branch.get("type") != "null")

    for name, bounds in fields.items():
        group, _, short = name.rpartition(".")
        prop = value((augmentation if group else config)[short])
        if "choices" in bounds:
            assert prop["enum"] == bounds["choices"], name
            continue
        if name == "hidden_layers":
            assert prop["maxItems"] == bounds["max_items"], name
            prop = prop["items"]
        assert (prop["minimum"], prop["maximum"]) == (bounds["min"], bounds["max"]), name
        assert prop["type"] == ("integer" if bounds["integer"] else "number"), name
    assert value(config["epochs"])["maximum"] == 7  # this server's limit, not the engine's 1000
    assert value(config["hidden_layers"])["items"]["maximum"] == 100
    assert set(value(config["preset"])["enum"]) == {p["name"] for p in
                                                    client.get("/api/options").json()["presets"]}


def test_every_operation_declares_the_errors_of_the_layers_in_front_of_it(client):
    document = client.get("/openapi.json").json()
    for method, path in operations(document):
        answers = document["paths"][path][method]["responses"]
        assert {"400", "408", "413", "431", "500", "503"} <= set(answers), (method, path)
        if method != "get":
            assert "403" in answers, (method, path)
        if path not in ("/healthz", "/api/options"):
            assert "507" in answers, (method, path)
        for status, answer in answers.items():
            if status.startswith(("4", "5")) and "$ref" not in answer:
                schema = answer["content"]["application/json"]["schema"]["$ref"]
                assert schema.endswith("/Invalid" if status == "422" else "/Error"), (path, status)
    metrics = document["paths"]["/api/runs/{run_id}/metrics"]["get"]["responses"]["200"]
    assert set(metrics["content"]) == {"application/json", "text/csv"}
    model = document["paths"]["/api/runs/{run_id}/model"]["get"]["responses"]["200"]
    assert set(model["content"]) == {"application/octet-stream"}


def test_a_validation_error_answers_as_the_schema_says(client):
    answer = client.put("/api/active-model", json={"run_id": "3"})
    assert answer.status_code == 422
    assert set(answer.json()) == {"detail", "errors"}
    assert answer.json()["errors"][0]["loc"] == ["body", "run_id"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("OPTIONS", "/api/runs/1", "DELETE, GET, PATCH"),
    ("PUT", "/api/runs/1", "DELETE, GET, PATCH"),
    ("OPTIONS", "/api/active-model", "GET, PUT"),
    ("DELETE", "/api/sweeps", "GET, POST"),
    ("POST", "/api/runs/1/evaluation", "GET"),  # not a control like /stop: 405, not 422
    ("POST", "/api/runs/1/model", "GET"),
    ("GET", "/api/runs/1/stop", "POST"),
])
def test_a_method_a_path_does_not_take_is_405_with_every_method_it_does(client, method, path,
                                                                        allowed):
    answer = client.request(method, path)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == allowed
    assert allowed in answer.json()["detail"]


def test_hidden_units_take_exactly_the_pixels_their_pattern_describes():
    digit = base64.urlsafe_b64encode(bytes(range(256)) * 3 + bytes(16)).decode()  # 784 bytes
    bare = digit.rstrip("=")
    for text, taken in ((digit, True), (bare, True), (bare + "=", True), (bare[:-1], False),
                        (bare + "AAAA", False), (bare[:9] + "!" + bare[9:], False),  # was skipped
                        (bare[:9] + "+" + bare[10:], False)):  # base64, not base64url
        assert bool(re.fullmatch(PIXELS_PATTERN, text)) == taken, text[-8:]
        if taken:
            assert decode_pixels(text).shape == (1, 784)
        else:
            with pytest.raises(InputError):
                decode_pixels(text)


def test_the_published_tag_pattern_leaves_out_only_what_the_server_refuses(client):
    """The document spells out that U+20F1..U+20FF are no tag characters (a fuzzer's \\p{M}
    holds them); the server's own rule refuses them already, as unassigned code points."""
    document = client.get("/openapi.json").json()
    items = document["components"]["schemas"]["RunDetails"]["properties"]["tags"]["items"]
    assert items["pattern"] == TAG_PATTERN_PUBLISHED != schemas.TAG_PATTERN
    for code in range(0x20F1, 0x2100):
        assert unicodedata.category(chr(code)) == "Cn"
    run = client.post("/api/runs", json={"epochs": 1, "hidden_layers": [8]}).json()
    for tag in ("x\u20f4", "\u20ff"):
        answer = client.patch(f"/api/runs/{run['id']}", json={"tags": [tag]})
        assert answer.status_code == 422 and "is not a tag" in answer.json()["detail"]
    assert client.patch(f"/api/runs/{run['id']}", json={"tags": ["x\u20d0"]}).status_code == 200
