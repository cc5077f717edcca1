"""`mnist-lab sweep` as a user runs it: trials trained in the process on a slice of real MNIST,
a progress bar per trial on a terminal, the results table or JSON lines, and usage errors."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from app.cli import main
from engine.model import load_model

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--preset", "notebook", "--set", "epochs=3", "--set", "init=he", "--set", "batch_size=100",
         "--set", "lr_schedule=constant", "--set", "hidden_layers=[32]",
         "--train-subset", "2000", "--test-subset", "500"]
# Seed 4 orders the grid's points as 0.2, 0.05, 3e-05, 1e-05 (GridSampler shuffles them by the
# seed): the trials that barely learn come after two that do, so successive halving prunes them.
GRID = ["--space", "learning_rate=0.2;0.05;0.00001;0.00003", "--method", "grid", "--seed", "4"]


@pytest.fixture(scope="module")
def data_dir(mnist_dir, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    (home / "mnist").symlink_to(mnist_dir.resolve(), target_is_directory=True)
    return home


def test_a_grid_with_pruning_prints_a_table_best_first(data_dir, capsys, tmp_path):
    best = tmp_path / "best.npz"
    argv = ["sweep", *GRID, "--pruner", "asha", *QUICK, "--save", str(best),
            "--data-dir", str(data_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sweep: grid over learning_rate (4 trials, grid, pruner asha")
    header = out.index(next(line for line in out if line.startswith("trial ")))
    rows = [line.split() for line in out[header + 1: header + 5]]
    assert [row[2] for row in rows if row[1] == "completed"] == sorted(
        (row[2] for row in rows if row[1] == "completed"), reverse=True)  # best first
    assert sorted(float(row[4]) for row in rows) == [0.00001, 0.00003, 0.05, 0.2]
    pruned = [row for row in rows if row[1] == "pruned"]
    assert pruned and all(row[3] in ("1/3", "2/3") for row in pruned)
    summary = out[header + 5]
    assert summary.startswith("4 trials, ") and "saved by pruning" in summary
    assert out[header + 6].startswith(f"best: trial {rows[0][0]}, val_accuracy {rows[0][2]}")
    assert out[header + 7].startswith("train it again: mnist-lab train --preset notebook --epochs 3")
    model, metadata = load_model(best)
    assert metadata["val_accuracy"] == pytest.approx(float(rows[0][2]), abs=1e-4)
    assert model.config.learning_rate == float(rows[0][4])


def test_json_lines_say_each_trial_then_the_sweep(data_dir, capsys):
    argv = ["sweep", "--space", "learning_rate=log:0.01:0.3", "--space", "hidden_layers=[16];[32]",
            "--trials", "3", "--method", "random", "--seed", "5", *QUICK, "--json",
            "--data-dir", str(data_dir)]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    trials, sweep = lines[:-1], lines[-1]
    assert [t["event"] for t in trials] == ["trial"] * 3 and sweep["event"] == "sweep"
    assert [t["trial"] for t in trials] == [0, 1, 2]
    for trial in trials:
        assert trial["status"] == "completed" and trial["epochs"] == 3 and trial["reason"] is None
        assert 0.01 <= trial["params"]["learning_rate"] <= 0.3
        assert trial["params"]["hidden_layers"] in ([16], [32])
    best = max(trials, key=lambda t: t["value"])
    assert {**sweep["best_trial"], "event": "trial"} == best and sweep["epochs_trained"] == 9
    assert sweep["spec"]["space"]["hidden_layers"] == {"values": [[16], [32]]}
    again = main(argv)  # the same seed: the same trials, the same results
    assert again == 0
    repeated = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert repeated == lines


def test_each_trial_has_a_progress_bar_on_a_terminal(data_dir):
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns
    command = [sys.executable, "-m", "app.cli", "sweep", "--space", "learning_rate=0.1;0.2",
               "--method", "grid", *QUICK, "--data-dir", str(data_dir)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=terminal,
                               env=os.environ)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out, _ = process.communicate(timeout=300)
    os.close(controller)
    assert process.returncode == 0, shown.decode(errors="replace")
    bars = shown.decode(errors="replace")
    for number in (1, 2):
        assert f"trial {number}/2" in bars
    assert "60/60" in bars and "val_accuracy" in bars  # 3 epochs of 20 steps, then the metric
    assert "completed" in out.decode()


@pytest.mark.parametrize(("argv", "message"), [
    (["--space", "lr=0.1:0.2"], '"lr" is not a config field that can be swept'),
    (["--space", "learning_rate"], "write NAME=MIN:MAX"),
    (["--space", "learning_rate=0.3:0.1"], "min (0.3) must be below max (0.1)"),
    (["--space", "learning_rate=0.01:0.3", "--method", "grid"], "learning_rate is a continuous range"),
    (["--space", "batch_size=64;128", "--method", "grid", "--trials", "3"], "at most 2 for this grid"),
    (["--space", "batch_size=64;128", "--pruner", "hyperband"], "pruner must be one of"),
    (["--space", "batch_size=64;128", "--set", "epochs"], "write NAME=VALUE"),
    (["--space", "batch_size=64;128", "--set", "epochs=0"], "epochs must be between 1 and 1000"),
    (["--space", "batch_size=64;128", "--train-subset", "0"], "--train-subset must be a positive"),
    (["--space", "batch_size=64;128", "--threads", "-1"], "--threads must be 0 or more"),
])
def test_usage_errors_exit_2_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["sweep", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
