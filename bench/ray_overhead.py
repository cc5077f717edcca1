"""What the Ray executor costs: the same run on a server with the local executor and on one with
`--executor ray`, in turns (local, ray, local, ray, ...) so that both see the same machine.

    python bench/ray_overhead.py                          # default preset, 1 epoch, 3 pairs
    python bench/ray_overhead.py --preset best --epochs 2 --pairs 5
    python bench/ray_overhead.py --ray-address HOST:PORT  # an existing cluster (else a local
                                                          # two-CPU head started here, then stopped)

Both servers read all of MNIST from the same data dir and train with one BLAS thread. For each run:
`start_s`, from the POST to the run's first step reported (`running`: a process spawned and MNIST
read, or an actor created and MNIST fetched from the object store); `training_s`, the trainer's
own clock (its `Ended.duration_s`); `wall_s`, from the POST to the run's end as the server saw it;
`server_cpu_s`, the server process's CPU over the run (its pump thread, the Ray driver's threads);
`worker_cpu_s`, the CPU of the process that trained it (sampled while it runs; with a cluster
started here only). Prints one JSON object: every run, the medians, and the ray/local ratio of each
median.

Linux shares the CPU between sessions (autogroups) before it looks at processes, and Ray's workers
run in the session of the `ray start` that started them: so that the local executor's workers get
a session of their own as well, the benchmark runs itself in a new session.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_seconds  # noqa: E402
from tests.app.liveserver import LiveServer  # noqa: E402
from tests.ray.cluster import LOOPBACK_ONLY, RayCluster  # noqa: E402

TERMINAL = {"stopped", "completed", "failed", "interrupted"}
MEASURES = ("start_s", "training_s", "wall_s", "server_cpu_s", "worker_cpu_s")


def one_run(server: LiveServer, config: dict, workers: Callable[[], list[int]] | None) -> dict:
    worker_cpu: dict[int, float] = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        cpu_before = cpu_seconds(server.pid)
        posted = time.perf_counter()
        run = client.post("/api/runs", json=config)
        run.raise_for_status()
        run_id, started = run.json()["id"], None
        while True:
            state = client.get(f"/api/runs/{run_id}").json()
            now = time.perf_counter()
            if started is None and state["status"] != "queued":
                started = now - posted
            if state["status"] in TERMINAL:
                break
            for pid in workers() if workers else ():
                with contextlib.suppress(OSError):
                    worker_cpu[pid] = cpu_seconds(pid)
            time.sleep(0.05)
        wall = now - posted
        cpu = cpu_seconds(server.pid) - cpu_before
    if state["status"] != "completed":
        raise RuntimeError(f"run {run_id} on {server.url} ended {state['status']}: {state['reason']}")
    return {"start_s": started, "training_s": state["duration_s"], "wall_s": wall,
            "server_cpu_s": cpu, "worker_cpu_s": sum(worker_cpu.values()) if workers else None,
            "test_accuracy": state["test_accuracy"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--ray-address", default=None, help="an existing cluster (default: start one)")
    parser.add_argument("--data-dir", default=None, help="where MNIST is (default: the usual one)")
    args = parser.parse_args()
    if os.getsid(0) != os.getpid():
        os.execvp("setsid", ["setsid", "--wait", sys.executable, *sys.argv])
    os.environ.update(LOOPBACK_ONLY)
    env = {"MNIST_LAB_WORKER_THREADS": "1", "MNIST_LAB_WORKER_NICE": "0"}
    if args.data_dir:
        env["MNIST_DIR"] = str(Path(args.data_dir).expanduser() / "mnist")
    else:
        from engine.data import mnist_folder, resolve_data_dir

        env["MNIST_DIR"] = str(mnist_folder(resolve_data_dir(None)))
    config = {"preset": args.preset, "epochs": args.epochs}
    with contextlib.ExitStack() as stack:
        address, actors = args.ray_address, None
        if address is None:
            cluster = RayCluster(num_cpus=2)
            stack.callback(cluster.stop)
            address, actors = cluster.start().address, cluster.actor_processes
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ray-overhead-")))
        servers = {
            "local": stack.enter_context(LiveServer(root / "local", env)),
            "ray": stack.enter_context(LiveServer(root / "ray", env,
                                                  args=("--executor", "ray", "--ray-address", address))),
        }
        runs: dict[str, list[dict]] = {"local": [], "ray": []}
        workers = {"local": servers["local"].worker_pids, "ray": actors}
        for _ in range(args.pairs):
            for name, server in servers.items():
                runs[name].append(one_run(server, config, workers[name]))
                print(name, json.dumps(runs[name][-1]), file=sys.stderr)
    measured = [m for m in MEASURES if all(run[m] is not None for done in runs.values() for run in done)]
    medians = {name: {measure: statistics.median(run[measure] for run in done)
                      for measure in measured} for name, done in runs.items()}
    ratios = {measure: medians["ray"][measure] / medians["local"][measure] for measure in measured}
    print(json.dumps({"preset": args.preset, "epochs": args.epochs, "pairs": args.pairs,
                      "cpus": os.cpu_count(), "runs": runs, "median": medians,
                      "ray_over_local": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
