"""A real Ray cluster for the tests alone: `ray start --head --num-cpus 2` in a temp dir, every
port chosen free, every address on loopback; stopped, also when a test failed.

Stopping ends exactly this cluster's processes (its process group, and the workers its raylet
started, which Ray puts in groups of their own): SIGTERM, as `ray stop` sends, then SIGKILL for
what is left. `ray stop` itself is not used: it ends every Ray process on the machine, a
developer's own cluster included.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.app.liveserver import free_port

# Ray's switch for a cluster of one machine: it then keeps every address on 127.0.0.1 instead of
# the machine's network address (tests talk to nothing else). Read when Ray is imported, so it is
# set before that, in this process and the cluster's.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
STOP_GRACE_S = 3.0


class RayCluster:
    def __init__(self, num_cpus: int = 2, env: dict[str, str] | None = None):
        self.num_cpus = num_cpus
        # Short: Ray's socket paths live under it and a Unix socket path has at most 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="mlray-", dir="/tmp"))
        self.port = free_port()
        self.env = {**os.environ, **LOOPBACK_ONLY, **(env or {})}
        self.group: int | None = None
        self.log = self.temp_dir / "ray-start.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RayCluster:
        ray = Path(sys.executable).with_name("ray")
        command = [
            str(ray), "start", "--head", "--num-cpus", str(self.num_cpus),
            "--temp-dir", str(self.temp_dir), "--port", str(self.port),
            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
            "--min-worker-port", "0", "--max-worker-port", "0",  # workers: ports the OS picks
            "--include-dashboard=false", "--disable-usage-stats",
            "--object-store-memory", str(300 * 2**20),
        ]
        with open(self.log, "wb") as log:
            starter = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.group = starter.pid  # its processes stay in this group after `ray start` returns
        try:
            code = starter.wait(120)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            output = self.log.read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"`ray start --head` failed ({code}):\n{output}")
        return self

    def processes(self) -> list[int]:
        """This cluster's processes: its group, and every descendant of them (Ray's workers)."""
        if self.group is None:
            return []
        parents: dict[int, int] = {}
        groups: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] == "Z":  # exited, waiting to be reaped
                continue
            parents[int(entry.name)], groups[int(entry.name)] = int(fields[1]), int(fields[2])
        ours = {pid for pid, group in groups.items() if group == self.group}
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in ours} - ours
            ours |= more
            grew = bool(more)
        return sorted(ours)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + STOP_GRACE_S
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def actor_processes(self, name: str = "RunActor", forks: bool = False) -> list[int]:
        """Processes of this cluster that are actors of the class `name`, by Ray's process title
        (`ray::RunActor`, `ray::RunActor.train` while it trains); not the processes they forked
        (a trainer's batch preparation), which carry the same title, unless `forks`."""
        found: dict[int, int] = {}
        for pid in self.processes():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().strip()
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if title == f"ray::{name}" or title.startswith(f"ray::{name}."):
                found[pid] = parent
        return sorted(pid for pid, parent in found.items() if forks or parent not in found)
