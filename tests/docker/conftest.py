"""The Docker image test's fixtures: a daemon (started here if none runs), a local Debian base image,
the project image built on it, and a running container. Each removes what it made; the
debootstrapped base stays cached as a tarball (tests/docker/debian_base.py).

Run by `make test-docker` (`pytest tests/docker`); the plain `pytest` of `make test` leaves this
folder out (tests/conftest.py), since it needs root and starts a daemon.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.app.liveserver import wait_for
from tests.conftest import missing_requirement
from tests.docker import debian_base
from tests.docker.daemon import Docker, DockerUnavailable, connect

REPO = Path(__file__).resolve().parents[2]
SESSION = f"{os.getpid()}-{secrets.token_hex(3)}"  # names of everything this run creates
LABEL = "mnist-lab-test.session"  # on every image this run creates (see remove_images)
TIMINGS: dict[str, float] = {}  # seconds, reported at the end of the run


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "docker image test timings")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{what:<34} {seconds:7.1f} s")


@pytest.fixture(scope="session")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docker-logs")


@pytest.fixture(scope="session")
def docker(logs: Path) -> Iterator[Docker]:
    """A daemon that answers; one started here is stopped at the end."""
    try:
        cli, daemon = connect(logs / "dockerd.log")
    except DockerUnavailable as reason:
        missing_requirement(f"THE DOCKER IMAGE IS NOT TESTED: {reason}")
    try:
        yield cli
    finally:
        if daemon is not None:
            daemon.stop()


@pytest.fixture(scope="session")
def base_image(docker: Docker, logs: Path) -> Iterator[str]:
    """A Debian image with python3 and its venv module, made here (no registry is needed)."""
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        missing_requirement("THE DOCKER IMAGE IS NOT TESTED: the local base image needs "
                            "`debootstrap` (Debian's package; `make test-docker` installs it) "
                            "and root")
    try:
        recipe = debian_base.Recipe.for_this_machine()
    except (LookupError, OSError) as reason:
        missing_requirement(f"THE DOCKER IMAGE IS NOT TESTED: no Debian mirror to build from: "
                            f"{reason}")
    tarball = debian_base.base_tarball(recipe, debian_base.cache_dir(), logs / "debootstrap.log")
    TIMINGS[f"base tarball ({'debootstrap' if tarball.built else 'cached'})"] = tarball.seconds
    tag = f"mnist-lab-test-base:{tarball.recipe.key}-{SESSION}"
    started = time.monotonic()
    debian_base.import_image(docker, tarball.path, tag, labels={LABEL: SESSION})
    TIMINGS["docker import"] = time.monotonic() - started
    try:
        yield tag
    finally:
        remove_images(docker, f"{LABEL}={SESSION}")


def remove_images(docker: Docker, label: str, rounds: int = 10) -> None:
    """Every image with `label`: the base, and all built on it (an image inherits its parent's
    labels), including the layers a failed build leaves. Children go before parents, so removing
    repeats until none is left."""
    for _ in range(rounds):
        ids = docker.run("images", "--all", "--quiet", "--filter", f"label={label}").stdout.split()
        if not ids:
            return
        docker.run("rmi", "--force", *sorted(set(ids)), check=False)


@pytest.fixture(scope="session")
def image(docker: Docker, base_image: str, logs: Path) -> str:
    """The project image, built from the repository's Dockerfile on `base_image`, with host
    networking for apt, pip and npm (removed with the base image)."""
    tag = f"mnist-lab-test:{SESSION}"
    started = time.monotonic()
    _build(docker, ["-t", tag, "--build-arg", f"BASE_IMAGE={base_image}"], logs / "build.log")
    TIMINGS["docker build"] = time.monotonic() - started
    return tag


def _build(docker: Docker, arguments: list[str], log_path: Path) -> None:
    """`docker build`, its output in `log_path` with the seconds since the start on each line
    (the classic builder prints no times; they show which step a slow build spent them in)."""
    command = [docker.cli, "build", "--network", "host", "--force-rm", *arguments, str(REPO)]
    started = time.monotonic()
    with log_path.open("a") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=docker.env,
            stdin=subprocess.DEVNULL, text=True, errors="replace") as build:
        log.write(f"$ {' '.join(command)}\n")
        for line in build.stdout:
            log.write(f"[{time.monotonic() - started:7.1f}s] {line}")
        status = build.wait()
    if status != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
        pytest.fail(f"`docker build` exited with {status}; the end of {log_path}:\n{tail}")


# --- a running container ----------------------------------------------------------------------
@dataclass
class Container:
    docker: Docker
    name: str
    url: str
    token: str
    volume: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def logs(self) -> str:
        done = self.docker.run("logs", "--tail", "60", self.name, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        self.docker.run("rm", "--force", self.name, check=False)


def start_container(docker: Docker, image: str, volume: str, token: str) -> Container:
    """`docker run` as the README shows it (the token passed from the environment, a named
    volume at /data), publishing port 8000 on a free loopback port; returns once /healthz answers."""
    name = f"mnist-lab-test-{SESSION}-{secrets.token_hex(2)}"
    docker.run("run", "--detach", "--name", name, "-p", "127.0.0.1::8000",
               "-e", "MNIST_LAB_TOKEN", "-v", f"{volume}:/data", image,
               env={"MNIST_LAB_TOKEN": token})
    published = docker.run("port", name, "8000/tcp").stdout.split()[0]  # 127.0.0.1:49153
    container = Container(docker, name, f"http://{published}", token, volume)

    def healthy() -> bool:
        state = docker.run("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true":
            raise AssertionError(f"the container stopped:\n{container.logs()}")
        try:
            return httpx.get(f"{container.url}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 120, 0.5, "the container's /healthz")
    except AssertionError:
        print(container.logs())
        container.remove()
        raise
    return container


@pytest.fixture(scope="session")
def containers(docker: Docker, image: str) -> Iterator[Callable[..., Container]]:
    """Starts containers of `image` (`containers(volume=None, token=None)`; a new volume and a
    random token by default); every container and volume it made is removed at the end."""
    made: list[Container] = []
    volumes: list[str] = []

    def start(volume: str | None = None, token: str | None = None) -> Container:
        if volume is None:
            volume = f"mnist-lab-test-{SESSION}-{len(volumes)}"
            docker.run("volume", "create", volume)
            volumes.append(volume)
        container = start_container(docker, image, volume, token or secrets.token_urlsafe(24))
        made.append(container)
        return container

    try:
        yield start
    finally:
        for container in made:
            container.remove()
        for volume in volumes:
            docker.run("volume", "rm", "--force", volume, check=False)


@pytest.fixture(scope="session")
def server(containers: Callable[..., Container]) -> Container:
    """One container shared by the tests that create no runs."""
    started = time.monotonic()
    container = containers()
    TIMINGS["container start to /healthz"] = time.monotonic() - started
    return container
