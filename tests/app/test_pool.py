"""The local process pool's size: chosen from the cores and each run's threads (app/pool.py)."""

from __future__ import annotations

import os

import pytest

from app import pool
from app.settings import Settings


@pytest.mark.parametrize(("cores", "threads", "expected"), [
    (1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 1, 2), (16, 1, 8), (16, 3, 4),
    (16, 0, 1),  # the BLAS library's default: a thread per core, so one run fills the machine
])
def test_the_pool_holds_as_many_runs_as_the_cores_fit(cores, threads, expected):
    assert pool.default_concurrent_runs(threads, cores) == expected


def test_usable_cores_follow_the_affinity_and_a_cgroup_quota(tmp_path, monkeypatch):
    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(pool, "CGROUP_CPU_MAX", tmp_path / "missing")
    assert pool.usable_cores() == affinity
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(pool, "CGROUP_CPU_MAX", quota)
    quota.write_text("max 100000\n")
    assert pool.usable_cores() == affinity
    quota.write_text("50000 100000\n")  # half a core: still one
    assert pool.usable_cores() == 1
    quota.write_text(f"{100000 * (affinity + 4)} 100000\n")  # a quota above the affinity
    assert pool.usable_cores() == affinity


def test_settings_choose_the_pool_size_unless_told(tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "usable_cores", lambda: 8)
    assert Settings(data_dir=tmp_path).max_concurrent_runs == 4
    assert Settings(data_dir=tmp_path, worker_threads=3).max_concurrent_runs == 2
    assert Settings(data_dir=tmp_path, max_concurrent_runs=1).max_concurrent_runs == 1
    environ = {"MNIST_LAB_MAX_CONCURRENT_RUNS": "3"}
    assert Settings.from_env(environ, data_dir=tmp_path).max_concurrent_runs == 3
