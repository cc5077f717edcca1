"""`mnist-lab train`, `evaluate`, `presets` and `bench` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.cli import main  # the console script: the engine's commands plus serve and bench
from engine.config import TrainConfig
from engine.model import load_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(mnist_dir, tmp_path_factory) -> Path:
    """A data dir whose mnist/ folder is the verified MNIST."""
    home = tmp_path_factory.mktemp("home")
    (home / "mnist").symlink_to(mnist_dir.resolve(), target_is_directory=True)
    return home


def test_presets_lists_notebook_and_default(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("notebook") or "notebook " in out
    assert "default " in out
    assert main(["presets", "--json"]) == 0
    names = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert {"notebook", "default"} <= set(names)


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--lr", "5000"], "--lr must be between"),
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--dropout", "0.99"], "--dropout must be between"),
    (["train", "--hidden", "128", "0"], "--hidden: each size must be between 1 and 65536, got 0"),
    (["train", "--batch-size", "0"], "--batch-size must be between"),
    (["train", "--rotation", "400"], "--rotation must be between"),
    (["train", "--activation", "gelu"], "invalid choice: 'gelu'"),
    (["train", "--epochs", "ten"], "invalid int value: 'ten'"),
    (["train", "--save", "/"], "is a directory"),
    (["bench", "--epochs", "0"], "--epochs must be between 1 and 100"),
])
def test_bad_options_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_config_flags_set_every_config_field():
    """Each option config_flags() names (the dashboard's "Copy CLI command" uses them) sets its
    field: a config unlike the preset in every field comes back whole from its command line."""
    import dataclasses

    from engine.cli import build_parser, config_flags, train_config_from_args
    from engine.config import TrainConfig

    flags = config_flags()
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset", "augmentation"}
    augment = {f"augmentation.{f.name}" for f in dataclasses.fields(TrainConfig().augmentation)}
    assert set(flags) == fields | augment
    wanted = {"hidden_layers": [48, 24], "activation": "tanh", "init": "glorot",
              "batch_norm": True, "dropout": 0.15, "optimizer": "nesterov", "learning_rate": 0.03,
              "momentum": 0.8, "weight_decay": 0.0002, "lr_schedule": "step", "lr_decay": 0.7,
              "warmup_epochs": 0.5, "batch_size": 96, "epochs": 3, "seed": 11,
              "validation_size": 2000, "stats_every": 25,
              "augmentation": {"shift": 1.5, "rotation": 7.0, "scale": 0.05, "shear": 4.0,
                               "elastic_alpha": 20.0, "elastic_sigma": 5.0, "thickness": 0.2}}
    argv = ["train", "--preset", "notebook"]
    for field, flag in flags.items():
        group, _, name = field.partition(".")
        value = wanted[group][name] if name else wanted[field]
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{flag[2:]}")
        else:
            argv += [flag, *map(str, value if isinstance(value, list) else [value])]
    config = train_config_from_args(build_parser().parse_args(argv)).to_dict()
    assert {key: config[key] for key in wanted} == wanted


@pytest.mark.mnist
def test_train_json_then_evaluate(data_dir, tmp_path, capsys):
    model_path = tmp_path / "model.npz"
    argv = ["train", "--preset", "notebook", "--init", "auto", "--hidden", "16", "--epochs", "2",
            "--batch-size", "1000", "--optimizer", "adam", "--schedule", "constant",
            "--lr", "0.01", "--seed", "4", "--save", str(model_path), "--data-dir", str(data_dir), "--json"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]  # stdout holds JSON lines and nothing else
    # 5,000 digits held out for validation: 55,000 trained on, the test set measured at the end.
    assert events[0] == {"event": "start", "epochs": 2, "steps_per_epoch": 55,
                         "train_samples": 55000, "validation_samples": 5000, "test_samples": 10000}
    assert all(e["event"] in ("iteration", "epoch", "layers", "end") for e in events[1:])
    assert all(isinstance(e["epoch"], int) for e in events[1:])
    assert [e["event"] for e in events].count("iteration") == 2 * 55
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    # Layer statistics on the default cadence (from step 0) and after each epoch (steps 54, 109).
    every = TrainConfig().stats_every
    ends = {54, 109}
    expected = sorted({(step, False) for step in range(0, 110, every) if step not in ends}
                      | {(step, True) for step in ends})
    assert [(e["step"], e["epoch_end"]) for e in events if e["event"] == "layers"] == expected
    end = events[-1]
    assert end["event"] == "end" and end["status"] == "completed"
    assert end["test_accuracy"] > 0.85
    kept = max(epochs, key=lambda e: (e["val_accuracy"], -e["val_loss"]))
    assert end["model_epoch"] == kept["epoch"]  # selected on validation, tested once
    assert end["test_loss"] not in [e["val_loss"] for e in epochs]

    model, metadata = load_model(model_path)
    assert model.config.hidden_layers == (16,) and model.config.seed == 4
    assert metadata["test_accuracy"] == end["test_accuracy"]
    assert metadata["model_epoch"] == end["model_epoch"]

    assert main(["evaluate", str(model_path), "--data-dir", str(data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(end["test_accuracy"])
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == report["samples"] == 10000
    assert np.trace(matrix) / 10000 == pytest.approx(report["accuracy"])
    assert len(report["per_class_accuracy"]) == 10

    assert main(["evaluate", str(model_path), "--data-dir", str(data_dir)]) == 0
    text = capsys.readouterr().out
    assert f"accuracy  {100 * report['accuracy']:.2f}%" in text
    assert "confusion matrix (rows: true digit, columns: predicted digit)" in text


@pytest.mark.mnist
def test_train_prints_one_line_per_epoch(data_dir, capsys):
    argv = ["train", "--preset", "notebook", "--hidden", "8", "--epochs", "2", "--batch-size", "2000",
            "--data-dir", str(data_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert epoch_lines[1].startswith("epoch 2/2  training_loss ")
    assert "validation_acc 0." in epoch_lines[1]
    assert "test_accuracy 0." in out


def test_evaluate_rejects_a_file_that_is_not_a_model(tmp_path, capsys):
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("hello")
    assert main(["evaluate", str(bogus)]) == 1
    err = capsys.readouterr().err
    assert "cannot load" in err and "a model is a .npz archive" in err
    assert "pickle" not in err  # not NumPy's advice about allow_pickle


@pytest.mark.mnist
def test_train_json_into_a_reader_that_stops_early_ends_quietly(data_dir):
    """`mnist-lab train --json | head -3`: no BrokenPipeError traceback, training stops."""
    train = subprocess.Popen([sys.executable, "-m", "app.cli", "train", "--hidden", "8", "--json",
                              "--data-dir", str(data_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-3"], stdin=train.stdout, capture_output=True, timeout=300)
    train.stdout.close()  # only head reads it now: when head exits, the pipe is gone
    _, err = train.communicate(timeout=300)
    assert len(head.stdout.splitlines()) == 3
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert train.returncode == 128 + signal.SIGPIPE


@pytest.mark.mnist
def test_ctrl_c_stops_between_iterations_and_still_saves(data_dir, tmp_path):
    model_path = tmp_path / "interrupted.npz"
    command = [sys.executable, "-m", "engine", "train", "--hidden", "16", "--epochs", "50", "--json",
               "--save", str(model_path), "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=ROOT)
    try:
        assert json.loads(process.stdout.readline())["event"] == "start"
        seen = []
        while seen.count("iteration") < 5:  # wait until training is under way
            seen.append(json.loads(process.stdout.readline())["event"])
        assert set(seen) <= {"iteration", "layers"}  # step 0's layer statistics among them
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    events = [json.loads(line) for line in out.splitlines()]
    assert process.returncode == 130, err
    assert events[-1]["event"] == "end" and events[-1]["status"] == "stopped"
    assert "stopping after this iteration" in err
    model, metadata = load_model(model_path)
    assert metadata["status"] == "stopped"
    assert model.predict(np.zeros((1, 784), dtype=np.float32)).shape == (1,)


WITHOUT_BENCH = """
import importlib.abc, sys

class NoBench(importlib.abc.MetaPathFinder):  # an installation that holds only the product
    def find_spec(self, name, path, target=None):
        if name == "bench" or name.startswith("bench."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoBench())
from app.cli import main
code = main(sys.argv[1:])
assert "bench" not in sys.modules
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["presets"], ["fetch-data", "--help"],
                                  ["train", "--help"], ["evaluate", "--help"], ["serve", "--help"],
                                  ["bench", "--help"]])
