"""/predict under load while a run trains: a real `mnist-lab serve`, a raw-socket load generator.

    python bench/predict_load.py                      # 500 req/s for 20 s, pixels of a real digit
    python bench/predict_load.py --rate 800 --seconds 30 --connections 32
    python bench/predict_load.py --kind image         # a 280x280 PNG data URL instead of pixels
    python bench/predict_load.py --priority 19        # on a shared machine (root): CPU first
    python bench/predict_load.py --sweep              # while a sweep trains on the local pool
    python bench/predict_load.py --sweep --pool 2     # ... with two trials at once on each core pair

The server trains the `default` preset on all of MNIST the whole time (its first epoch is
awaited, so there is a model to predict with; the run keeps training during the measurement).
With --sweep it trains a sweep instead: 12 trials of `default` over learning rate, width and batch
size, as many at once as the server's pool holds (its default size for this machine, or --pool),
the first trial's first epoch awaited.
Requests are sent open-loop at a fixed rate over keep-alive HTTP/1.1 connections; a request's
latency counts from the moment it was due, so a slow server cannot hide its queueing (no
coordinated omission). Prints one JSON object: req/s achieved, p50/p90/p99/max latency in ms,
errors by status, and the training run's speed during the window. Target: p99 < 50 ms at
>= 500 req/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_seconds, raised_priority  # noqa: E402
from tests.app.liveserver import LiveServer  # noqa: E402
from tests.waiting import wait_for  # noqa: E402


def request_bytes(port: int, body: bytes) -> bytes:
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def load(port: int, payload: bytes, rate: float, seconds: float, connections: int):
    due: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    message = request_bytes(port, payload)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (scheduled := await due.get()) is not None:
                try:
                    writer.write(message)
                    await writer.drain()
                    status, _ = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError) as error:
                    errors[type(error).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - scheduled)
                if status != 200:
                    errors[str(status)] += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    total = int(rate * seconds)
    started = time.perf_counter()
    for index in range(total):
        when = started + index / rate
        delay = when - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(when)
    for _ in tasks:
        due.put_nowait(None)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


class RunTraining:
    """One `default` run on all of MNIST, its first epoch awaited."""

    def __init__(self, client: httpx.Client):
        self.client = client
        self.run = client.post("/api/runs", json={"preset": "default", "epochs": 50}).json()
        wait_for(lambda: self.get()["has_model"], 600, 0.5, "the first epoch")

    def get(self) -> dict:
        return self.client.get(f"/api/runs/{self.run['id']}").json()

    def steps(self) -> int:
        return self.get()["progress"]["step"]

    def during(self, before: int) -> dict:
        after = self.get()
        return {"status": after["status"], "steps": after["progress"]["step"] - before,
                "samples_per_second": after["progress"]["samples_per_second"]}

    def stop(self) -> None:
        self.client.post(f"/api/runs/{self.run['id']}/stop")


class SweepTraining:
    """A 12-trial sweep of `default` on the server's pool, its first trial's first epoch awaited."""

    def __init__(self, client: httpx.Client):
        self.client = client
        pool = client.get("/api/options").json()["limits"]["max_concurrent_runs"]
        self.sweep = client.post("/api/sweeps", json={
            "name": "under load", "base": {"preset": "default", "epochs": 20},
            "space": {"learning_rate": {"min": 0.01, "max": 0.2, "log": True},
                      "hidden_layers": {"values": [[128], [256], [512, 256]]},
                      "batch_size": {"values": [64, 128, 256]}},
            "method": "random", "trials": 12, "max_concurrent": pool}).json()
        wait_for(lambda: any(t["epochs"] >= 1 for t in self.get()["trials"]), 900, 0.5,
                 "the first trial's first epoch")

    def get(self) -> dict:
        return self.client.get(f"/api/sweeps/{self.sweep['id']}").json()

    def steps(self) -> int:
        runs = [self.client.get(f"/api/runs/{t['run_id']}").json() for t in self.get()["trials"]]
        return sum(run["progress"]["step"] for run in runs)

    def during(self, before: int) -> dict:
        sweep = self.get()
        training = [t for t in sweep["trials"] if t["status"] == "running"]
        return {"sweep": sweep["status"], "pool": sweep["spec"]["max_concurrent"],
                "trials_training": len(training), "steps": self.steps() - before}

    def stop(self) -> None:
        self.client.post(f"/api/sweeps/{self.sweep['id']}/stop")


def payload_for(kind: str, mnist_dir: Path) -> bytes:
    from engine.data import read_mnist_dir

    data = read_mnist_dir(mnist_dir)
    digit = data.test_images[0]
    if kind == "pixels":
        return json.dumps({"pixels": np.round(digit / 255.0, 3).tolist()}).encode()
    from PIL import Image

    picture = Image.fromarray(255 - digit.reshape(28, 28)).resize((280, 280))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return json.dumps({"image": "data:image/png;base64,"
                       + base64.b64encode(buffer.getvalue()).decode()}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--kind", choices=("pixels", "image"), default="pixels")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at the rate, not counted")
    parser.add_argument("--sweep", action="store_true",
                        help="measure while a sweep trains (trials on the local pool) instead of one run")
    parser.add_argument("--pool", type=int, default=None, metavar="N",
                        help="the server's --max-concurrent-runs (default: its choice for this machine)")
    parser.add_argument("--priority", type=int, default=0, metavar="N",
                        help="lower the niceness of this load generator, the server and their "
                        "session by N (needs root): on a machine shared with other work, this "
                        "approximates one that runs only MNIST Lab (the worker stays 5 below)")
    args = parser.parse_args()

    mnist_dir = Path(os.environ.get("MNIST_DIR", "")) if os.environ.get("MNIST_DIR") else None
    if mnist_dir is None:
        from engine.data import resolve_data_dir

        mnist_dir = resolve_data_dir(None) / "mnist"
    payload = payload_for(args.kind, mnist_dir)
    with tempfile.TemporaryDirectory(prefix="mnist-lab-bench-") as folder, \
            raised_priority(args.priority):
        env = {"MNIST_DIR": str(mnist_dir)}
        if args.pool is not None:
            env["MNIST_LAB_MAX_CONCURRENT_RUNS"] = str(args.pool)
        with LiveServer(Path(folder) / "data", env) as server, \
                httpx.Client(base_url=server.url, timeout=60) as client:
            training = SweepTraining(client) if args.sweep else RunTraining(client)
            asyncio.run(load(server.port, payload, args.rate, args.warmup, args.connections))
            before = training.steps()
            cpu_before = cpu_seconds(server.pid)
            latencies, errors, elapsed = asyncio.run(
                load(server.port, payload, args.rate, args.seconds, args.connections))
            server_cpu = cpu_seconds(server.pid) - cpu_before
            during = training.during(before)
            training.stop()
    latencies.sort()

    def percentile(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    print(json.dumps({
        "training": "sweep" if args.sweep else "run",
        "kind": args.kind, "target_rate": args.rate, "connections": args.connections,
        "requests": len(latencies), "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99),
                       "max": round(1000 * latencies[-1], 2),
                       "mean": round(1000 * statistics.fmean(latencies), 2)},
        "errors": dict(errors),
        # CPU the server process spent per request (its user + system time, its training worker
        # excluded): what the load costs, whatever else the machine is doing.
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(1, len(latencies)), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "niceness": os.nice(0),
        "training_during_window": during,
        "cpus": os.cpu_count(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
