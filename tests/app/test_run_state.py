"""The run reducer, `apply(message, run, at) -> run`, with plain values: no processes, no clock,
no database. Each test is a run's life, or a piece of it, told as messages."""

from __future__ import annotations

import dataclasses

import pytest

from app.protocol import Checkpoint, Ended, Iterations
from app.runs.state import (
    ACTIVE_STATUSES,
    STATUSES,
    DetailsChanged,
    Moment,
    PauseRequested,
    PauseTimedOut,
    PruneRequested,
    Resumed,
    RunState,
    ShuttingDown,
    StepRequested,
    StopRequested,
    apply,
)
from app.store import RUN_COLUMNS
from engine.events import (
    Divergence,
    EpochEvent,
    Histogram,
    LayersEvent,
    LayerStats,
    PauseEvent,
    StartEvent,
)

CONFIG = {"batch_size": 100, "epochs": 3}


def at(seconds: float) -> Moment:
    return Moment(f"2030-01-01T00:00:{seconds:06.3f}+00:00", seconds)


def queued() -> RunState:
    return RunState(id=7, config=CONFIG, created_at=at(0).iso)


def run_through(run: RunState, *messages, start: float = 1.0) -> RunState:
    """Apply `messages` in order, one second apart from `start`."""
    for index, message in enumerate(messages):
        run = apply(message, run, at(start + index))
    return run


START = StartEvent(epochs=3, steps_per_epoch=20, train_samples=2000, test_samples=500)


def epoch(number: int, accuracy: float) -> EpochEvent:
    return EpochEvent(epoch=number, train_loss=0.5, train_accuracy=0.8, val_loss=0.4,
                      val_accuracy=accuracy, running_loss=0.6, running_accuracy=0.7,
                      duration_s=2.0, learning_rate=0.1)


def steps(first: int, last: int, epoch_number: int, rate: float = 500.0) -> Iterations:
    return Iterations(tuple((step, epoch_number, 1.0 / (step + 1)) for step in range(first, last + 1)),
                      rate, 0.1)


def test_a_run_that_completes():
    run = run_through(queued(), START, steps(0, 19, 1), epoch(1, 0.91), Checkpoint(1, "/tmp/x"),
                      steps(20, 39, 2), epoch(2, 0.89), Checkpoint(2, "/tmp/y"),
                      Ended("completed", None, test_accuracy=0.9, duration_s=6.5))
    assert run.status == "completed" and run.reason is None
    assert (run.step, run.epoch, run.steps_per_epoch) == (39, 2, 20)
    assert run.best_val_accuracy == 0.91  # the best epoch, not the last
    assert run.has_model and run.test_accuracy == 0.9
    assert run.model_epoch == 2  # the epoch its last checkpoint holds
    assert run.duration_s == 6.5  # as the worker measured it
    assert run.started_at == at(1).iso and run.finished_at == at(8).iso
    assert run.samples_per_second is None  # only a running run has a speed


def test_start_iterations_and_speed():
    run = run_through(queued(), START)
    assert run.status == "running" and run.started_clock == 1.0 and run.steps_per_epoch == 20
    run = apply(steps(0, 4, 1, rate=321.0), run, at(2))
    assert (run.step, run.epoch, run.samples_per_second) == (4, 1, 321.0)
    assert apply(Iterations((), 5.0, 0.1), run, at(3)) == run  # an empty batch changes nothing


def test_pause_holds_once_the_worker_confirms_it():
    running = run_through(queued(), START, steps(0, 4, 1))
    asked = apply(PauseRequested(), running, at(5))
    assert asked.status == "running" and asked.pause_requested
    paused = apply(PauseEvent(epoch=1, step=5, paused=True), asked, at(6))
    assert paused.status == "paused" and not paused.pause_requested
    # the worker's own "resumed" changes nothing: the request already did
    assert apply(PauseEvent(epoch=1, step=5, paused=False), paused, at(7)) == paused
    resumed = apply(Resumed(), paused, at(8))
    assert resumed.status == "running"


def test_a_pause_nobody_asked_for_and_a_late_confirmation_are_ignored():
    running = run_through(queued(), START)
    assert apply(PauseEvent(epoch=1, step=0, paused=True), running, at(3)) == running
    # The worker did not confirm in time: paused anyway, then resumed; its confirmation comes late.
    resumed = run_through(running, PauseRequested(), PauseTimedOut(), Resumed(), start=3)
    assert resumed.status == "running"
    assert apply(PauseEvent(epoch=1, step=0, paused=True), resumed, at(9)).status == "running"


def test_pause_and_resume_only_apply_where_they_make_sense():
    assert apply(PauseRequested(), queued(), at(1)) == queued()
    running = run_through(queued(), START)
    assert apply(Resumed(), running, at(3)) == running


