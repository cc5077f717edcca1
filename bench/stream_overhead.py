"""What watching costs: `default` trained by the server with 10 WebSocket clients watching, vs
`mnist-lab train` headless, interleaved so that both see the same machine.

    python bench/stream_overhead.py                    # default preset, 2 pairs of runs
    python bench/stream_overhead.py --epochs 3 --pairs 3 --clients 10
    python bench/stream_overhead.py --priority 10      # on a shared machine (root)

Both train in a process of their own with one BLAS thread (the server's default,
MNIST_LAB_WORKER_THREADS=1) and the same niceness, on all of MNIST from the same data dir. The
headless time is the trainer's own clock (its `end` event); the server's is the run's
`duration_s` (the same clock, inside the worker). Wall times, from the command or the POST to
the end, are reported too: they add process start and MNIST loading. Prints one JSON object;
the target is a training time at most 10% above headless.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_seconds, raised_priority  # noqa: E402
from tests.app.liveserver import LiveServer  # noqa: E402

THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TERMINAL = {"stopped", "completed", "failed", "interrupted"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def headless(data_dir: Path, epochs: int) -> dict:
    cpu_before = children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", "--preset", "default", "--epochs", str(epochs),
         "--json", "--data-dir", str(data_dir)],
        env={**os.environ, **THREADS}, capture_output=True, text=True, check=True,
    )
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu_before
    end = next(json.loads(line) for line in reversed(result.stdout.splitlines())
               if '"event": "end"' in line or '"event":"end"' in line)
    return {"training_s": end["duration_s"], "wall_s": wall, "test_accuracy": end["test_accuracy"],
            "trainer_cpu_s": cpu}


async def watched(server: LiveServer, epochs: int, clients: int) -> dict:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        server_cpu = cpu_seconds(server.pid)
        clients_cpu = time.process_time()
        started = time.perf_counter()
        run = (await client.post("/api/runs", json={"preset": "default", "epochs": epochs})).json()
        sampler = asyncio.create_task(worker_cpu(server))
        counts = await asyncio.gather(*(watch(server, run["id"]) for _ in range(clients)))
        wall = time.perf_counter() - started
        server_cpu = cpu_seconds(server.pid) - server_cpu
        clients_cpu = time.process_time() - clients_cpu
        trainer_cpu = await sampler
        final = (await client.get(f"/api/runs/{run['id']}")).json()
    steps = final["progress"]["step"]
    assert all(count == steps for count, _ in counts), (counts, steps)  # every step, every client
    return {"training_s": final["duration_s"], "wall_s": wall, "test_accuracy": final["test_accuracy"],
            "status": final["status"], "messages_per_client": statistics.fmean(m for _, m in counts),
            "trainer_cpu_s": trainer_cpu, "server_cpu_s": server_cpu, "clients_cpu_s": clients_cpu}


async def worker_cpu(server: LiveServer) -> float:
    """The training process's CPU time, sampled until it exits (the last ~0.2 s are missed)."""
    last = 0.0
    while True:
        pids = server.worker_pids()
        if pids:
            try:
                last = cpu_seconds(pids[0])
            except (OSError, IndexError):
                pass
        elif last:
            return last
        await asyncio.sleep(0.2)


async def watch(server: LiveServer, run_id: int) -> tuple[int, int]:
    """Read a run's stream to its end: (steps received, messages received)."""
    steps = messages = 0
    async with connect(f"{server.ws_url}/ws/runs/{run_id}", max_size=None) as socket:
        async for text in socket:
            message = json.loads(text)
            messages += 1
            if message["type"] == "snapshot":
                steps += len(message["iterations"])
                status = message["run"]["status"]
            else:
                steps += len(message.get("points", ()))
                status = message.get("status")
            if message["type"] in ("snapshot", "status") and status in TERMINAL:
                return steps, messages
    return steps, messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of `default` (10 = as is)")
    parser.add_argument("--pairs", type=int, default=2, help="headless/watched pairs, interleaved")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--priority", type=int, default=0, metavar="N",
                        help="lower the niceness of this benchmark, the server and their session "
                        "by N (needs root), so that other work on a shared machine disturbs less")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mnist-lab-bench-") as folder, \
            raised_priority(args.priority):
        data_dir = Path(folder) / "data"
        subprocess.run([sys.executable, "-m", "app.cli", "fetch-data", "--quiet", "--data-dir",
                        str(data_dir)], check=True)
        env = {"MNIST_LAB_WORKER_NICE": "0", "MNIST_LAB_WORKER_THREADS": "1"}
        results: dict[str, list[dict]] = {"headless": [], "watched": []}
        with LiveServer(data_dir, env) as server:
            for pair in range(args.pairs):
                order = ("headless", "watched") if pair % 2 == 0 else ("watched", "headless")
                for kind in order:
                    if kind == "headless":
                        outcome = headless(data_dir, args.epochs)
                    else:
                        outcome = asyncio.run(watched(server, args.epochs, args.clients))
                    results[kind].append(outcome)
                    print(kind, json.dumps(outcome), file=sys.stderr)

    def median(kind: str, key: str) -> float:
        return statistics.median(result[key] for result in results[kind])

    overhead = median("watched", "training_s") / median("headless", "training_s") - 1
    cpu_overhead = median("watched", "trainer_cpu_s") / median("headless", "trainer_cpu_s") - 1
    wall_overhead = median("watched", "wall_s") / median("headless", "wall_s") - 1
    print(json.dumps({
        "preset": "default", "epochs": args.epochs, "clients": args.clients, "pairs": args.pairs,
        "headless_training_s": [round(r["training_s"], 2) for r in results["headless"]],
        "watched_training_s": [round(r["training_s"], 2) for r in results["watched"]],
        "headless_wall_s": [round(r["wall_s"], 2) for r in results["headless"]],
        "watched_wall_s": [round(r["wall_s"], 2) for r in results["watched"]],
        "training_overhead_percent": round(100 * overhead, 1),
        "wall_overhead_percent": round(100 * wall_overhead, 1),
        # CPU time of the training process itself (imports and MNIST loading included): what
        # watching costs the training, apart from how the machine shares its cores.
        "headless_trainer_cpu_s": [round(r["trainer_cpu_s"], 2) for r in results["headless"]],
        "watched_trainer_cpu_s": [round(r["trainer_cpu_s"], 2) for r in results["watched"]],
        "trainer_cpu_overhead_percent": round(100 * cpu_overhead, 1),
        "server_cpu_s": [round(r["server_cpu_s"], 2) for r in results["watched"]],
        "watching_clients_cpu_s": [round(r["clients_cpu_s"], 2) for r in results["watched"]],
        "load_average_1min": round(os.getloadavg()[0], 2),
        "messages_per_client": [round(r["messages_per_client"]) for r in results["watched"]],
        "test_accuracy": {"headless": [r["test_accuracy"] for r in results["headless"]],
                          "watched": [r["test_accuracy"] for r in results["watched"]]},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
