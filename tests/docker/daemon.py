"""The Docker daemon for the image test: the `docker` CLI, and a `dockerd` started here (as root,
overlay2 storage) when none is running, stopped again by whoever started it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.app.liveserver import wait_for


class DockerUnavailable(Exception):
    """No daemon can be reached or started here; the message says why."""


@dataclass
class Docker:
    """The `docker` CLI. The classic builder (DOCKER_BUILDKIT=0) runs `docker build` the same way
    with Debian's docker.io and with a newer CLI that has no buildx plugin."""

    cli: str
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, "DOCKER_BUILDKIT": "0"})

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})
        if check and done.returncode != 0:
            raise AssertionError(f"`docker {' '.join(args)}` exited with {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done

    def answers(self) -> bool:
        try:
            return self.run("info", "--format", "{{.ServerVersion}}", timeout=30,
                            check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False


class Daemon:
    """A `dockerd` this process started, with its log; `stop` ends it (and its containerd)."""

    def __init__(self, docker: Docker, log_path: Path):
        self.docker = docker
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise DockerUnavailable("`dockerd` is not installed (`make test-docker` installs "
                                    "Debian's docker.io)")
        if os.geteuid() != 0:
            raise DockerUnavailable("no Docker daemon answers and starting `dockerd` needs root")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [dockerd, "--storage-driver", "overlay2"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

        def up() -> bool:
            if self.process.poll() is not None:
                raise DockerUnavailable(
                    f"`dockerd` exited with status {self.process.returncode}:\n{self.log_tail()}")
            return self.docker.answers()

        try:
            wait_for(up, timeout, 0.5, "dockerd to answer `docker info`")
        except AssertionError as error:
            self.stop()
            raise DockerUnavailable(f"{error}:\n{self.log_tail()}") from None

    def stop(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # dockerd stops its containers and containerd
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def connect(log_path: Path) -> tuple[Docker, Daemon | None]:
    """The CLI and, if no daemon was running, the one started here (the caller stops it)."""
    cli = shutil.which("docker")
    if cli is None:
        raise DockerUnavailable("the `docker` CLI is not installed (`make test-docker` installs "
                                "Debian's docker.io)")
    docker = Docker(cli)
    if docker.answers():
        return docker, None
    daemon = Daemon(docker, log_path)
    daemon.start()
    return docker, daemon

