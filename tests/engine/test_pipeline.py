"""engine.pipeline: batches prepared ahead are the batches a plain loop would make, and the process
that prepares them ends with the run, however the run ends."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from engine.augment import Augmenter
from engine.config import AugmentConfig, TrainConfig
from engine.control import TrainingControl
from engine.events import EpochEvent, IterationEvent, event_to_dict
from engine.metrics import normalise
from engine.pipeline import AHEAD, SLOTS, BatchPipeline
from engine.trainer import Trainer
from tests.engine.synthetic import synthetic_digits

DEFAULT_AUGMENTATION = AugmentConfig(shift=2, rotation=10, scale=0.1, thickness=0.3)
ELASTIC = AugmentConfig(shift=1, rotation=8, scale=0.08, elastic_alpha=34, elastic_sigma=4)


@pytest.fixture(scope="module")
def data():
    return synthetic_digits(n_train=1000, n_test=200)


def pipeline(data, augmentation=DEFAULT_AUGMENTATION, ahead=True, epochs=2, seed=0,
             batch_size=128, cls=BatchPipeline) -> BatchPipeline:
    shuffle, augment = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return cls(data.train_images, data.train_labels, batch_size, epochs, augmentation,
               shuffle, augment, ahead=ahead)


def every_batch(batches: BatchPipeline, pause=lambda: None) -> list[tuple[np.ndarray, np.ndarray]]:
    taken = []
    with batches:
        for epoch in range(1, batches.epochs + 1):
            for x, y in batches.epoch(epoch):
                taken.append((x.copy(), y.copy()))
                pause()
    return taken


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)


def running(pid: int) -> bool:
    """Whether process `pid` exists (a child that exited but was not waited for counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_ended(batches: BatchPipeline) -> None:
    """The child that prepared the batches has exited and was waited for: no process left behind."""
    assert batches._child is not None, "the batches were not prepared in a process of their own"
    assert not running(batches._child.pid)


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# --- the batches -----------------------------------------------------------------------------------
@pytest.mark.parametrize("augmentation", [DEFAULT_AUGMENTATION, ELASTIC, AugmentConfig()])
def test_the_documented_order_of_random_numbers(data, augmentation):
    """Per epoch the permutation (shuffle stream), then each batch's distortions in order (augment
    stream): the batches a plain loop over the two generators makes."""
    shuffle, augment = (np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(2))
    augmenter = Augmenter(augmentation)
    expected = []
    for _ in range(2):
        order = shuffle.permutation(1000)
        for start in range(0, 1000, 128):
            batch = order[start : start + 128]
            images = data.train_images[batch]
            x = augmenter(images, augment) if augmentation.enabled else normalise(images)
            expected.append((x, data.train_labels[batch].astype(np.intp)))
    taken = every_batch(pipeline(data, augmentation))
    assert_same_batches(taken, expected)
    assert [len(y) for _, y in taken] == [128] * 7 + [104] + [128] * 7 + [104]
    assert taken[0][1].dtype == np.intp


def test_prefetching_changes_when_numbers_are_drawn_never_which(data):
    inline = every_batch(pipeline(data, ELASTIC, ahead=False))
    assert_same_batches(every_batch(pipeline(data, ELASTIC)), inline)
    assert_same_batches(every_batch(pipeline(data, ELASTIC, batch_size=5000, epochs=3)),
                        every_batch(pipeline(data, ELASTIC, batch_size=5000, epochs=3, ahead=False)))


def test_the_same_batches_however_the_two_threads_are_scheduled(data):
    """A slow trainer (every slot always full) and a slow preparing process (the trainer always
    waiting) see the same batches, bit for bit."""
    rng = np.random.default_rng(99)  # only the timing is random here

    class SlowToPrepare(BatchPipeline):
        def prepare(self, batch, out=None):
            time.sleep(rng.uniform(0, 0.004))
            return super().prepare(batch, out)

    slow_trainer = every_batch(pipeline(data), pause=lambda: time.sleep(rng.uniform(0, 0.004)))
    slow_thread = every_batch(pipeline(data, cls=SlowToPrepare))
    assert_same_batches(slow_trainer, slow_thread)
    assert_same_batches(slow_trainer, every_batch(pipeline(data, ahead=False)))
    different_seed = every_batch(pipeline(data, seed=1, epochs=1))
    assert not np.array_equal(different_seed[0][0], slow_trainer[0][0])


def test_asking_for_another_epoch_than_the_next_one_is_an_error(data):
    with pipeline(data) as batches, pytest.raises(RuntimeError, match="expected batch 0 of epoch 2"):
        next(batches.epoch(2))


# --- the preparing process's lifecycle -------------------------------------------------------------
def test_closing_ends_the_process_and_wastes_at_most_the_batches_prepared_ahead(data):
    batches = pipeline(data, epochs=50)
    with batches:
        taken = 0
        for _ in batches.epoch(1):
            taken += 1
            if taken == 3:
                break
        # the trainer holds the last two batches taken; every other slot is filled again
        wait_until(lambda: batches.prepared == taken + AHEAD)
    assert_ended(batches)
    assert batches.prepared == taken + AHEAD


def test_a_trainer_that_waits_leaves_the_process_waiting_for_a_free_slot(data):
    batches = pipeline(data, epochs=50)
    with batches:
        wait_until(lambda: batches.prepared == SLOTS)
        time.sleep(0.2)
        assert batches.prepared == SLOTS, "nothing is prepared while nobody takes"
        assert sum(1 for _ in zip(range(5), batches.epoch(1), strict=False)) == 5
        wait_until(lambda: batches.prepared == 5 + AHEAD)
    assert_ended(batches)


def test_a_batch_stays_valid_until_two_more_are_taken(data):
    """The model keeps its last input for the backward pass: while a batch trains, the one before
    it must still hold its pixels, even with every free slot filled again meanwhile."""
    inline = every_batch(pipeline(data, epochs=2, ahead=False))
    with pipeline(data, epochs=2) as batches:
        taken = []
        for epoch in (1, 2):
            for x, y in batches.epoch(epoch):
                taken.append((x, y))
                wait_until(lambda: batches.prepared >= min(len(taken) + AHEAD, len(inline)))
                for k in range(max(0, len(taken) - 2), len(taken)):  # this batch and the last
                    np.testing.assert_array_equal(taken[k][0], inline[k][0])
                    np.testing.assert_array_equal(taken[k][1], inline[k][1])
    assert len(taken) == len(inline)


def test_an_error_while_preparing_reaches_the_trainer_and_ends_the_process(data):
    class Broken(BatchPipeline):
        calls = 0

        def prepare(self, batch, out=None):
            self.calls += 1  # counted in the process that prepares
            if self.calls == 3:
                raise ValueError("no such pixel")
            return super().prepare(batch, out)

    batches = pipeline(data, cls=Broken)
    with batches, pytest.raises(ValueError, match="no such pixel"):
        for _ in batches.epoch(1):
            pass
    assert_ended(batches)


def test_without_fork_batches_are_prepared_inline(data):
    with pipeline(data, ahead=False) as batches:
        next(batches.epoch(1))
        assert batches._child is None and batches.prepared == 1


def test_the_preparing_process_exits_when_the_trainer_process_dies(tmp_path):
    """Killed (as the OOM killer or a SIGKILL would), the trainer leaves no process behind."""
    script = tmp_path / "trainer.py"
    script.write_text(
        "import sys, time\n"
        "from tests.engine.synthetic import synthetic_digits\n"
        "from tests.engine.test_pipeline import pipeline\n"
        "with pipeline(synthetic_digits(600, 10), epochs=1000) as batches:\n"
        "    next(batches.epoch(1))\n"
        "    print(batches._child.pid, flush=True)\n"
        "    time.sleep(600)\n")
    trainer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        child = int(trainer.stdout.readline())
        assert running(child)
        trainer.kill()
        trainer.wait(timeout=30)
        wait_until(lambda: not running(child) or zombie(child))
    finally:
        trainer.kill()
        trainer.wait(timeout=30)


def zombie(pid: int) -> bool:
    """Exited and waiting for its (now dead) parent's successor, init, to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


# --- in the trainer --------------------------------------------------------------------------------
def config(**fields) -> TrainConfig:
    base = {"hidden_layers": [32], "epochs": 2, "batch_size": 128, "optimizer": "momentum",
            "learning_rate": 0.05, "lr_schedule": "constant", "validation_size": 0,
            "augmentation": {"shift": 1, "rotation": 5, "thickness": 0.3}}
    return TrainConfig.from_dict({**base, **fields})


def without_timing(events):
    return [{k: v for k, v in event_to_dict(e).items() if k not in ("samples_per_second", "duration_s")}
            for e in events]


class InlineTrainer(Trainer):
    """Prepares every batch in its own thread when it needs it, as the trainer did before."""

    def _prepare_batches(self):
        batches = super()._prepare_batches()
        batches.ahead = False
        return batches


class WatchedTrainer(Trainer):
    """Keeps the pipelines it makes, to look at afterwards."""

    def _prepare_batches(self):
        self.pipelines = [*getattr(self, "pipelines", []), super()._prepare_batches()]
        return self.pipelines[-1]


def test_a_run_is_the_same_with_or_without_the_thread_and_whatever_the_timing(data):
    slow = np.random.default_rng(1)
    runs = []
    for trainer_class, listener in [(WatchedTrainer, lambda e: None),
                                    (WatchedTrainer, lambda e: time.sleep(slow.uniform(0, 0.003))),
                                    (InlineTrainer, lambda e: None)]:
        events = []
        trainer = trainer_class(config(), data, [events.append, listener])
        end = trainer.run()
        assert end.status == "completed"
        runs.append((without_timing(events), [p.value.copy() for p in trainer.model.parameters()]))
        if trainer_class is WatchedTrainer:
            assert_ended(trainer.pipelines[0])
    for events, parameters in runs[1:]:
        assert events == runs[0][0]
        for a, b in zip(parameters, runs[0][1], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ending", ["completed", "stopped", "stopped while paused", "diverged",
                                    "listener failed"])
def test_the_process_ends_with_the_run_however_the_run_ends(data, ending):
    control = TrainingControl()
    fields = {"learning_rate": 1000, "optimizer": "sgd"} if ending == "diverged" else {}

    def listener(event):
        if isinstance(event, IterationEvent) and event.step == 3:
            if ending == "stopped":
                control.stop()
            elif ending == "stopped while paused":
                control.pause()
                threading.Timer(0.1, control.stop).start()
            elif ending == "listener failed":
                raise RuntimeError("the listener broke")

    trainer = WatchedTrainer(config(epochs=20 if ending != "completed" else 1, **fields), data,
                             [listener], control)
    end = trainer.run()
    expected = {"completed": "completed", "diverged": "failed", "listener failed": "failed"}
    assert end.status == expected.get(ending, "stopped"), end.reason
    assert_ended(trainer.pipelines[0])


def test_a_stop_wastes_at_most_the_prefetched_batches(data):
    control = TrainingControl()

    def listener(event):
        if isinstance(event, IterationEvent) and event.step == 10:
            control.stop()

    trainer = WatchedTrainer(config(epochs=20), data, [listener], control)
    end = trainer.run()
    assert end.steps_completed == 11
    # 11 trained, 1 taken and dropped at the stop, at most AHEAD more prepared
    assert 12 <= trainer.pipelines[0].prepared <= 11 + 1 + AHEAD


def test_epoch_metrics_count_every_sample_of_every_prepared_batch(data):
    events = []
    Trainer(config(epochs=1, augmentation={}), data, [events.append]).run()
    epoch = next(e for e in events if isinstance(e, EpochEvent))
    iterations = [e for e in events if isinstance(e, IterationEvent)]
    assert len(iterations) == math.ceil(1000 / 128)
    assert epoch.train_accuracy * 1000 == pytest.approx(round(epoch.train_accuracy * 1000))


@pytest.mark.parametrize(("stop_at", "evaluations"), [(None, 3 * 2 + 1), (3, 2 * 2 + 1)])
def test_every_evaluation_uses_both_threads_and_the_test_comes_once_at_the_end(
        data, monkeypatch, stop_at, evaluations):
    """Per epoch the clean train metric and the validation; the test set once, at the end, for
    the kept epoch (never a validation reused: they are other digits)."""
    import engine.trainer

    calls = []
    real = engine.trainer.evaluate

    def counting(*args, **kwargs):
        calls.append((len(args[2]), kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.trainer, "evaluate", counting)
    control = TrainingControl()

    def listener(event):
        if isinstance(event, IterationEvent) and event.step == 2 * 7 + stop_at:
            control.stop()  # in the third epoch: 2 epochs' evaluations, then the test

    events = []
    end = Trainer(config(epochs=3, validation_size=100), data,
                  [events.append] + ([listener] if stop_at else []), control).run()
    assert len(calls) == evaluations
    assert all(kwargs["threads"] == 2 for _, kwargs in calls)
    assert [size for size, _ in calls[-1:]] == [len(data.test_labels)]  # the test, last
    assert end.status == ("completed" if stop_at is None else "stopped")
    assert 0 <= end.test_accuracy <= 1


def test_a_failed_fork_falls_back_to_preparing_inline(data, monkeypatch):
    def no_fork():
        raise BlockingIOError("Resource temporarily unavailable")

    open_before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", no_fork)
    with pipeline(data) as batches:
        x, y = next(batches.epoch(1))
        assert batches._child is None and batches.prepared == 1 and len(y) == 128
    assert len(os.listdir("/proc/self/fd")) == open_before  # the pipes were closed again
