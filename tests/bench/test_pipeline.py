"""bench/pipeline.py: every variant runs the same training in turns, and the report's arithmetic."""

from __future__ import annotations

import pytest

import bench.pipeline as pipeline_bench
from bench.pipeline import VARIANTS, StepClock, format_report, run_bench, server_worker_threads
from engine.events import EpochEvent, IterationEvent


def test_the_step_clock_counts_training_steps_and_leaves_out_validation(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(pipeline_bench.time, "perf_counter", lambda: now[0])
    clock = StepClock()  # the run starts at 100

    def at(t, event):
        now[0] = t
        clock(event)

    iteration = IterationEvent(epoch=1, step=0, loss=1.0, learning_rate=0.1, samples=128)
    epoch = EpochEvent(epoch=1, train_loss=1, train_accuracy=0, val_loss=1, val_accuracy=0,
                       running_loss=1, running_accuracy=0, duration_s=1, learning_rate=0.1)
    at(101, iteration)
    at(102, iteration)  # epoch 1: 100 -> 102
    at(105, epoch)  # validation took 3 s
    at(106, iteration)  # epoch 2: 105 -> 106.5
    at(106.5, iteration)
    at(110, epoch)
    assert clock.train_seconds == pytest.approx(2 + 1.5)


def test_the_server_runs_its_workers_with_one_blas_thread():
    assert server_worker_threads() == 1


@pytest.mark.mnist
def test_every_variant_trains_in_a_process_of_its_own_and_the_ratios_divide_by_compute(mnist_dir):
    data_dir = mnist_dir.parent if mnist_dir.name == "mnist" else None
    lines = []
    report = run_bench(["default"], epochs=1, rounds=1, variants=list(VARIANTS), data_dir=data_dir,
                       subset=(1000, 200), progress=lines.append)
    assert len(lines) == len(VARIANTS)
    rows = report["default"]
    assert list(rows) == list(VARIANTS)
    compute = rows["compute"]["seconds"]
    assert rows["compute"]["ratio"] == 1.0
    for row in rows.values():
        assert row["seconds"] > 0 and row["cpu_s"] > 0
        # seconds are rounded to the millisecond: so much uncertainty in the quotient
        rounding = 0.0005 / compute * (1 + row["seconds"] / compute) + 0.0005
        assert row["ratio"] == pytest.approx(row["seconds"] / compute, abs=rounding)
    assert rows["process"]["prepare_s"] is None  # timed in the child, not reported back
    table = format_report(report, epochs=1, threads=1)
    assert table[0].startswith("1 epochs per run, 1 BLAS thread(s)")
    assert [line.split()[1] for line in table[2:]] == list(VARIANTS)