def test_every_command_works_from_an_installation_without_the_benchmark(argv):
    done = subprocess.run([sys.executable, "-c", WITHOUT_BENCH, *argv], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_bench_without_the_benchmark_says_why_it_cannot_run():
    done = subprocess.run([sys.executable, "-c", WITHOUT_BENCH, "bench"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "bench/speed.py" in done.stderr and "source checkout" in done.stderr


# The BLAS threads a command trains with can only be chosen before NumPy loads its BLAS: so
# loading the console script must not import NumPy, and train/sweep set the threads first.
THREADS_SEEN = """
import sys
from app.cli import main
assert 'numpy' not in sys.modules, 'importing the console script loaded NumPy'
import engine.cli
engine.cli.load_data = lambda args: None  # stop right after the threads are chosen
main(sys.argv[1:])
import os
print(os.environ.get('OPENBLAS_NUM_THREADS'))
"""


@pytest.mark.parametrize(("argv", "threads"), [
    (["train"], "1"), (["train", "--threads", "3"], "3"), (["train", "--threads", "0"], None)])
def test_train_chooses_its_blas_threads_before_numpy_loads(argv, threads):
    env = {name: value for name, value in os.environ.items()
           if name not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", THREADS_SEEN, *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(threads)


def test_blas_threads_are_left_alone_once_numpy_is_loaded(monkeypatch):
    from engine.blas import limit_blas_threads

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert "numpy" in sys.modules and limit_blas_threads(2) is False
    assert "OPENBLAS_NUM_THREADS" not in os.environ
