"""A sweep's optimiser: one Optuna study, asked for trials and told how they went.

Ask and tell only (`study.ask()`, `trial.report(value, epoch)`, `trial.should_prune()`,
`study.tell(...)`): Optuna proposes configurations and judges epochs, it never trains anything.
What samples and what prunes, per `SweepSpec`:

    method  grid    GridSampler over every field's values (the grid's order shuffled by the seed)
            random  RandomSampler
            tpe     TPESampler (constant liar, so trials that train at once get different
                    proposals), random for its first max(2, min(10, trials // 3)) trials
    pruner  median  MedianPruner: after 3 trials finished, a trial whose metric at an epoch is
                    worse than the median of the others' at that epoch stops
            asha    SuccessiveHalvingPruner (asynchronous successive halving): rungs at 1, 3, 9...
                    epochs, where only the best third of the trials that got there go on
            none    every trial trains all its epochs

The study lives in an Optuna storage: in memory for `mnist-lab sweep`, a journal file per sweep
for the server (app/sweeps/journal.py), which is all a sampler needs to go on after a restart. A
trial that was training when the server stopped is told FAIL and asked again with the same
parameters (`enqueue_trial`, marked with the number it replaces), so a sweep still trains the
trials it was asked for.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from app.sweeps.space import Choice, configure, decode, encode, grid_of
from app.sweeps.spec import SweepSpec
from engine.config import TrainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study's progress is ours to report
REPLACES = "replaces"  # user attr of a trial asked again for one a restart interrupted
MEDIAN_STARTUP_TRIALS = 3
ASHA_REDUCTION = 3


@dataclass(frozen=True)
class Proposal:
    """A trial to train: its number in the study, the swept fields' values, the whole config."""

    trial: int
    params: dict[str, Any]
    config: TrainConfig


def tpe_startup_trials(trials: int) -> int:
    return max(2, min(10, trials // 3))


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    if spec.method == "grid":
        return optuna.samplers.GridSampler(grid_of(spec.space), seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup_trials(spec.trials),
                                      constant_liar=True)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=0)
    if spec.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ASHA_REDUCTION)
    return optuna.pruners.NopPruner()


class Search:
    def __init__(self, spec: SweepSpec, storage: optuna.storages.BaseStorage | None = None,
                 study_name: str = "sweep"):
        self.spec = spec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.create_study(
                storage=storage, study_name=study_name, direction=spec.direction,
                sampler=optuna.samplers.RandomSampler(), pruner=make_pruner(spec),
                load_if_exists=True)
            # Seeded past the trials a previous life of this sweep asked, so that a sweep resumed
            # after a restart does not propose its random trials again. Not a grid: its seed
            # orders the grid's points, which its trials name by their index.
            asked = 0 if spec.method == "grid" else len(self.study.get_trials(deepcopy=False))
            self.study.sampler = make_sampler(spec, spec.seed + asked)
        self._trials: dict[int, optuna.Trial] = {}

    # --- ask ----------------------------------------------------------------------------------
    def ask(self) -> Proposal:
        trial = self.study.ask()
        self._trials[trial.number] = trial
        grid = grid_of(self.spec.space) if self.spec.method == "grid" else None
        params = {}
        for name, param in self.spec.space.items():
            if grid is not None:
                value = trial.suggest_categorical(name, grid[name])
            elif isinstance(param, Choice):
                value = trial.suggest_categorical(name, [encode(v) for v in param.values])
            elif param.integer:
                value = trial.suggest_int(name, int(param.low), int(param.high), log=param.log,
                                          step=int(param.step or 1))
            else:
                value = trial.suggest_float(name, param.low, param.high, log=param.log,
                                            step=param.step)
            params[name] = decode(name, value)
        return Proposal(trial.number, params, configure(self.spec.base, params))

    # --- tell ---------------------------------------------------------------------------------
    def report(self, number: int, epoch: int, value: float) -> bool:
        """Record the metric after `epoch`; whether the pruner would stop the trial now."""
        trial = self._trials[number]
        trial.report(value, epoch)
        return trial.should_prune()

    def complete(self, number: int, value: float) -> None:
        self._tell(number, TrialState.COMPLETE, value)

    def prune(self, number: int) -> None:
        self._tell(number, TrialState.PRUNED)

    def fail(self, number: int) -> None:
        self._tell(number, TrialState.FAIL)

    def _tell(self, number: int, state: TrialState, value: float | None = None) -> None:
        try:
            self.study.tell(number, value, state=state, skip_if_finished=True)
        except (RuntimeError, KeyError):
            # GridSampler.after_trial, which runs before the state is stored (in a finally), calls
            # study.stop() once the grid is done, which only works inside study.optimize
            # (optuna/optuna#5141), and reads the grid point of the last trial, which a trial asked
            # again after a restart has not (its parameters are fixed). The state is stored all
            # the same; only a tell that did not store it is an error.
            told = self.study.get_trials(deepcopy=False)[number].state
            if self.spec.method != "grid" or told != state:
                raise
        self._trials.pop(number, None)

    # --- after a restart ------------------------------------------------------------------------
    def replace_interrupted(self) -> list[int]:
        """Trials left running by a previous life (their runs were interrupted): each one is asked
        again with the same parameters, then told FAIL. Returns their numbers."""
        trials = self.study.get_trials(deepcopy=False)
        replaced = {t.user_attrs.get(REPLACES) for t in trials}
        interrupted = []
        for trial in trials:
            if trial.state != TrialState.RUNNING or trial.number in self._trials:
                continue
            if trial.number not in replaced and set(trial.params) == set(self.spec.space):
                # First the replacement, then the FAIL: a crash between the two leaves the trial
                # running, and the next start sees its replacement and only tells it.
                self.study.enqueue_trial(dict(trial.params), user_attrs={REPLACES: trial.number})
            self._tell(trial.number, TrialState.FAIL)
            interrupted.append(trial.number)
        return interrupted

    def counted(self) -> int:
        """Trials that finished and count toward the sweep's `trials`: those a restart
        interrupted do not (they are asked again)."""
        trials = self.study.get_trials(deepcopy=False)
        replaced = {t.user_attrs.get(REPLACES) for t in trials}
        return sum(1 for t in trials if t.state.is_finished() and t.number not in replaced)

    def intermediate_values(self) -> Mapping[int, Mapping[int, float]]:
        """Each trial's reported metric by epoch (for checks; the runs hold the same numbers)."""
        return {t.number: dict(t.intermediate_values) for t in self.study.get_trials(deepcopy=False)}

    def states(self) -> dict[int, str]:
        """Each trial's state in the study: RUNNING, COMPLETE, PRUNED, FAIL or WAITING."""
        return {t.number: t.state.name for t in self.study.get_trials(deepcopy=False)}
