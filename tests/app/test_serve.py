"""`mnist-lab serve` as a newcomer meets it: the address it announces is the one it listens on,
announced only once it listens; a busy or impossible port gets a hint; MNIST_LAB_HOST and
MNIST_LAB_PORT count unless a flag is given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest

from tests.app.liveserver import REPO, LiveServer, free_port, wait_for

pytestmark = pytest.mark.mnist


def serve(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """A `serve` that is expected to exit by itself."""
    return subprocess.run([sys.executable, "-m", "app.cli", "serve", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_that_does_not_exist_is_refused_with_the_range(tmp_path, mnist_dir, port):
    done = serve(["--port", port, "--data-dir", str(tmp_path)], {"MNIST_DIR": str(mnist_dir)})
    assert done.returncode == 2
    assert "--port" in done.stderr and ("65535" in done.stderr or "not a port" in done.stderr)
    assert "MNIST Lab on" not in done.stderr


def test_a_port_from_the_environment_is_checked_too(tmp_path, mnist_dir):
    done = serve(["--data-dir", str(tmp_path)], {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_PORT": "99999"})
    assert done.returncode == 2 and "65535" in done.stderr


def test_a_busy_port_is_an_error_with_a_hint_and_no_banner(tmp_path, mnist_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(["--port", str(port), "--data-dir", str(tmp_path)], {"MNIST_DIR": str(mnist_dir)})
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "--port" in done.stderr and "MNIST_LAB_PORT" in done.stderr
    assert "MNIST Lab on" not in done.stderr
    assert "Traceback" not in done.stderr


def test_the_environment_chooses_host_and_port_unless_a_flag_does(tmp_path, mnist_dir):
    port = free_port()
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_PORT": str(port), "MNIST_LAB_HOST": "127.0.0.1"}
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--data-dir", str(tmp_path)],
                               cwd=REPO, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stderr.readline()
        assert banner.startswith(f"MNIST Lab on http://127.0.0.1:{port} "), banner
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(30)
    # A flag beats the environment.
    flagged = LiveServer(tmp_path / "flagged", env={"MNIST_DIR": str(mnist_dir),
                                                    "MNIST_LAB_PORT": str(port)})
    with flagged:
        assert flagged.port != port
        assert httpx.get(f"{flagged.url}/healthz", timeout=10).status_code == 200


def test_port_0_announces_the_port_it_got(tmp_path, mnist_dir):
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", "0", "--data-dir",
                                str(tmp_path)], cwd=REPO, env={**os.environ, "MNIST_DIR": str(mnist_dir)},
                               stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stderr.readline()
        assert banner.startswith("MNIST Lab on http://127.0.0.1:"), banner
        url = banner.split()[3]
        assert not url.endswith(":0")
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=10).status_code == 200, 30, 0.2,
                 "the announced address to answer")
    finally:
        process.terminate()
        process.wait(30)
