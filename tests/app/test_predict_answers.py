"""/predict's answers as a newcomer reads them, on a real `mnist-lab serve` with a model: nothing
drawn is a 422 (pixels too, not only pictures), an undecodable picture is described in words
(not as a Python object), and the `input` echoed back is compact JSON."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.app.liveserver import LiveServer, strict_json

pytestmark = pytest.mark.mnist

DIGIT = [0.0] * 300 + [1.0] * 184 + [0.0] * 300


@pytest.fixture(scope="module")
def client(tmp_path_factory, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "500", "MNIST_LAB_TEST_SUBSET": "100"}
    with LiveServer(tmp_path_factory.mktemp("predict") / "data", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        server.train_tiny_model()
        yield client


@pytest.mark.parametrize("pixels, where", [([0.0] * 784, "pixels"), ([0] * 784, "pixels"),
                                           ([DIGIT, [0.0] * 784], "pixels[1]")])
def test_all_zero_pixels_are_422_nothing_drawn(client, pixels, where):
    answer = client.post("/predict", json={"pixels": pixels})
    assert answer.status_code == 422, answer.text[:200]
    detail = answer.json()["detail"]
    assert detail.startswith("nothing is drawn") and f"of {where} is 0" in detail


@pytest.mark.parametrize("send", ["json", "multipart"])
def test_an_undecodable_picture_is_described_in_words(client, send):
    garbage = b"\x89PNG\r\n\x1a\n but then not a PNG at all" * 3
    if send == "json":
        answer = client.post("/predict", json={"image": base64.b64encode(garbage).decode()})
    else:
        answer = client.post("/predict", files={"file": ("x.png", garbage, "image/png")})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "cannot be decoded" in detail and "PNG or JPEG" in detail
    assert "BytesIO" not in detail and " at 0x" not in detail, detail


def test_the_input_echoed_back_is_compact_json(client):
    answer = client.post("/predict", json={"pixels": DIGIT})
    assert answer.status_code == 200
    text = answer.text
    echoed = text[text.index('"input":['):]
    assert " " not in echoed, echoed[:120]
    values = strict_json(text)["input"]
    assert len(values) == 784 and all(0.0 <= v <= 1.0 for v in values) and max(values) == 1.0
