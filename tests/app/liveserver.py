"""A real `mnist-lab serve` in a subprocess on a free loopback port, for the reliability and
security tests (and bench/soak.py): start, wait until healthy, kill it any way a test needs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def strict_json(text: str | bytes):
    """json.loads that refuses NaN and infinities (they are not JSON)."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not valid JSON")
    return json.loads(text, parse_constant=refuse)


class LiveServer:
    """`python -m app.cli serve` with its own data dir and environment."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, host: str = "127.0.0.1",
                 port: int | None = None, args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.args = args  # more `serve` options
        self.host = host
        self.port = port or free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self) -> subprocess.Popen:
        """Start the process without waiting for it (for start-up refusals)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", self.host, "--port",
             str(self.port), "--data-dir", str(self.data_dir), *self.args],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self.process

    def start(self, timeout: float = 60.0) -> LiveServer:
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer /healthz within {timeout}s:\n{self.log()}")

    def log(self, last: int | None = 5000) -> str:
        """The server's output (its last `last` characters; None: all of it)."""
        try:
            text = self.log_path.read_text(errors="replace")
            return text if last is None else text[-last:]
        except OSError:
            return ""

    def children(self) -> list[tuple[int, str]]:
        """(pid, command line) of the server's child processes, from /proc."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                if parent == self.pid:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found.append((int(entry.name), cmdline))
            except (OSError, ValueError, IndexError):
                continue
        return found

    def worker_pids(self) -> list[int]:
        """The training processes (multiprocessing spawn children, not its resource tracker)."""
        return [pid for pid, cmdline in self.children() if "spawn_main" in cmdline]

    def rss_bytes(self) -> int:
        """Resident memory of the server process itself."""
        return self._status_kb("VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        """The server process's resident high-water mark so far (VmHWM)."""
        return self._status_kb("VmHWM") * 1024

    def _status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {key} in /proc/{self.pid}/status")

    def train_tiny_model(self, timeout: float = 180.0) -> int:
        """Train a model in seconds (one epoch of [16] units) so /predict has one; its run id."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            answer = client.post("/api/runs", json={"hidden_layers": [16], "epochs": 1,
                                                    "batch_size": 100, "seed": 0})
            answer.raise_for_status()
            run_id = answer.json()["id"]
            wait_for_status(client, run_id, {"completed"}, timeout)
        return run_id

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for_status(client: httpx.Client, run_id: int, statuses: set[str], timeout: float) -> dict:
    def done():
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] in statuses else None
    return wait_for(done, timeout, 0.2, f"run {run_id} to become {sorted(statuses)}")
