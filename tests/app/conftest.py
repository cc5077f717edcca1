"""Fixtures for the server tests: isolated apps (TestClient) and real MNIST on a small slice."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app.main import create_app
from app.runs.state import ACTIVE_STATUSES
from app.settings import Settings
from tests.waiting import wait_for

TRAIN_SUBSET = 2000
TEST_SUBSET = 1000


def small_settings(data_dir: Path, **overrides) -> Settings:
    values = {"train_subset": TRAIN_SUBSET, "test_subset": TEST_SUBSET, "max_concurrent_runs": 1,
              **overrides}
    return Settings(data_dir=data_dir, **values)


def wait_until_finished(client: TestClient, run_id: int, timeout: float = 60.0) -> dict:
    def finished():
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] not in ACTIVE_STATUSES else None
    return wait_for(finished, timeout, 0.1, f"run {run_id} to finish")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    """A TestClient app whose run 1 trained 2 epochs on 2000 real digits (a usable model)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNIST_DIR", str(mnist_dir))  # the worker processes read MNIST from here
        settings = small_settings(tmp_path_factory.mktemp("trained"))
        with TestClient(create_app(settings)) as client:
            run = client.post("/api/runs", json={"epochs": 2, "batch_size": 50, "seed": 3}).json()
            run = wait_until_finished(client, run["id"])
            assert run["status"] == "completed", run
            yield client, run


@pytest.fixture
def fresh(tmp_path, mnist_dir, monkeypatch):
    """An app with no runs yet."""
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    with TestClient(create_app(small_settings(tmp_path / "data"))) as client:
        yield client


def digit_png(digit: int, mnist_data, transparent: bool = True, size: int = 280) -> bytes:
    """A drawing of a real MNIST test digit as a canvas would send it: dark ink, transparent
    (or white) background, large and off-centre."""
    index = int(np.flatnonzero(mnist_data.test_labels == digit)[0])
    ink = mnist_data.test_images[index].reshape(28, 28)
    big = Image.fromarray(ink).resize((180, 180), Image.Resampling.BILINEAR)
    alpha = Image.new("L", (size, size), 0)
    alpha.paste(big, (20, 60))
    if transparent:
        picture = Image.new("RGBA", (size, size), (20, 20, 40, 0))
        picture.putalpha(alpha)
    else:
        picture = Image.new("L", (size, size), 255)
        picture.paste(Image.eval(alpha, lambda v: 255 - v))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def blank_png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    picture = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(picture)
    picture.save(buffer, "PNG")
    return buffer.getvalue()
