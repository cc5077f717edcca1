"""A sweep as the API shows it: its record and its trials' runs into the answer models of
app/schemas.py. A trial's status, epochs and model are its run's; its value is the metric of the
epoch whose weights its run keeps, the best on validation so far (for a completed trial, what
Optuna was told)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app import schemas
from app.runs.state import ACTIVE_STATUSES, RunState
from app.sweeps.record import SweepRecord
from app.sweeps.space import params_of


def trial(record: SweepRecord, run: RunState, kept: Mapping[str, Any] | None,
          epochs: int) -> schemas.SweepTrial:
    """`kept`: the epoch whose weights the run keeps (None before its first); `epochs`: how many
    it finished."""
    value = kept.get(record.spec.metric) if kept else None
    return schemas.SweepTrial(
        trial=run.trial, run_id=run.id, status=run.status, reason=run.reason,
        params=params_of(run.config, record.spec.space), config=dict(run.config), value=value,
        epochs=epochs, pruned=run.status == "pruned")


def spec(record: SweepRecord) -> schemas.SweepSpec:
    return schemas.SweepSpec(**record.spec.to_json())


def best(record: SweepRecord, trials: Iterable[schemas.SweepTrial]) -> schemas.SweepTrial | None:
    """The completed trial with the best value (Optuna's best trial: pruned ones never are)."""
    best_trial = None
    for candidate in trials:
        if candidate.status != "completed" or candidate.value is None:
            continue
        if best_trial is None or record.spec.better(candidate.value, best_trial.value):
            best_trial = candidate
    return best_trial


def progress(record: SweepRecord, trials: list[schemas.SweepTrial]) -> schemas.SweepProgress:
    pruned = [t for t in trials if t.pruned]
    return schemas.SweepProgress(
        planned=record.spec.trials,
        finished=sum(1 for t in trials if t.status not in (*ACTIVE_STATUSES, "interrupted")),
        running=sum(1 for t in trials if t.status in ACTIVE_STATUSES),
        pruned=len(pruned),
        failed=sum(1 for t in trials if t.status == "failed"),
        epochs_trained=sum(t.epochs for t in trials),
        epochs_pruned=sum(t.config["epochs"] - t.epochs for t in pruned),
    )


def sweep_summary(record: SweepRecord, trials: list[schemas.SweepTrial]) -> schemas.SweepSummary:
    return schemas.SweepSummary(
        id=record.id, name=record.name, status=record.status, reason=record.reason,
        created_at=record.created_at, finished_at=record.finished_at, spec=spec(record),
        progress=progress(record, trials), best_trial=best(record, trials))


def sweep(record: SweepRecord, trials: list[schemas.SweepTrial]) -> schemas.Sweep:
    return schemas.Sweep(**dict(sweep_summary(record, trials)), trials=trials)
