"""One sweep, driven from outside: the ask-and-tell loop, written once for both drivers.

    sweep = Sweep(spec, Search(spec))
    while not sweep.done:
        for proposal in sweep.propose():      # trials to start now (up to max_concurrent)
            start training proposal.config
        ... as a trial trains:
        reason = sweep.epoch(trial, epoch, metrics)   # after each epoch: a reason to prune, or None
        sweep.ended(trial, status)                     # once it ended: completed, pruned, ...

`Sweep` never trains and never waits: the server's SweepService (trials are runs of the run
service, on any executor) and `mnist-lab sweep` (trials trained in the same process, one after
another) call it as their trials move. It decides which trials start, asks the pruner after every
epoch (a pruned trial is told PRUNED at once: its run then stops and ends `pruned`), and tells
Optuna how each trial ended: completed with the metric of the epoch whose model it keeps (the best
on validation accuracy, then loss, as the trainer keeps it), failed or stopped as FAIL. Its tests
drive it with plain values (tests/app/test_sweep.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.sweeps.search import ASHA_REDUCTION, Proposal, Search
from app.sweeps.spec import SweepSpec
from engine.events import kept_epoch

# Why a pruner stopped a trial, in words: {metric}, {value}, {epoch}.
PRUNED_BECAUSE = {
    "median": "its {metric} ({value:.4f}) was worse than the median of the other trials' after "
              "that many epochs",
    "asha": f"its {{metric}} ({{value:.4f}}) was not in the best 1/{ASHA_REDUCTION} of the trials "
            "that reached epoch {epoch} (successive halving, ASHA)",
}


class Sweep:
    def __init__(self, spec: SweepSpec, search: Search):
        self.spec = spec
        self.search = search
        self.running: dict[int, Proposal] = {}  # trials asked for and not ended
        self.kept_epoch: dict[int, Mapping[str, Any]] = {}  # each running trial's kept epoch
        self.pruned: set[int] = set()  # running trials told PRUNED, whose runs are still ending
        self.counted = search.counted()  # trials ended that count toward spec.trials
        self.stopping = False

    @property
    def done(self) -> bool:
        """Nothing trains and nothing more will: every trial ran, or the sweep was stopped."""
        return not self.running and (self.stopping or self.counted >= self.spec.trials)

    def propose(self) -> list[Proposal]:
        """The trials to start now: as many as `max_concurrent` and the trials left allow."""
        proposals = []
        while (not self.stopping and len(self.running) < self.spec.max_concurrent
               and self.counted + len(self.running) < self.spec.trials):
            proposal = self.search.ask()
            self.running[proposal.trial] = proposal
            proposals.append(proposal)
        return proposals

    def epoch(self, trial: int, epoch: int, metrics: Mapping[str, Any]) -> str | None:
        """A trial finished `epoch` with `metrics` (an EpochEvent's fields): the reason to prune
        it, or None to let it train on."""
        if trial not in self.running or trial in self.pruned:
            return None
        value = float(metrics[self.spec.metric])
        kept = self.kept_epoch.get(trial)
        if kept_epoch([kept, metrics] if kept else [metrics]) is metrics:
            self.kept_epoch[trial] = metrics
        if not self.search.report(trial, epoch, value) or self.spec.pruner == "none":
            return None
        epochs = self.running[trial].config.epochs
        if epoch >= epochs:  # its last epoch: it completes anyway
            return None
        self.search.prune(trial)
        self.pruned.add(trial)
        because = PRUNED_BECAUSE[self.spec.pruner].format(metric=self.spec.metric, value=value,
                                                          epoch=epoch)
        return f"pruned after epoch {epoch} of {epochs} by the sweep's {self.spec.pruner} pruner: {because}"

    def ended(self, trial: int, status: str) -> None:
        """A trial's run ended with `status` (a run status). `interrupted` (the server stopped)
        is left for the next start to ask again (`Search.replace_interrupted`)."""
        proposal = self.running.pop(trial, None)
        if proposal is None:
            return
        kept = self.kept_epoch.pop(trial, None)
        value = None if kept is None else float(kept[self.spec.metric])
        pruned = trial in self.pruned
        self.pruned.discard(trial)
        if status == "interrupted":
            return
        self.counted += 1
        if pruned:
            return  # told already
        if status == "completed" and value is not None:
            self.search.complete(trial, value)
        elif status == "pruned":
            self.search.prune(trial)
        else:  # failed (diverged, say), or stopped by a person or with the sweep
            self.search.fail(trial)

    def stop(self) -> None:
        """Start no more trials (the driver stops the running ones; they end as stopped)."""
        self.stopping = True
