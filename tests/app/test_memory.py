"""What a client can make the server hold, measured on a real `mnist-lab serve` from /proc.

Pictures: a PNG that is mostly zeros compresses to a few kilobytes and decodes to megabytes;
sixteen of them at once took the server from ~75 MB to over a gigabyte, and most of it stayed
(docs/reliability.md). The bounds: decoded pixels per picture, two decodes at a time, freed
memory returned to the OS. The margins below are generous (3x what is measured) so that they
catch the unbounded behaviour, not noise.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bench.image_flood import sparse_png
from tests.app.liveserver import LiveServer

pytestmark = pytest.mark.mnist

MB = 1 << 20
CONCURRENT = 16


async def _upload_all(url: str, png: bytes, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        return await asyncio.gather(*(
            client.post("/predict", files={"file": ("big.png", png, "image/png")})
            for _ in range(count)))


@pytest.fixture(scope="module")
def server(tmp_path_factory, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": "500",
           "MNIST_LAB_TEST_SUBSET": "100"}
    with LiveServer(tmp_path_factory.mktemp("memory") / "data", env=env) as live:
        live.train_tiny_model()
        yield live


def test_a_flood_of_large_legal_pictures_keeps_memory_bounded(server):
    """16 concurrent uploads, twice, of a 2048x2048 PNG (the largest accepted: 16 MB decoded each)."""
    png = sparse_png(2048)
    at_rest = server.rss_bytes()
    for _ in range(2):
        answers = asyncio.run(_upload_all(server.url, png, CONCURRENT))
        assert [a.status_code for a in answers] == [200] * CONCURRENT, answers[0].text
    peak, after = server.peak_rss_bytes(), server.rss_bytes()
    # Two decodes at a time: ~2 x 16 MB of pixels plus their reductions (measured: +70 MB).
    assert peak - at_rest < 250 * MB, f"peak {peak / MB:.0f} MB from {at_rest / MB:.0f} MB at rest"
    # What was decoded went back to the OS (measured: within 10 MB of the resting size).
    assert after - at_rest < 100 * MB, f"{after / MB:.0f} MB held after, {at_rest / MB:.0f} MB at rest"


def test_pictures_that_decode_too_large_are_refused_before_decoding(server):
    """4800x4800 (23 million pixels, under the header's side limit) compresses to ~90 KB: refused
    with the limit and what to do, and nothing is decoded."""
    png = sparse_png(4800)
    assert len(png) < 200_000
    at_rest = server.rss_bytes()
    answers = asyncio.run(_upload_all(server.url, png, CONCURRENT))
    assert {a.status_code for a in answers} == {422}
    detail = answers[0].json()["detail"]
    assert "4800x4800" in detail and "4,194,304" in detail and "scale it down" in detail
    assert server.rss_bytes() - at_rest < 100 * MB


def test_a_large_jpeg_is_decoded_small_by_its_own_decoder(server):
    """A JPEG has a cheaper way down: its decoder scales by 1/8 and decodes grey only, so a
    6000x6000 photo (36 million pixels) is read as 750x750 and answered."""
    import io

    from PIL import Image, ImageDraw

    picture = Image.new("L", (6000, 6000), 255)
    ImageDraw.Draw(picture).line([(2000, 1500), (3000, 4500)], fill=0, width=300)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=50)
    answer = httpx.post(f"{server.url}/predict", timeout=120,
                        files={"file": ("photo.jpg", buffer.getvalue(), "image/jpeg")})
    assert answer.status_code == 200, answer.text
    assert 0 <= answer.json()["digit"] <= 9
