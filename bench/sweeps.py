"""Sweeps, measured: the local pool against trials one after another, and what pruning saves.

    python bench/sweeps.py pool                 # a 12-trial sweep on a real server: pool vs one at a time
    python bench/sweeps.py pool --pool 4 --repeats 3
    python bench/sweeps.py pool --preset default   # augmented trials: both cores of a run busy
    python bench/sweeps.py pruning              # the same sweep with and without each pruner

`pool` starts a real `mnist-lab serve` per sweep (its own data dir) and trains the same 12 trials
(random search, fixed seed, no pruner: the trials do not depend on the results) twice: once with
--max-concurrent-runs 1 and one trial at a time, once with the pool (--pool, default 2) and as many
trials at once. The two alternate, `--repeats` times each, so that whatever else the machine does
falls on both; it reports each sweep's wall time (from POST /api/sweeps to its end), the medians
and their ratio, and what the server would choose for this machine on its own.

`pruning` runs `mnist-lab sweep --json` (trials in one process, one after another) with the same
sampler and seed, without a pruner and with each pruner, for random search and TPE, and reports
the epochs trained, the epochs pruning saved, the wall time and the best metric. Epoch counts are
exact and repeatable; times are as noisy as the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.pool import default_concurrent_runs, usable_cores  # noqa: E402
from tests.app.liveserver import LiveServer  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"learning_rate": {"min": 0.01, "max": 0.3, "log": True},
         "hidden_layers": {"values": [[64], [128], [256]]},
         "batch_size": {"values": [64, 128, 256]}}
CLI_SPACE = ["--space", "learning_rate=log:0.01:0.3", "--space", "hidden_layers=[64];[128];[256]",
             "--space", "batch_size=64;128;256"]


def mnist_env() -> dict[str, str]:
    if os.environ.get("MNIST_DIR"):
        return {"MNIST_DIR": os.environ["MNIST_DIR"]}
    from engine.data import resolve_data_dir

    return {"MNIST_DIR": str(resolve_data_dir(None) / "mnist")}


# --- the pool ---------------------------------------------------------------------------------------
def timed_sweep(pool: int, args: argparse.Namespace) -> dict:
    """One sweep on a fresh server whose pool holds `pool` runs; its wall time and trials."""
    env = {**mnist_env(), "MNIST_LAB_MAX_CONCURRENT_RUNS": str(pool)}
    if args.train_subset:
        env["MNIST_LAB_TRAIN_SUBSET"] = str(args.train_subset)
    if args.test_subset:
        env["MNIST_LAB_TEST_SUBSET"] = str(args.test_subset)
    with tempfile.TemporaryDirectory(prefix="mnist-lab-bench-sweeps-") as folder, \
            LiveServer(Path(folder) / "data", env) as server, \
            httpx.Client(base_url=server.url, timeout=120) as client:
        started = time.perf_counter()
        answer = client.post("/api/sweeps", json={
            "name": f"pool {pool}", "method": "random", "seed": args.seed, "trials": args.trials,
            "max_concurrent": pool, "space": SPACE,
            "base": {"preset": args.preset, "epochs": args.epochs, "lr_schedule": "constant"}})
        answer.raise_for_status()
        sweep_id = answer.json()["id"]
        sweep = wait_for(lambda: (s := client.get(f"/api/sweeps/{sweep_id}").json())["status"]
                         != "running" and s, 24 * 3600, 0.5, "the sweep")
        wall = time.perf_counter() - started
    assert sweep["status"] == "completed", sweep
    return {"pool": pool, "wall_s": round(wall, 2),
            "trials": [(t["params"]["learning_rate"], t["params"]["hidden_layers"],
                        t["params"]["batch_size"]) for t in sweep["trials"]],
            "best": sweep["best_trial"]["value"]}


def bench_pool(args: argparse.Namespace) -> dict:
    times: dict[str, list[float]] = {"one_at_a_time": [], "pool": []}
    trials = None
    for repeat in range(args.repeats):
        order = [("one_at_a_time", 1), ("pool", args.pool)]
        if repeat % 2:
            order.reverse()
        for name, pool in order:
            result = timed_sweep(pool, args)
            print(f"repeat {repeat + 1}/{args.repeats}: {name:13} (pool {pool}) "
                  f"{result['wall_s']:7.1f} s, best {result['best']:.4f}", file=sys.stderr, flush=True)
            if trials is None:
                trials = sorted(result["trials"], key=str)
            assert sorted(result["trials"], key=str) == trials, "the two sweeps trained other trials"
            times[name].append(result["wall_s"])
    sequential, pooled = statistics.median(times["one_at_a_time"]), statistics.median(times["pool"])
    return {"bench": "pool", "preset": args.preset, "trials": args.trials, "epochs": args.epochs,
            "pool": args.pool, "train_subset": args.train_subset,
            "cores": usable_cores(), "server_default_pool": default_concurrent_runs(1),
            "wall_s": times, "median_s": {"one_at_a_time": sequential, "pool": pooled},
            "speedup": round(sequential / pooled, 2), "load_average_1min": round(os.getloadavg()[0], 2)}


# --- pruning ------------------------------------------------------------------------------------------
def cli_sweep(method: str, pruner: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "app.cli", "sweep", *CLI_SPACE, "--method", method,
               "--pruner", pruner, "--trials", str(args.trials), "--seed", str(args.seed),
               "--preset", "notebook", "--set", f"epochs={args.epochs}", "--set", "lr_schedule=constant",
               "--json"]
    if args.train_subset:
        command += ["--train-subset", str(args.train_subset)]
    if args.test_subset:
        command += ["--test-subset", str(args.test_subset)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **mnist_env()}, capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - started
    summary = json.loads(done.stdout.splitlines()[-1])
    return {"method": method, "pruner": pruner, "wall_s": round(wall, 1),
            "epochs_trained": summary["epochs_trained"], "epochs_pruned": summary["epochs_pruned"],
            "best": summary["best_trial"]["value"] if summary["best_trial"] else None,
            "command": " ".join(["mnist-lab", *command[3:]])}


def bench_pruning(args: argparse.Namespace) -> dict:
    rows = []
    for method in ("random", "tpe"):
        for pruner in ("none", "median", "asha"):
            row = cli_sweep(method, pruner, args)
            planned = args.trials * args.epochs
            row["saved"] = round(1 - row["epochs_trained"] / planned, 3)
            print(f"{method:6} {pruner:6} {row['epochs_trained']:3}/{planned} epochs "
                  f"({100 * row['saved']:.0f}% saved), {row['wall_s']:6.1f} s, best {row['best']:.4f}",
                  file=sys.stderr, flush=True)
            rows.append(row)
    return {"bench": "pruning", "trials": args.trials, "epochs": args.epochs, "seed": args.seed,
            "train_subset": args.train_subset, "test_subset": args.test_subset, "sweeps": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("pool", "pruning"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=None,
                        help="per trial (default: 2 for pool, 4 for pruning)")
    parser.add_argument("--pool", type=int, default=2, help="runs at once in the pooled sweep")
    parser.add_argument("--repeats", type=int, default=2, help="sweeps of each kind, alternating")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="notebook",
                        help="the trials' base (pool; default notebook: no augmentation; `default` "
                        "distorts every batch, which keeps each run's preparing process busy)")
    parser.add_argument("--train-subset", type=int, default=None, metavar="N",
                        help="train on the first N digits (default: all 60,000 for pool, 20,000 for "
                        "pruning)")
    parser.add_argument("--test-subset", type=int, default=None, metavar="N",
                        help="validate on the first N test digits (default: all; 5,000 for pruning)")
    args = parser.parse_args()
    if args.what == "pruning":
        args.epochs = args.epochs or 4
        args.train_subset = args.train_subset or 20_000
        args.test_subset = args.test_subset or 5_000
        result = bench_pruning(args)
    else:
        args.epochs = args.epochs or 2
        result = bench_pool(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
