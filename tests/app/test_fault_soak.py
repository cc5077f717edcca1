"""The fault soak (bench/fault_soak.py), short: a real server on a tmpfs that fills and frees
twice while a watched run trains, pictures are uploaded, pause and resume are spammed and short
runs are started; its checks must all hold (peak memory, every run's stored steps, every
watcher's steps, the record against the API, no 5xx but 507)."""

from __future__ import annotations

import os

import pytest

from bench.fault_soak import soak

pytestmark = pytest.mark.mnist


def test_a_short_fault_soak_passes_every_check(mnist_dir, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("the fault soak mounts a tmpfs, which needs root")
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    result = soak(minutes=0.4, watchers=4, disk_mb=48, train_subset=5000, full_s=6, free_s=6,
                  uploads=2, picture_side=1024)
    assert result["checks"] == dict.fromkeys(result["checks"], True), result
    assert result["disk_full_windows"] >= 2
    assert result["long_run"]["most_steps_held_back"] > 0, result  # the disk did refuse steps
    assert result["long_run"]["steps_stored"] > 0
