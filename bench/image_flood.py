"""Image flood: many concurrent `/predict` uploads of a large, legal, mostly empty PNG against a
real `mnist-lab serve`, and the server's memory before, during and after.

    python bench/image_flood.py                        # 20 concurrent uploads, 5 rounds
    python bench/image_flood.py --concurrency 16 --rounds 10 --side 4800

The picture is within the server's header limits (a few thousand pixels a side), compresses to
~90 KB because it is nearly all zeros, and decodes to tens of megabytes: the cheapest way for a
client to make the server hold memory. The server trains a tiny model first (one epoch on a
slice), so every upload is decoded and answered.

Prints one JSON object: the server's resident memory (VmRSS from /proc) at rest, its peak during
the flood (VmHWM, the kernel's high-water mark) and after the flood, and the answers by status.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.app.liveserver import LiveServer  # noqa: E402


def sparse_png(side: int) -> bytes:
    """A side x side RGBA PNG, transparent but for one small stroke: legal, small, costly."""
    picture = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(picture).line([(side // 3, side // 3), (side // 2, 2 * side // 3)],
                                 fill=(0, 0, 0, 255), width=max(4, side // 60))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) // 1024
    return found


def trained_server(data_dir: Path, env: dict[str, str]) -> LiveServer:
    """A live server with one small trained model (so /predict decodes every upload)."""
    server = LiveServer(data_dir, env={"MNIST_LAB_TRAIN_SUBSET": "500",
                                       "MNIST_LAB_TEST_SUBSET": "100", **env}).start()
    server.train_tiny_model()
    return server


async def flood(url: str, png: bytes, concurrency: int, rounds: int) -> Counter:
    statuses: Counter = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def one() -> None:
            try:
                answer = await client.post("/predict", files={"file": ("big.png", png, "image/png")})
                statuses[answer.status_code] += 1
            except httpx.HTTPError as error:
                statuses[type(error).__name__] += 1

        for _ in range(rounds):
            await asyncio.gather(*(one() for _ in range(concurrency)))
    return statuses


def measure(concurrency: int, rounds: int, side: int, env: dict[str, str]) -> dict:
    png = sparse_png(side)
    with tempfile.TemporaryDirectory() as folder:
        server = trained_server(Path(folder) / "data", env)
        try:
            at_rest = memory(server.pid)["VmRSS"]
            statuses = asyncio.run(flood(server.url, png, concurrency, rounds))
            after = memory(server.pid)
            alive = httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
        finally:
            server.stop()
    return {"side": side, "png_kb": round(len(png) / 1024, 1), "concurrency": concurrency,
            "rounds": rounds, "answers": dict(statuses), "rss_at_rest_mb": at_rest,
            "peak_rss_mb": after["VmHWM"], "rss_after_mb": after["VmRSS"], "healthy_after": alive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--side", type=int, default=4800, help="pixels a side (default 4800)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra server environment, e.g. MNIST_LAB_MAX_IMAGE_PIXELS=24000000")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("MNIST_DIR", os.environ.get("MNIST_DIR", ""))
    env = {k: v for k, v in env.items() if v}
    print(json.dumps(measure(args.concurrency, args.rounds, args.side, env)))


if __name__ == "__main__":
    main()