def test_stop_on_request():
    run = run_through(queued(), START, steps(0, 9, 1), StopRequested(),
                      Ended("stopped", "stopped on request", duration_s=3.0))
    assert (run.status, run.reason) == ("stopped", "stopped on request")
    assert not run.stop_requested and run.step == 9


def test_a_process_killed_after_a_stop_request_counts_as_stopped():
    run = run_through(queued(), START, StopRequested(), Ended.death(-9))
    assert run.status == "stopped"
    assert run.reason == "stopped on request (the process did not stop in time and was ended)"
    assert run.duration_s == 2.0  # not measured by the worker: counted from the start message


def test_a_process_that_dies_fails_its_run_with_the_reason():
    run = run_through(queued(), START, steps(0, 3, 1), Ended.death(-9))
    assert run.status == "failed" and "SIGKILL" in run.reason and run.duration_s == 2.0
    run = run_through(queued(), START, Ended.death(3))
    assert run.status == "failed" and "exit code 3" in run.reason


def test_a_pruned_trial_ends_pruned_with_its_epochs_and_model():
    trial = dataclasses.replace(queued(), sweep_id=3, trial=5)
    why = "pruned by the sweep's median pruner after epoch 1"
    run = run_through(trial, START, steps(0, 19, 1), epoch(1, 0.61), Checkpoint(1, "/tmp/x"),
                      steps(20, 25, 2), PruneRequested(why),
                      Ended("stopped", "stopped on request", duration_s=4.0))
    assert (run.status, run.reason) == ("pruned", why)
    assert (run.sweep_id, run.trial, run.has_model, run.best_val_accuracy) == (3, 5, True, 0.61)
    assert run.prune_reason is None and not run.stop_requested and not run.active


@pytest.mark.parametrize(("end", "status", "reason"), [
    (Ended.death(-9), "pruned", "pruned (the process did not stop in time and was ended)"),
    (Ended("completed", None, test_accuracy=0.7), "completed", None),  # finished first: it stands
    (Ended("failed", "diverged: the loss became inf"), "failed", "diverged: the loss became inf"),
])
def test_how_a_trial_asked_to_prune_ends(end, status, reason):
    run = run_through(queued(), START, epoch(1, 0.5), PruneRequested("pruned"), end)
    assert (run.status, run.reason) == (status, reason)


def test_a_shutdown_does_not_undo_a_prune():
    run = run_through(queued(), START, PruneRequested("pruned after epoch 1"), ShuttingDown(),
                      Ended("stopped", None))
    assert (run.status, run.reason) == ("pruned", "pruned after epoch 1")


def test_a_run_stopped_before_it_started():
    run = apply(Ended("stopped", "stopped before it started"), queued(), at(4))
    assert (run.status, run.reason, run.finished_at) == ("stopped", "stopped before it started",
                                                         at(4).iso)
    assert run.started_at is None and run.duration_s is None


@pytest.mark.parametrize(("status", "expected"), [("stopped", "interrupted"),
                                                   ("failed", "interrupted"),
                                                   ("completed", "completed")])
def test_a_shutdown_interrupts_what_did_not_complete(status, expected):
    run = run_through(queued(), START, ShuttingDown(), Ended(status, "whatever"))
    assert run.status == expected
    if expected == "interrupted":
        assert run.reason.startswith("the server shut down while this run was running")
    paused = run_through(queued(), START, PauseRequested(), PauseTimedOut(), ShuttingDown(),
                         Ended("stopped", None))
    assert "while this run was paused" in paused.reason


def test_a_run_that_ended_stays_as_it_ended():
    done = run_through(queued(), START, Ended("completed", None, test_accuracy=0.9, duration_s=1.0))
    for message in (START, steps(5, 6, 1), Ended("failed", "late"), StopRequested(),
                    PruneRequested("late"), PauseRequested(), Resumed(), ShuttingDown(),
                    Ended.death(-9), Ended("failed", "late", diverged=Divergence(3, None))):
        assert apply(message, done, at(50)) == done, message


def test_a_diverged_run_records_the_step_and_its_loss():
    run = run_through(queued(), START, steps(0, 11, 1),
                      Ended("failed", "diverged: ...", diverged=Divergence(step=12, loss=426.1)))
    assert run.status == "failed" and (run.diverged_step, run.diverged_loss) == (12, 426.1)
    assert run.step == 11  # the last step taken; the diverging one was not
    not_finite = run_through(queued(), START, Ended("failed", "diverged: ...",
                                                   diverged=Divergence(step=0, loss=None)))
    assert (not_finite.diverged_step, not_finite.diverged_loss) == (0, None)
    for end in (Ended("completed", None), Ended("failed", "ValueError: x"), Ended.death(-9)):
        ended = run_through(queued(), START, end)
        assert (ended.diverged_step, ended.diverged_loss) == (None, None), end


