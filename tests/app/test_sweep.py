"""The ask-and-tell loop both drivers share (`Sweep` over an Optuna `Search`), fed plain values:
no training, no processes, no server. A "trial" here is its metric after each epoch."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from app.sweeps.journal import open_journal, repair_tail
from app.sweeps.search import REPLACES, Search, tpe_startup_trials
from app.sweeps.spec import SpaceError, make_spec
from app.sweeps.sweep import Sweep
from engine.config import TrainConfig, field_bounds

FIELDS = field_bounds()
BASE = TrainConfig.from_dict({"preset": "notebook", "epochs": 3})
SPACE = {"learning_rate": {"min": 0.001, "max": 0.3, "log": True},
         "hidden_layers": {"values": [[32], [64], [128, 64]]}}


def new_sweep(storage=None, **spec) -> Sweep:
    spec = make_spec(**{"base": BASE, "fields": FIELDS, "space": SPACE, **spec})
    return Sweep(spec, Search(spec, storage))


def train(sweep: Sweep, trial: int, values: list[float]) -> str | None:
    """Report `values` epoch by epoch until one is pruned; end the trial as its run would."""
    for epoch, value in enumerate(values, start=1):
        reason = sweep.epoch(trial, epoch, {"val_accuracy": value, "val_loss": 1 - value})
        if reason:
            sweep.ended(trial, "pruned")
            return reason
    sweep.ended(trial, "completed")
    return None


def states(sweep: Sweep) -> dict[int, str]:
    return sweep.search.states()


def test_trials_start_up_to_max_concurrent_and_stop_at_the_number_asked():
    sweep = new_sweep(trials=5, max_concurrent=2)
    first = sweep.propose()
    assert [p.trial for p in first] == [0, 1] and sweep.propose() == []
    for proposal in first:  # each proposal is a whole config over the base
        assert proposal.config.learning_rate == proposal.params["learning_rate"]
        assert list(proposal.config.hidden_layers) == proposal.params["hidden_layers"]
        assert proposal.config.epochs == 3 and proposal.config.init == "notebook"
    train(sweep, 0, [0.5, 0.6, 0.7])
    assert [p.trial for p in sweep.propose()] == [2]
    started = 3
    while not sweep.done:
        for trial in list(sweep.running):
            train(sweep, trial, [0.5, 0.6, 0.7])
        started += len(sweep.propose())
    assert started == 5 and sweep.counted == 5
    assert set(states(sweep).values()) == {"COMPLETE"}


def test_a_completed_trial_is_told_the_metric_of_the_epoch_whose_model_it_keeps():
    sweep = new_sweep(trials=1)
    [proposal] = sweep.propose()
    train(sweep, proposal.trial, [0.5, 0.9, 0.8])
    [told] = sweep.search.study.trials
    assert told.value == 0.9  # the best epoch on validation, whose weights the run keeps
    assert told.intermediate_values == {1: 0.5, 2: 0.9, 3: 0.8}
    assert sweep.done


def test_the_median_pruner_stops_a_trial_below_the_median_and_tells_optuna_at_once():
    sweep = new_sweep(trials=6, pruner="median")
    for value in (0.80, 0.85, 0.90):  # the median pruner waits for 3 finished trials
        [proposal] = sweep.propose()
        assert train(sweep, proposal.trial, [value, value, value]) is None
    [hopeless] = sweep.propose()
    reason = sweep.epoch(hopeless.trial, 1, {"val_accuracy": 0.10, "val_loss": 1 - 0.10})
    assert reason.startswith("pruned after epoch 1 of 3 by the sweep's median pruner: its "
                             "val_accuracy (0.1000) was worse than the median")
    assert states(sweep)[hopeless.trial] == "PRUNED"  # before its run has even stopped
    late = {"val_accuracy": 0.2, "val_loss": 1 - 0.2}
    assert sweep.epoch(hopeless.trial, 2, late) is None  # a late epoch: ignored
    sweep.ended(hopeless.trial, "pruned")
    assert sweep.counted == 4 and states(sweep)[hopeless.trial] == "PRUNED"
    [good] = sweep.propose()
    assert train(sweep, good.trial, [0.95, 0.95, 0.95]) is None


def test_without_a_pruner_or_at_the_last_epoch_nothing_is_pruned():
    plain = new_sweep(trials=5)
    for value in (0.8, 0.85, 0.9, 0.1):
        [proposal] = plain.propose()
        assert train(plain, proposal.trial, [value] * 3) is None
    late = new_sweep(trials=5, pruner="median")
    for values in ([0.8] * 3, [0.85] * 3, [0.9] * 3, [0.99, 0.99, 0.1]):  # bad only at the end
        [proposal] = late.propose()
        assert train(late, proposal.trial, values) is None
    assert states(late)[3] == "COMPLETE"


def test_successive_halving_keeps_only_the_best_third_at_each_rung():
    sweep = new_sweep(trials=9, pruner="asha", method="random")
    outcomes = []
    for value in (0.9, 0.5, 0.95, 0.3, 0.97, 0.2, 0.1, 0.99, 0.4):
        [proposal] = sweep.propose()
        outcomes.append(train(sweep, proposal.trial, [value] * 3))
    pruned = [index for index, reason in enumerate(outcomes) if reason]
    assert pruned and all("(successive halving, ASHA)" in outcomes[i] for i in pruned)
    assert 7 not in pruned  # the best trial always goes on
    assert {states(sweep)[i] for i in pruned} == {"PRUNED"}


@pytest.mark.parametrize(("status", "state"), [("failed", "FAIL"), ("stopped", "FAIL")])
def test_a_trial_that_failed_or_was_stopped_counts_and_is_told_fail(status, state):
    sweep = new_sweep(trials=3)
    [proposal] = sweep.propose()
    sweep.epoch(proposal.trial, 1, {"val_accuracy": 0.4, "val_loss": 1 - 0.4})
    sweep.ended(proposal.trial, status)
    assert states(sweep) == {0: state} and sweep.counted == 1


def test_an_interrupted_trial_is_not_told_and_does_not_count():
    sweep = new_sweep(trials=3)
    [proposal] = sweep.propose()
    sweep.ended(proposal.trial, "interrupted")
    assert states(sweep) == {0: "RUNNING"} and sweep.counted == 0  # the next start redoes it


def test_a_stopped_sweep_starts_nothing_more_and_is_done_when_its_trials_ended():
    sweep = new_sweep(trials=6, max_concurrent=2)
    first = sweep.propose()
    sweep.stop()
    assert sweep.propose() == [] and not sweep.done
    for proposal in first:
        sweep.ended(proposal.trial, "stopped")
    assert sweep.done and sweep.counted == 2


def test_a_grid_trains_every_configuration_once():
    space = {"batch_size": {"values": [64, 128]}, "hidden_layers": {"values": [[32], [64, 32]]},
             "activation": {"values": ["relu", "tanh"]}}
    sweep = new_sweep(space=space, method="grid", max_concurrent=3)
    seen = []
    while not sweep.done:
        for proposal in sweep.propose():
            seen.append((proposal.params["batch_size"], tuple(proposal.params["hidden_layers"]),
                         proposal.params["activation"]))
        for trial in list(sweep.running):
            train(sweep, trial, [0.5, 0.6, 0.7])
    assert sorted(seen) == sorted(itertools.product((64, 128), ((32,), (64, 32)), ("relu", "tanh")))


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_the_same_seed_proposes_the_same_trials(method):
    def proposals(seed: int) -> list[dict]:
        sweep = new_sweep(trials=6, method=method, seed=seed)
        asked = []
        while not sweep.done:
            [proposal] = sweep.propose()
            asked.append(proposal.params)
            train(sweep, proposal.trial, [proposal.params["learning_rate"]] * 3)
        return asked

    assert proposals(7) == proposals(7)
    assert proposals(7) != proposals(8)


def test_tpe_starts_with_a_few_random_trials_then_models_the_results():
    assert [tpe_startup_trials(n) for n in (3, 12, 30, 100)] == [2, 4, 10, 10]


def test_a_sweep_goes_on_from_its_journal_after_a_restart(tmp_path):
    path = tmp_path / "sweep-1.journal"
    sweep = new_sweep(open_journal(path), trials=4, max_concurrent=2, pruner="median")
    first, second = sweep.propose()
    train(sweep, first.trial, [0.6, 0.7, 0.8])
    sweep.epoch(second.trial, 1, {"val_accuracy": 0.5, "val_loss": 1 - 0.5})
    # The server dies here: trial 1 was training. A new server opens the same journal.
    spec = sweep.spec
    search = Search(spec, open_journal(path))
    assert search.replace_interrupted() == [second.trial]
    assert search.replace_interrupted() == []  # once only
    resumed = Sweep(spec, search)
    assert resumed.counted == 1
    again = resumed.propose()
    assert again[0].params == second.params  # the interrupted trial, asked again first
    assert search.study.trials[again[0].trial].user_attrs == {REPLACES: second.trial}
    assert len(again) == 2 and again[1].params != second.params
    while not resumed.done:
        for trial in list(resumed.running):
            train(resumed, trial, [0.6, 0.7, 0.8])
        resumed.propose()
    assert resumed.counted == 4
    assert states(resumed) == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE", 3: "COMPLETE",
                               4: "COMPLETE"}


def test_a_journal_line_cut_off_by_a_crash_is_dropped(tmp_path):
    path = tmp_path / "sweep-2.journal"
    sweep = new_sweep(open_journal(path), trials=3)
    [proposal] = sweep.propose()
    train(sweep, proposal.trial, [0.5, 0.6, 0.7])
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code": 5, "worker_id": "x", "trial_id": 0, "ste')
    repair_tail(path)
    assert path.read_bytes() == whole
    resumed = Sweep(sweep.spec, Search(sweep.spec, open_journal(path)))
    assert resumed.counted == 1 and [p.trial for p in resumed.propose()] == [1]


def test_a_grid_resumed_after_a_restart_still_trains_every_point_once(tmp_path):
    path = tmp_path / "sweep-3.journal"
    space = {"learning_rate": {"values": [0.1, 0.05, 0.01]}, "batch_size": {"values": [64, 128]}}
    sweep = new_sweep(open_journal(path), space=space, method="grid", max_concurrent=2, seed=3)
    first, cut_off = sweep.propose()
    train(sweep, first.trial, [0.5, 0.6, 0.7])
    search = Search(sweep.spec, open_journal(path))  # the server died while cut_off trained
    assert search.replace_interrupted() == [cut_off.trial]
    resumed = Sweep(sweep.spec, search)
    done = [first.params]
    while not resumed.done:
        for proposal in resumed.propose():
            done.append(proposal.params)
        for trial in list(resumed.running):
            train(resumed, trial, [0.5, 0.6, 0.7])
    assert sorted((p["learning_rate"], p["batch_size"]) for p in done) == sorted(
        itertools.product((0.1, 0.05, 0.01), (64, 128)))


def test_a_trial_that_optimises_the_loss_is_told_the_loss_of_its_kept_epoch():
    sweep = new_sweep(trials=1, metric="val_loss")
    [proposal] = sweep.propose()
    for epoch, (accuracy, loss) in enumerate([(0.5, 0.9), (0.9, 0.4), (0.8, 0.3)], start=1):
        sweep.epoch(proposal.trial, epoch, {"val_accuracy": accuracy, "val_loss": loss})
    sweep.ended(proposal.trial, "completed")
    [told] = sweep.search.study.trials
    assert told.value == 0.4  # the model is kept on accuracy, so its loss is epoch 2's


def test_a_sweep_needs_a_validation_set_and_keeps_it_fixed():
    with pytest.raises(SpaceError, match="validation_size must be above 0"):
        new_sweep(base=replace(BASE, validation_size=0))
    with pytest.raises(SpaceError, match="validation_size cannot vary"):
        new_sweep(space={**SPACE, "validation_size": {"min": 1000, "max": 5000}})
