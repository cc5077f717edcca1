"""The run protocol: every message survives the wire unchanged, a malformed one is refused, and
the worker's listener tells a real (small, synthetic) training run in exactly these messages."""

from __future__ import annotations

import json
import os

import pytest

from app.protocol import (
    MESSAGES,
    Checkpoint,
    CheckpointBytes,
    Ended,
    Iterations,
    ProtocolError,
    from_wire,
    to_wire,
)
from app.worker import Reporter, RunJob, checkpoint_from_bytes, pending_model_path, run_job
from engine.config import TrainConfig
from engine.control import TrainingControl
from engine.events import (
    Divergence,
    EndEvent,
    EpochEvent,
    FirstLayer,
    Histogram,
    LayersEvent,
    LayerStats,
    PauseEvent,
    StartEvent,
)
from engine.model import load_model
from engine.trainer import Trainer
from tests.engine.synthetic import ScrambleAfterEpoch, synthetic_digits

EXAMPLES = [
    StartEvent(epochs=2, steps_per_epoch=8, train_samples=1000, test_samples=301,
               validation_samples=200),
    Iterations(((0, 1, 2.3), (1, 1, 2.1)), 1234.5, 0.05),
    Iterations(((2, 1, 2.0),), None, 0.05),
    EpochEvent(epoch=1, train_loss=0.5, train_accuracy=0.8, val_loss=0.4, val_accuracy=0.9,
               running_loss=0.6, running_accuracy=0.75, duration_s=1.5, learning_rate=0.05),
    EpochEvent(epoch=2, train_loss=0.5, train_accuracy=0.8, val_loss=None, val_accuracy=None,
               running_loss=0.6, running_accuracy=0.75, duration_s=1.5, learning_rate=0.05),
    LayersEvent(epoch=1, step=7, learning_rate=0.05, epoch_end=True, layers=(
        LayerStats("hidden1", (784, 2), Histogram((-0.1, 0.0, 0.1), (3, 4)),
                   Histogram((0.5, 1.0), (1,)), Histogram((), ()), 0.25, 1e-3, 0.5),
        LayerStats("output", (2, 10), Histogram((1.0, 2.0), (20,)), Histogram((1.0, 2.0), (20,)),
                   Histogram((1.0, 2.0), (20,)), 1.5, 2e-3, None)),
        first_layer=FirstLayer(2, ("AAAA", "AQID"), ((0.5, 0.25), None) + ((0.0, 1.0),) * 8)),
    LayersEvent(epoch=1, step=3, learning_rate=0.05, epoch_end=False, layers=()),
    Checkpoint(1, "/data/models/run-3.epoch-1.part.npz"),
    CheckpointBytes(2, bytes(range(256)) * 3),
    PauseEvent(epoch=1, step=5, paused=True),
    Ended.of(EndEvent(epoch=2, status="completed", reason=None, epochs_completed=2,
                      steps_completed=16, test_accuracy=0.93, duration_s=4.0, test_loss=0.2,
                      model_epoch=2)),
    Ended.death(-9),
    Ended.of(EndEvent(epoch=1, status="failed", reason="diverged: ...", epochs_completed=0,
                      steps_completed=7, test_accuracy=None, duration_s=0.5,
                      diverged=Divergence(step=7, loss=None))),
    Ended("failed", "diverged: ...", diverged=Divergence(step=12, loss=426.1)),
]


def test_every_kind_has_an_example():
    assert {type(message) for message in EXAMPLES} == set(MESSAGES.values())


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_each_message_survives_the_wire_even_as_json(message):
    wire = to_wire(message)
    assert wire["event"] == message.event
    assert from_wire(wire) == message
    assert from_wire(json.loads(json.dumps(wire, allow_nan=False))) == message


