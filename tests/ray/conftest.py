"""Fixtures for the Ray executor: one real cluster per test session, started by the first test
that needs it and stopped at the end (also after a failure), and this process as its driver."""

from __future__ import annotations

import os

import pytest

from tests.conftest import missing_requirement
from tests.ray.cluster import LOOPBACK_ONLY, RayCluster

# Before anything imports Ray (it reads these once): see tests/ray/cluster.py.
os.environ.update(LOOPBACK_ONLY)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory, mnist_dir):
    """A two-CPU head on loopback. Its workers share no MNIST with the server: no $MNIST_DIR, and
    a data dir of their own that stays empty, so a worker that read MNIST from disk would fail."""
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        missing_requirement("Ray is not installed; `make test` installs it (pip install '.[ray]')")
    worker_home = tmp_path_factory.mktemp("ray-worker-home")
    env = {"MNIST_LAB_HOME": str(worker_home), "MNIST_DIR": ""}
    cluster = RayCluster(num_cpus=2, env=env)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
    assert not any(worker_home.iterdir()), "a Ray worker wrote to its own data dir"


@pytest.fixture(scope="session")
def ray_driver(ray_cluster):
    """This test process connected to the cluster (executors made now share the connection)."""
    import ray

    ray.init(address=ray_cluster.address, namespace="mnist-lab-tests", logging_level="warning")
    try:
        yield ray_cluster
    finally:
        ray.shutdown()
