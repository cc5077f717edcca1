"""Soak: a real `mnist-lab serve` on loopback trains a run while 50 WebSocket clients watch it and
a load generator sends /predict requests, for several minutes.

    python bench/soak.py                              # 3 minutes, 50 watchers, 200 predictions/s
    python bench/soak.py --minutes 10 --watchers 50 --rate 300
    python bench/soak.py --minutes 1 --train-subset 10000     # a quick look

Every loop is bounded: the load stops after --minutes, the run is then stopped, and the watchers
(a separate process, so that parsing their messages does not disturb the load generator's clock)
end when they have seen the run's final status or after a deadline.

Prints one JSON object: predictions served, their p50/p99 latency and errors (target: none);
for every watcher the steps it received, with duplicates and gaps (target: every step once, as
stored by the server); and the server's resident memory sampled along the way (target: flat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.predict_load import load, payload_for  # noqa: E402
from tests.app.liveserver import LiveServer  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

FINAL = ("stopped", "completed", "failed", "interrupted")
LONG_EPOCHS = 1000  # the engine's maximum: the run trains until the soak stops it


# --- the watchers (run in their own process: `python bench/soak.py watch ...`) -----------------------
async def watch_one(url: str, deadline: float) -> dict:
    from websockets.asyncio.client import connect

    received = {"steps": 0, "first": None, "last": None, "duplicates": 0, "gaps": 0,
                "messages": 0, "snapshots": 0, "epochs": 0, "final_status": None, "error": None}
    last = -1
    try:
        async with connect(url, proxy=None, max_size=None, open_timeout=60) as ws:
            while time.monotonic() < deadline and received["final_status"] is None:
                try:
                    text = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                message = json.loads(text)
                received["messages"] += 1
                kind = message["type"]
                points = message.get("points") or message.get("iterations") or []
                if kind == "snapshot":
                    received["snapshots"] += 1
                    received["epochs"] = len(message["epochs"])
                elif kind == "epoch":
                    received["epochs"] += 1
                elif (kind == "status" and message["status"] in FINAL
                      and not message["run"].get("unstored")):  # (else held-back steps follow)
                    received["final_status"] = message["status"]
                for point in points:
                    step = point["step"]
                    if step <= last:
                        received["duplicates"] += 1
                        continue
                    if step != last + 1:
                        received["gaps"] += 1
                    received["steps"] += 1
                    received["first"] = step if received["first"] is None else received["first"]
                    received["last"] = last = step
    except Exception as error:  # noqa: BLE001 - reported in the results
        received["error"] = f"{type(error).__name__}: {error}"
    return received


async def watch_all(url: str, clients: int, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    return await asyncio.gather(*(watch_one(url, deadline) for _ in range(clients)))


# --- the soak ---------------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 2) if values else 0.0


def soak(args: argparse.Namespace, mnist_dir: Path) -> dict:
    payload = payload_for("pixels", mnist_dir)
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_MAX_EPOCHS": str(LONG_EPOCHS),
           "MNIST_LAB_MAX_STEPS_PER_RUN": str(LONG_EPOCHS * 469)}
    if args.train_subset:
        env["MNIST_LAB_TRAIN_SUBSET"] = str(args.train_subset)
    seconds = 60 * args.minutes
    with tempfile.TemporaryDirectory(prefix="mnist-lab-soak-") as folder, \
            LiveServer(Path(folder) / "data", env) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        run_id = client.post("/api/runs", json={"preset": "default", "epochs": LONG_EPOCHS}).json()["id"]
        watchers = subprocess.Popen(
            [sys.executable, __file__, "watch", f"{server.ws_url}/ws/runs/{run_id}",
             "--clients", str(args.watchers), "--seconds", str(seconds + 900)],
            stdout=subprocess.PIPE, text=True)
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["has_model"], 900, 0.5,
                 "the first epoch (a model to predict with)")
        asyncio.run(load(server.port, payload, args.rate, 2.0, args.connections))  # warm up
        rss = [(0.0, rss_mb(server.pid))]
        started_step = client.get(f"/api/runs/{run_id}").json()["progress"]["step"]
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        started = time.monotonic()
        while (remaining := seconds - (time.monotonic() - started)) >= 1.0:  # windows of <= 30 s
            window = min(30.0, remaining)
            got, failed, _ = asyncio.run(load(server.port, payload, args.rate, window, args.connections))
            latencies += got
            errors.update(failed)
            rss.append((round(time.monotonic() - started, 1), rss_mb(server.pid)))
        duration = time.monotonic() - started
        run = client.get(f"/api/runs/{run_id}").json()
        client.post(f"/api/runs/{run_id}/stop")  # 409 if it already ended by itself
        stopped = client.get(f"/api/runs/{run_id}").json()
        try:
            output, _ = watchers.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            watchers.kill()
            output, _ = watchers.communicate()
        results = json.loads(output) if output.strip() else []
        stored = client.get(f"/api/runs/{run_id}/metrics").json()["iterations"]
        health = client.get("/healthz").status_code
    steps = len(stored)
    stored_ok = [point["step"] for point in stored] == list(range(steps))
    complete = [r for r in results if r["steps"] == steps and r["first"] == 0 and r["last"] == steps - 1
                and not r["duplicates"] and not r["gaps"] and r["final_status"] == stopped["status"]]
    latencies.sort()
    return {
        "minutes": round(duration / 60, 2),
        "cpus": os.cpu_count(),
        "predict": {
            "target_rate": args.rate, "requests": len(latencies),
            "requests_per_second": round(len(latencies) / duration, 1),
            "latency_ms": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                           "max": percentile(latencies, 1.0)},
            "errors": dict(errors),
        },
        "stream": {
            "watchers": args.watchers, "steps_stored": steps, "stored_steps_contiguous": stored_ok,
            "watchers_with_every_step_once": len(complete),
            "steps_received": sorted({r["steps"] for r in results}),
            "duplicates": sum(r["duplicates"] for r in results),
            "gaps": sum(r["gaps"] for r in results),
            "resent_snapshots": sum(r["snapshots"] - 1 for r in results),
            "messages_per_watcher_per_second": round(
                sum(r["messages"] for r in results) / max(1, len(results)) / duration, 1),
            "errors": [r["error"] for r in results if r["error"]],
        },
        "server_rss_mb": {"start": rss[0][1], "end": rss[-1][1], "max": max(m for _, m in rss),
                          "samples": rss},
        "training": {"final_status": stopped["status"], "steps_during_soak": run["progress"]["step"]
                     - started_step, "samples_per_second": run["progress"]["samples_per_second"]},
        "healthy_after": health == 200,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    watch = sub.add_parser("watch", help="(internal) the watcher process")
    watch.add_argument("url")
    watch.add_argument("--clients", type=int, default=50)
    watch.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="/predict requests per second")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections for /predict")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="train on the first N digits (default: all 60,000)")
    args = parser.parse_args()
    if args.command == "watch":
        print(json.dumps(asyncio.run(watch_all(args.url, args.clients, args.seconds))))
        return 0
    mnist_dir = Path(os.environ["MNIST_DIR"]) if os.environ.get("MNIST_DIR") else None
    if mnist_dir is None:
        from engine.data import resolve_data_dir

        mnist_dir = resolve_data_dir(None) / "mnist"
    print(json.dumps(soak(args, mnist_dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
