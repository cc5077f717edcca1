"""The benchmark's accounting (which matmuls, how many FLOPs) and its report, on a tiny data set."""

from __future__ import annotations

import pytest

from bench.speed import BATCH_SIZE, backprop_matmuls, bench_config, format_report, run_bench
from tests.engine.synthetic import synthetic_digits


def test_backprop_needs_forward_weight_gradient_and_input_gradient_except_first_layer():
    products = backprop_matmuls((784, 256, 64, 10), batch=128)
    assert [p.name for p in products] == [
        "forward 784x256", "dW 784x256",
        "forward 256x64", "dW 256x64", "dx 256x64",
        "forward 64x10", "dW 64x10", "dx 64x10",
    ]
    per_weight = 2 * 128  # each product costs 2 * batch FLOPs per weight
    weights = 784 * 256 + 256 * 64 + 64 * 10
    input_gradients = 256 * 64 + 64 * 10
    assert sum(p.flops for p in products) == per_weight * (2 * weights + input_gradients)


def test_bench_uses_the_default_architecture_at_batch_128_without_augmentation():
    config = bench_config()
    assert config.batch_size == BATCH_SIZE == 128
    assert not config.augmentation.enabled
    assert config.hidden_layers == bench_config("default").hidden_layers


def test_run_bench_reports_medians_and_ratios():
    # PyTorch is an optional benchmark extra whose first optimiser step alone imports for seconds:
    # `mnist-lab bench` exercises it; the suite checks the engine side and the arithmetic.
    with_torch = False
    lines = []
    result = run_bench(synthetic_digits(n_train=3000, n_test=100), epochs=2, with_torch=with_torch,
                       progress=lines.append)
    lines = [line for line in lines if not line.startswith("warning: the machine is busy")]
    assert len(lines) == 3  # warm-up + 2 timed epochs
    assert lines[0].startswith("epoch warm-up: engine ") and lines[2].startswith("epoch 2/2: engine ")
    assert len(result["epoch_seconds_each"]) == len(result["blas_limit_seconds_each"]) == 2
    assert result["epoch_seconds"] > 0 and result["blas_limit_seconds"] > 0
    assert result["ratio_to_limit"] == pytest.approx(
        result["epoch_seconds"] / result["blas_limit_seconds"], rel=0.01)
    assert ("speedup_vs_torch" in result) == with_torch
    # default is a ReLU network trained with momentum: the flat NumPy loop is timed alongside
    assert len(result["numpy_floor_seconds_each"]) == 2
    assert result["numpy_floor_ratio_to_limit"] == pytest.approx(
        result["numpy_floor_seconds"] / result["blas_limit_seconds"], rel=0.01)
    assert result["engine_vs_numpy_floor"] == pytest.approx(
        result["epoch_seconds"] / result["numpy_floor_seconds"], rel=0.01)
    report = "\n".join(format_report(result))
    assert "ratio_to_limit" in report and "epoch_seconds" in report
    assert "numpy_floor_seconds" in report and "engine_vs_numpy_floor" in report
    assert result["torch_status"] == "skipped (--no-torch)" and "--no-torch" in report
    without_floor = {k: v for k, v in result.items() if "floor" not in k}
    assert "without dropout or batch norm" in "\n".join(format_report(without_floor))
