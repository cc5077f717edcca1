"""What a run costs, computed from its config: checked against built models and a real training
process's peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.config import TrainConfig
from engine.footprint import estimated_memory_bytes, layer_sizes, parameter_count
from engine.model import build_model
from engine.optimizers import OPTIMIZER_CLASSES, make_optimizer

REPO = Path(__file__).resolve().parents[2]


def config(**values) -> TrainConfig:
    return TrainConfig.from_dict(values)


@pytest.mark.parametrize("values", [
    {"hidden_layers": [256, 128]},
    {"hidden_layers": [64, 64, 64], "batch_norm": True},
    {"hidden_layers": []},
])
def test_parameter_count_matches_the_built_model(values):
    cfg = config(**values)
    model = build_model(cfg, np.random.default_rng(0))
    assert parameter_count(cfg) == sum(parameter.value.size for parameter in model.parameters())


def test_layer_sizes_are_the_built_models():
    cfg = config(hidden_layers=[64, 32])
    model = build_model(cfg, np.random.default_rng(0))
    assert layer_sizes(cfg) == [784, 64, 32, 10]
    assert [dense.shape for dense in model.dense_layers] == [(784, 64), (64, 32), (32, 10)]


@pytest.mark.parametrize("name", sorted(OPTIMIZER_CLASSES))
def test_each_optimizer_keeps_the_state_arrays_it_declares(name):
    model = build_model(config(hidden_layers=[8]), np.random.default_rng(0))
    optimizer = make_optimizer(name, model.parameters())
    per_parameter = {id(p.value) for p in model.parameters()}
    state = [array for value in vars(optimizer).values() if isinstance(value, list)
             for array in value if hasattr(array, "shape") and id(array) not in per_parameter]
    scratch = len(optimizer.scratch)
    assert len(state) - scratch == OPTIMIZER_CLASSES[name].state_arrays * len(model.parameters())


def test_memory_estimate_grows_with_what_costs_memory():
    small = estimated_memory_bytes(config(hidden_layers=[128], batch_size=128, optimizer="sgd"))
    assert estimated_memory_bytes(config(hidden_layers=[128], batch_size=128, optimizer="adam")) > small
    assert estimated_memory_bytes(config(hidden_layers=[128], batch_size=8192, optimizer="sgd")) > small
    assert estimated_memory_bytes(config(hidden_layers=[1024], batch_size=128, optimizer="sgd")) > small
    plain = config(hidden_layers=[128], augmentation={})
    assert not plain.augmentation.enabled
    assert estimated_memory_bytes(config(hidden_layers=[128], augmentation={"elastic_alpha": 34})) > \
        estimated_memory_bytes(plain)


# Peak resident memory of the training process itself: VmHWM belongs to the process's own address
# space. (ru_maxrss would not do: Linux carries it over from the parent at fork, through exec, so
# a child of a pytest process that had grown to 850 MB "peaked" at 850 MB before doing anything.)
MEASURE_PEAK = """
import json, sys
from pathlib import Path
from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.data import hold_out, load_mnist
from engine.inside import LayerWatch
from engine.trainer import Trainer

config = TrainConfig.from_dict(json.loads(sys.argv[1]))
control = TrainingControl()
steps = []
def listener(event):
    if event.event == "iteration":
        steps.append(event.step)
        if len(steps) == 3:
            control.stop()
data = hold_out(load_mnist(Path(sys.argv[2]), fetch=False, test=2000), config.validation_size,
                train=4096)  # as a server's worker: validation held out, a slice trained on
Trainer(config, data, [listener, LayerWatch(1)], control).run()
peak_kb = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(peak_kb) * 1024)
"""


@pytest.mark.mnist
def test_memory_estimate_is_above_a_real_training_process_peak(tmp_path, mnist_dir):
    """Three real training steps (and the evaluation after them) in a fresh process, as a worker
    does them (layer statistics at every step): its peak resident memory stays under the
    estimate the server refuses runs by."""
    values = {"hidden_layers": [1024, 1024], "batch_size": 2048, "optimizer": "adam",
              "augmentation": {"shift": 2, "rotation": 10, "scale": 0.1, "thickness": 0.3}}
    done = subprocess.run([sys.executable, "-c", MEASURE_PEAK, json.dumps(values), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "MNIST_DIR": str(mnist_dir)})
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.strip().splitlines()[-1])
    assert peak < estimated_memory_bytes(config(**values)), (peak, estimated_memory_bytes(config(**values)))