def test_name_tags_and_notes_change_whatever_the_status():
    named = apply(DetailsChanged(name="baseline", tags=("small", "adam")), queued(), at(1))
    assert (named.name, named.tags, named.notes) == ("baseline", ("small", "adam"), None)
    assert named.status == "queued"
    # A field not given keeps its value; None clears a name or notes; () removes the tags.
    noted = apply(DetailsChanged(notes="the reference"), named, at(2))
    assert (noted.name, noted.tags, noted.notes) == ("baseline", ("small", "adam"), "the reference")
    cleared = apply(DetailsChanged(name=None, tags=()), noted, at(3))
    assert (cleared.name, cleared.tags, cleared.notes) == (None, (), "the reference")
    assert apply(DetailsChanged(), noted, at(3)) == noted
    # While it trains, and after it ended (nothing else about an ended run changes).
    running = run_through(named, START, steps(0, 4, 1), start=4)
    renamed = apply(DetailsChanged(name="wide"), running, at(9))
    assert renamed == dataclasses.replace(running, name="wide")
    done = run_through(renamed, Ended("completed", None, duration_s=1.0), start=10)
    after = apply(DetailsChanged(name="kept", tags=("final",), notes="done"), done, at(20))
    assert after == dataclasses.replace(done, name="kept", tags=("final",), notes="done")


def test_apply_is_pure():
    run = run_through(queued(), START)
    frozen = dataclasses.replace(run)
    once = apply(epoch(1, 0.5), run, at(9))
    assert run == frozen  # the old value is untouched
    assert apply(epoch(1, 0.5), run, at(9)) == once  # same message, same run, same moment


def test_statuses_and_the_stored_record():
    assert set(ACTIVE_STATUSES) < set(STATUSES)
    fields = {field.name for field in dataclasses.fields(RunState)}
    assert set(RUN_COLUMNS) <= fields  # every stored column is a field of the state
    for status in STATUSES:
        assert RunState(id=1, config=CONFIG, created_at="", status=status).active \
            == (status in ACTIVE_STATUSES)


# --- validation, layer statistics, step mode -------------------------------------------------------
def test_the_model_epoch_is_the_checkpointed_one_and_test_comes_with_the_end():
    run = run_through(queued(), START, steps(0, 19, 1), epoch(1, 0.91), Checkpoint(1, "/tmp/x"),
                      steps(20, 39, 2), epoch(2, 0.89),  # worse: no checkpoint
                      Checkpoint(1, "/tmp/kept"),  # the kept epoch, saved again with its test
                      Ended("completed", None, test_accuracy=0.905, test_loss=0.31))
    assert (run.model_epoch, run.best_val_accuracy) == (1, 0.91)
    assert (run.test_accuracy, run.test_loss) == (0.905, 0.31)


def test_an_epoch_without_validation_leaves_the_best_validation_alone():
    no_validation = dataclasses.replace(epoch(1, 0.0), val_loss=None, val_accuracy=None)
    run = run_through(queued(), START, no_validation)
    assert run.best_val_accuracy is None
    assert apply(no_validation, apply(epoch(1, 0.8), run, at(5)), at(6)).best_val_accuracy == 0.8


def test_layer_statistics_change_nothing_in_the_record():
    running = run_through(queued(), START, steps(0, 4, 1))
    snapshot = LayersEvent(epoch=1, step=4, learning_rate=0.1, epoch_end=False, layers=(
        LayerStats("output", (784, 10), Histogram((0.0, 1.0), (7,)), Histogram((), ()),
                   Histogram((), ()), 0.5, 1e-3, None),))
    assert apply(snapshot, running, at(9)) == running


def test_a_step_request_keeps_the_run_paused_until_the_worker_pauses_again():
    paused = run_through(queued(), START, steps(0, 4, 1), PauseRequested(),
                         PauseEvent(epoch=1, step=5, paused=True))
    stepping = apply(StepRequested(3), paused, at(10))
    assert stepping.status == "paused" and stepping.stepping
    assert apply(StepRequested(2), stepping, at(11)) == stepping  # one request at a time
    stepping = run_through(stepping, PauseEvent(epoch=1, step=5, paused=False), steps(5, 7, 1),
                           start=12)
    assert stepping.stepping and stepping.step == 7 and stepping.status == "paused"
    again = apply(PauseEvent(epoch=1, step=8, paused=True), stepping, at(20))
    assert again.status == "paused" and not again.stepping


def test_a_step_request_only_applies_to_a_paused_run_and_ends_with_resume_or_the_run():
    running = run_through(queued(), START)
    assert apply(StepRequested(1), running, at(5)) == running
    paused = run_through(running, PauseRequested(), PauseEvent(epoch=1, step=0, paused=True))
    stepping = apply(StepRequested(1), paused, at(9))
    resumed = apply(Resumed(), stepping, at(10))
    assert resumed.status == "running" and not resumed.stepping
    ended = apply(Ended("completed", None, test_accuracy=0.9), stepping, at(11))
    assert ended.status == "completed" and not ended.stepping