@pytest.mark.parametrize("wire", [
    {"event": "iteration", "step": 1},  # the engine's own event, not a protocol message
    {"type": "epoch"}, {}, ["end"], None,
    {"event": "end", "status": "failed", "reason": "x", "colour": "red"},
    {"event": "checkpoint", "epoch": 1},
    {"event": "checkpoint_bytes", "epoch": 1, "content": "not base64!"},
    {"event": "checkpoint_bytes", "epoch": 1, "content": 12},
    {"event": "checkpoint_bytes", "epoch": 1},
    {"event": "end", "status": "failed", "reason": "x", "diverged": {"step": 3}},
    {"event": "iterations", "points": 5, "samples_per_second": None, "learning_rate": 0.1},
])
def test_anything_else_is_refused(wire):
    with pytest.raises(ProtocolError):
        from_wire(wire)


def test_a_process_death_says_what_killed_it():
    killed = Ended.death(-9)
    assert killed.status == "failed" and killed.died and "SIGKILL" in killed.reason
    assert "exit code 1" in Ended.death(1).reason


def job(tmp_path, **config) -> RunJob:
    values = {"hidden_layers": [16], "epochs": 2, "batch_size": 128, "augmentation": {},
              "validation_size": 0, **config}
    return RunJob(run_id=3, config=TrainConfig.from_dict(values), data_dir=tmp_path,
                  model_path=tmp_path / "run-3.npz")


def test_a_run_told_in_messages(tmp_path):
    """StartEvent, steps batched, EpochEvent then Checkpoint, one Ended last, every message
    through the wire; the checkpoints are real model files."""
    sent = []
    run = job(tmp_path)
    data = synthetic_digits(n_train=1000, n_test=301)
    Trainer(run.config, data, [Reporter(run, lambda m: sent.append(from_wire(to_wire(m))))]).run()
    kinds = [type(message).__name__ for message in sent]
    assert kinds[0] == "StartEvent" and kinds[-1] == "Ended" and kinds.count("Ended") == 1
    steps = [point[0] for m in sent if isinstance(m, Iterations) for point in m.points]
    assert steps == list(range(16))
    epochs = [i for i, m in enumerate(sent) if isinstance(m, EpochEvent)]
    assert [sent[i].epoch for i in epochs] == [1, 2]
    for i in epochs:  # every step of the epoch before it, its checkpoint right after it
        assert isinstance(sent[i + 1], Checkpoint) and sent[i + 1].epoch == sent[i].epoch
        assert max(p[0] for m in sent[:i] if isinstance(m, Iterations) for p in m.points) == \
            8 * sent[i].epoch - 1
    checkpoint = sent[epochs[-1] + 1]
    assert checkpoint.path == str(pending_model_path(run.model_path, 2))
    model, metadata = load_model(checkpoint.path)
    assert metadata["epoch"] == 2 and metadata["run_id"] == 3
    ended = sent[-1]
    assert ended.status == "completed" and ended.test_accuracy > 0.5 and ended.duration_s > 0


def test_the_worker_checkpoints_the_epochs_it_keeps_and_streams_layers_after_their_steps(tmp_path):
    """With validation, a Checkpoint follows an epoch only if it is the best so far, and the last
    one is the kept (tested) epoch; each LayersEvent comes after the step it measured."""
    from engine.inside import LayerWatch

    sent = []
    run = job(tmp_path, epochs=4, validation_size=200, stats_every=3, lr_schedule="step",
              lr_decay=0.01, learning_rate=0.1)
    data = synthetic_digits(n_train=1000, n_test=301)

    Trainer(run.config, data, [Reporter(run, lambda m: sent.append(from_wire(to_wire(m)))),
                               LayerWatch(3), ScrambleAfterEpoch(2)]).run()
    accuracies = {m.epoch: m.val_accuracy for m in sent if isinstance(m, EpochEvent)}
    checkpoints = [m.epoch for m in sent if isinstance(m, Checkpoint)]
    best = max(accuracies, key=lambda epoch: accuracies[epoch])
    assert best in (1, 2) and checkpoints[-1] == best  # kept on validation, saved last
    assert 3 not in checkpoints and 4 not in checkpoints
    _, metadata = load_model(sent[-2].path)
    assert metadata["epoch"] == best and metadata["selected_on"] == "validation"
    assert metadata["test_accuracy"] == sent[-1].test_accuracy
    seen = -1
    layers = 0
    for message in sent:
        if isinstance(message, Iterations):
            seen = message.points[-1][0]
        elif isinstance(message, LayersEvent):
            assert message.step <= seen
            layers += 1
    assert layers >= 8


