"""`mnist-lab serve` on a data dir without MNIST fetches it before it starts listening (first use)."""

from __future__ import annotations

import gzip
import shutil

import httpx
import pytest

from engine.data import MNIST_SHA256, sha256_file
from tests.app.liveserver import LiveServer

pytestmark = [pytest.mark.mnist]


def test_serve_fetches_and_verifies_mnist_on_first_use(tmp_path, mnist_dir):
    # The first source is the data folder itself: .gz files placed there by hand. Being first, it
    # keeps this test off the network, and it still goes through fetch, decompress and verify.
    data_dir = tmp_path / "data"
    (data_dir / "mnist").mkdir(parents=True)
    for name in MNIST_SHA256:
        with open(mnist_dir / name, "rb") as source, \
                gzip.open(data_dir / "mnist" / f"{name}.gz", "wb", compresslevel=1) as target:
            shutil.copyfileobj(source, target)

    with LiveServer(data_dir, {"MNIST_DIR": ""}) as server:
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200

    for name, digest in MNIST_SHA256.items():
        assert sha256_file(data_dir / "mnist" / name) == digest, name
