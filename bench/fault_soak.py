"""Fault soak: a real `mnist-lab serve` whose data dir is a small tmpfs that fills up and frees
again, for minutes, while a long run trains with several WebSocket watchers, clients upload large
pictures to /predict, another spams pause and resume, and short runs are started one after the
other (root only: it mounts the tmpfs).

    sudo .venv/bin/python bench/fault_soak.py                   # 3 minutes, 12 watchers
    sudo .venv/bin/python bench/fault_soak.py --minutes 10 --watchers 20

Every loop is bounded: the load stops after --minutes, the disk is freed, the long run stopped,
and the watchers (a separate process, bench/soak.py's) end when they saw its final status.

Prints one JSON object and exits 1 if a check fails: the server's peak resident memory (VmHWM,
target < 500 MB), every run's stored steps (contiguous from 0 and as many as the run says it
took), every watcher's steps (each stored step once, in order), the record's status of every run
against the API's (read from the database after the server stopped), and the answers of each
kind of client by status code (no 5xx but the documented 507 while the disk is full).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.image_flood import sparse_png  # noqa: E402
from tests.app.liveserver import LiveServer  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

FINAL = {"stopped", "completed", "failed", "interrupted"}
LONG_RUN = {"hidden_layers": [64], "epochs": 1000, "batch_size": 32, "seed": 1}
SHORT_RUN = {"hidden_layers": [16], "epochs": 2, "batch_size": 64, "seed": 2}
STROKE = [0.0] * 300 + [1.0] * 184 + [0.0] * 300


class Clients:
    """The load: each kind of client is a thread that loops until `stop` is set and counts the
    answers it got by status code (or exception name)."""

    def __init__(self, url: str):
        self.url = url
        self.stop = threading.Event()
        self.answers: dict[str, Counter] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, body) -> None:
        counts = self.answers.setdefault(name, Counter())

        def loop() -> None:
            with httpx.Client(base_url=self.url, timeout=60) as client:
                while not self.stop.is_set():
                    try:
                        counts[str(body(client))] += 1
                    except httpx.HTTPError as error:
                        counts[type(error).__name__] += 1
                        self.stop.wait(0.2)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)


def fill(folder: Path, name: str) -> Path:
    """Write zeros until the file system is full."""
    filler = folder / name
    with open(filler, "ab", buffering=0) as out:
        for chunk in (bytes(1 << 20), bytes(4096), bytes(1)):
            with contextlib.suppress(OSError):
                while out.write(chunk):
                    pass
    return filler


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the kernel's high-water mark) of a process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return found["VmRSS"], found["VmHWM"]


def stored_steps(client: httpx.Client, run_id: int) -> list[int]:
    """Every stored step of the run, page after page (GET /metrics, following next_after)."""
    steps, after = [], -1
    while after is not None:
        page = client.get(f"/api/runs/{run_id}/metrics", params={"after": after}).json()
        steps += [point["step"] for point in page["iterations"]]
        after = page["next_after"]
    return steps


def soak(minutes: float, watchers: int, disk_mb: int, train_subset: int, full_s: float,
         free_s: float, uploads: int, picture_side: int) -> dict:
    if os.geteuid() != 0:
        raise SystemExit("the fault soak mounts a tmpfs: run it as root")
    mnist_dir = Path(os.environ.get("MNIST_DIR") or Path.home() / ".local/share/mnist-lab/mnist")
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_TRAIN_SUBSET": str(train_subset),
           "MNIST_LAB_TEST_SUBSET": "1000", "MNIST_LAB_MAX_EPOCHS": "1000",
           "MNIST_LAB_MAX_STEPS_PER_RUN": "10000000", "MNIST_LAB_MAX_RUN_MEMORY_MB": "4096",
           "MNIST_LAB_MAX_CONCURRENT_RUNS": "2"}  # short runs train beside the long one
    seconds = 60 * minutes
    picture = sparse_png(picture_side)
    with tempfile.TemporaryDirectory(prefix="mnist-lab-fault-soak-") as folder:
        data_dir = Path(folder) / "data"
        data_dir.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={disk_mb}m", "tmpfs", str(data_dir)],
                       check=True)
        try:
            return _soak(data_dir, env, seconds, watchers, full_s, free_s, uploads, picture)
        finally:
            subprocess.run(["umount", "-l", str(data_dir)], check=False)


def _soak(data_dir: Path, env: dict[str, str], seconds: float, watchers: int, full_s: float,
          free_s: float, uploads: int, picture: bytes) -> dict:
    server = LiveServer(data_dir, env).start()
    try:
        client = httpx.Client(base_url=server.url, timeout=60)
        long_id = client.post("/api/runs", json=LONG_RUN).json()["id"]
        watching = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("soak.py")), "watch",
             f"{server.ws_url}/ws/runs/{long_id}", "--clients", str(watchers),
             "--seconds", str(seconds + 600)], stdout=subprocess.PIPE, text=True)
        wait_for(lambda: client.get(f"/api/runs/{long_id}").json()["has_model"], 300, 0.5,
                 "the long run's first epoch (a model to predict with)")

        load = Clients(server.url)
        for index in range(uploads):
            load.start(f"upload-{index}", lambda c: c.post(
                "/predict", files={"file": ("big.png", picture, "image/png")}).status_code)
        load.start("predict", lambda c: c.post("/predict", json={"pixels": STROKE}).status_code)

        def pause_resume(c: httpx.Client) -> str:
            paused = c.post(f"/api/runs/{long_id}/pause").status_code
            resumed = c.post(f"/api/runs/{long_id}/resume").status_code
            return f"{paused}/{resumed}"
        load.start("pause/resume", pause_resume)

        short_runs: list[int] = []

        def short_run(c: httpx.Client) -> int:
            answer = c.post("/api/runs", json=SHORT_RUN)
            if answer.status_code == 201:
                short_runs.append(answer.json()["id"])
                with contextlib.suppress(AssertionError):  # one at a time, until the soak ends
                    wait_for(lambda: load.stop.is_set() or c.get(
                        f"/api/runs/{short_runs[-1]}").json()["status"] in FINAL, 300, 0.2,
                        "a short run to end")
            else:
                load.stop.wait(1.0)
            return answer.status_code
        load.start("short runs", short_run)

        rss: list[tuple[float, float]] = []
        held_back = []  # the long run's steps not stored, sampled

        def sample(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                rss.append((round(time.monotonic() - started, 1), peak_rss_mb(server.pid)[0]))
                unstored = client.get(f"/api/runs/{long_id}").json()["unstored"]
                held_back.append(unstored["steps"] if unstored else 0)
                time.sleep(0.5)

        full_windows = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            filler = fill(data_dir, "filler")  # full ...
            full_windows += 1
            sample(full_s)
            filler.unlink()  # ... and free again
            sample(free_s)
        duration = time.monotonic() - started
        load.join()
        stop = client.post(f"/api/runs/{long_id}/stop")
        runs = [long_id, *short_runs]
        caught_up = True
        try:
            wait_for(lambda: all(client.get(f"/api/runs/{run_id}").json()["unstored"] is None
                                 and client.get(f"/api/runs/{run_id}").json()["status"] in FINAL
                                 for run_id in runs), 120, 0.5, "every run to end and be stored")
        except AssertionError:
            caught_up = False
        try:
            output, _ = watching.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            watching.kill()
            output, _ = watching.communicate()
        received = json.loads(output) if output.strip() else []
        now_rss, peak = peak_rss_mb(server.pid)
        answers = {run_id: client.get(f"/api/runs/{run_id}").json() for run_id in runs}
        steps = {run_id: stored_steps(client, run_id) for run_id in runs}
        client.close()
    finally:
        server.stop()
    with contextlib.closing(sqlite3.connect(data_dir / "mnist-lab.sqlite3")) as db:
        recorded = dict(db.execute("SELECT id, status FROM runs").fetchall())
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]

    complete = {run_id: steps[run_id] == list(range(answers[run_id]["progress"]["step"]))
                for run_id in runs}
    long_steps = len(steps[long_id])
    watchers_ok = [r for r in received if r["steps"] == long_steps and r["first"] == 0
                   and r["last"] == long_steps - 1 and not r["duplicates"] and not r["gaps"]
                   and r["final_status"] == answers[long_id]["status"]]
    server_errors = {name: {code: n for code, n in counts.items()
                            if code[0] == "5" and code != "507" or not code[0].isdigit()}
                     for name, counts in load.answers.items()}
    checks = {
        "peak_rss_under_500_mb": peak < 500,
        "every_run_ended_and_stored": caught_up,
        "every_runs_stored_steps_complete": all(complete.values()),
        "record_agrees_with_api": all(recorded.get(run_id) == answers[run_id]["status"]
                                      for run_id in runs),
        "every_watcher_every_step_once": len(watchers_ok) == watchers,
        "no_5xx_but_507": not any(server_errors.values()),
        "database_intact": integrity == "ok",
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "minutes": round(duration / 60, 2),
        "cpus": os.cpu_count(),
        "disk_full_windows": full_windows,
        "server_rss_mb": {"start": rss[0][1] if rss else None, "end": now_rss, "peak_vmhwm": peak,
                          "max_sampled": max((m for _, m in rss), default=None)},
        "long_run": {"status": answers[long_id]["status"], "reason": answers[long_id]["reason"],
                     "steps_stored": long_steps, "most_steps_held_back": max(held_back, default=0),
                     "stop_answer": stop.status_code},
        "short_runs": {"started": len(short_runs),
                       "statuses": dict(Counter(answers[r]["status"] for r in short_runs)),
                       "failed_because": dict(Counter((answers[r]["reason"] or "")[-60:]
                                                      for r in short_runs
                                                      if answers[r]["status"] == "failed"))},
        "watchers": {"count": watchers, "with_every_step_once": len(watchers_ok),
                     "resent_snapshots": sum(r["snapshots"] - 1 for r in received),
                     "errors": [r["error"] for r in received if r["error"]]},
        "answers": {name: dict(counts) for name, counts in load.answers.items()},
        "incomplete_runs": [run_id for run_id, ok in complete.items() if not ok],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--watchers", type=int, default=12)
    parser.add_argument("--disk-mb", type=int, default=64, help="size of the tmpfs data dir")
    parser.add_argument("--full-s", type=float, default=10.0, help="seconds the disk stays full")
    parser.add_argument("--free-s", type=float, default=15.0, help="seconds it stays free")
    parser.add_argument("--uploads", type=int, default=4, help="clients uploading pictures")
    parser.add_argument("--picture-side", type=int, default=2048)
    parser.add_argument("--train-subset", type=int, default=10_000)
    args = parser.parse_args()
    result = soak(args.minutes, args.watchers, args.disk_mb, args.train_subset, args.full_s,
                  args.free_s, args.uploads, args.picture_side)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