def test_a_diverging_run_ends_with_the_step_it_diverged_at(tmp_path):
    sent = []
    run = job(tmp_path, optimizer="sgd", learning_rate=1000, epochs=1)
    data = synthetic_digits(n_train=1000, n_test=301)
    Trainer(run.config, data, [Reporter(run, lambda m: sent.append(from_wire(to_wire(m))))]).run()
    ended = sent[-1]
    assert isinstance(ended, Ended) and ended.status == "failed" and ended.diverged is not None
    steps = [point[0] for m in sent if isinstance(m, Iterations) for point in m.points]
    assert steps == list(range(ended.diverged.step))  # every step before it, not itself
    assert not any(isinstance(m, Checkpoint) for m in sent)


def test_a_paused_run_says_so_after_the_steps_before_it(tmp_path):
    sent = []
    control = TrainingControl()
    run = job(tmp_path, epochs=1)

    def pause_once(message):
        sent.append(message)
        if isinstance(message, Iterations) and not any(isinstance(m, PauseEvent) for m in sent):
            control.pause()
        elif isinstance(message, PauseEvent) and message.paused:
            control.resume()

    reporter = Reporter(run, pause_once, clock=iter(range(10**6)).__next__)  # each step flushes
    Trainer(run.config, synthetic_digits(n_train=1000, n_test=301), [reporter], control).run()
    pause = next(i for i, m in enumerate(sent) if isinstance(m, PauseEvent))
    before = [p[0] for m in sent[:pause] if isinstance(m, Iterations) for p in m.points]
    assert sent[pause].step == len(before) and before == list(range(len(before)))


def test_a_worker_that_cannot_start_ends_its_run_once_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    sent = []
    run_job(job(tmp_path / "no-mnist-here"), sent.append, TrainingControl())
    assert len(sent) == 1 and isinstance(sent[0], Ended)
    assert sent[0].status == "failed" and "mnist-lab fetch-data" in sent[0].reason
    assert sent[0].traceback and not os.path.exists(tmp_path / "run-3.npz")


def test_a_worker_without_the_servers_disk_gets_data_handed_and_sends_checkpoints_as_bytes(
        tmp_path, monkeypatch):
    """What a Ray actor does: MNIST from a loader (no data dir read), every checkpoint inside its
    message (nothing written anywhere); on the server the bytes become the file a local worker
    would have saved, and its Checkpoint."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    nowhere = tmp_path / "not-on-this-node"
    run = job(nowhere)
    sent = []
    run_job(run, lambda m: sent.append(from_wire(to_wire(m))), TrainingControl(),
            data=lambda: synthetic_digits(n_train=1000, n_test=301), checkpoints="bytes")
    assert not nowhere.exists()
    assert sent[-1].status == "completed", sent[-1]
    assert not any(isinstance(m, Checkpoint) for m in sent)
    kept = [m for m in sent if isinstance(m, CheckpointBytes)]
    assert [m.epoch for m in kept] == [1, 2, 2]  # after each epoch, and at the end
    epochs = [i for i, m in enumerate(sent) if isinstance(m, EpochEvent)]
    assert all(isinstance(sent[i + 1], CheckpointBytes) for i in epochs)

    server_models = tmp_path / "models"  # not there yet: the first checkpoint makes it
    checkpoint = checkpoint_from_bytes(server_models / "run-3.npz", kept[-1])
    assert checkpoint == Checkpoint(2, str(pending_model_path(server_models / "run-3.npz", 2)))
    _, metadata = load_model(checkpoint.path)
    assert metadata["epoch"] == 2 and metadata["run_id"] == 3
    assert sorted(p.name for p in server_models.iterdir()) == ["run-3.epoch-2.part.npz"]
