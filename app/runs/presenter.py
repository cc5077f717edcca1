"""A run as the API shows it: `RunState` (plus what only the live run or the store knows) into
the answer models of app/schemas.py, progress and ETA included."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from app import schemas
from app.broadcast import dumps, point_json
from app.protocol import Point
from app.runs.state import RunState
from engine.data.split import training_samples
from engine.digits import TEST_SAMPLES, TRAIN_SAMPLES
from engine.events import EPOCH_FIELDS


def progress(run: RunState, train_samples: int) -> schemas.Progress:
    """How far the run is. `train_samples`: the digits an epoch trains on, for the steps of a
    run that has not started yet."""
    config = run.config
    steps_per_epoch = run.steps_per_epoch or math.ceil(max(train_samples, 1) / config["batch_size"])
    steps_total = steps_per_epoch * config["epochs"]
    steps_done = run.step + 1
    rate = run.samples_per_second if run.status == "running" else None
    eta = None
    if rate:
        eta = max(0, steps_total - steps_done) * config["batch_size"] / rate
    return schemas.Progress(epoch=run.epoch, epochs=config["epochs"], step=steps_done,
                            steps_per_epoch=steps_per_epoch, steps_total=steps_total,
                            samples_per_second=rate, eta_s=eta)


def divergence(run: RunState) -> schemas.Divergence | None:
    if run.diverged_step is None:
        return None
    return schemas.Divergence(step=run.diverged_step, loss=run.diverged_loss)


class RunPresenter:
    """Builds the answers about runs; knows how many digits this server trains on."""

    def __init__(self, train_subset: int | None, test_subset: int | None = None):
        self.train_subset = train_subset
        self.test_samples = min(test_subset or TEST_SAMPLES, TEST_SAMPLES)

    def samples(self, run: RunState) -> schemas.Samples:
        """The run's digits, from its config and this server's slice of MNIST (a run stored
        before validation was held out has no validation_size: it trained on all)."""
        held_out = run.config.get("validation_size", 0)
        return schemas.Samples(
            train=training_samples(TRAIN_SAMPLES, held_out, self.train_subset),
            validation=held_out, test=self.test_samples)

    def summary(self, run: RunState, active_run_id: int | None, now: float,
                unstored: schemas.Unstored | None = None) -> schemas.RunSummary:
        """`now`: a monotonic clock reading, for the duration of a run that is training;
        `unstored`: what the run reported that is not stored yet."""
        duration = run.duration_s
        if run.active and run.started_clock is not None:
            duration = now - run.started_clock
        samples = self.samples(run)
        return schemas.RunSummary(
            id=run.id, status=run.status, config=dict(run.config), created_at=run.created_at,
            started_at=run.started_at, finished_at=run.finished_at, duration_s=duration,
            reason=run.reason, progress=progress(run, samples.train), samples=samples,
            best_val_accuracy=run.best_val_accuracy, test_accuracy=run.test_accuracy,
            test_loss=run.test_loss, model_epoch=run.model_epoch, stepping=run.stepping,
            has_model=run.has_model, is_active_model=active_run_id == run.id,
            name=run.name, tags=list(run.tags), notes=run.notes, diverged=divergence(run),
            sweep_id=run.sweep_id, trial=run.trial,
            unstored=unstored,
        )

    def run(self, run: RunState, epochs: Sequence[Mapping[str, Any]], active_run_id: int | None,
            now: float, unstored: schemas.Unstored | None = None) -> schemas.Run:
        summary = self.summary(run, active_run_id, now, unstored)
        return schemas.Run(**dict(summary), epochs=[schemas.Epoch(**epoch) for epoch in epochs])

    def run_list(self, runs: Iterable[RunState], active_run_id: int | None, revision: int,
                 now: float, unstored: Callable[[int], schemas.Unstored | None] = lambda _: None,
                 ) -> schemas.RunList:
        return schemas.RunList(runs=[self.summary(run, active_run_id, now, unstored(run.id))
                                     for run in runs],
                               active_model_run_id=active_run_id, revision=revision)


# --- GET /api/runs/{id}/metrics: made a slice of steps at a time (`slices`, each formatted by one
# of the functions below in a worker thread) while it is sent -----------------------------------------
def points_json(points: Sequence[Point]) -> str:
    """Points as the items of a JSON array (no brackets)."""
    return ",".join(point_json(*point) for point in points)


async def metrics_json(slices: AsyncIterator[str], epochs: Sequence[Mapping[str, Any]],
                       next_after: int | None) -> AsyncIterator[str]:
    """The `Metrics` answer, its iterations from `slices` (made by `points_json`)."""
    yield '{"iterations":['
    separator = ""
    async for text in slices:
        yield separator + text
        separator = ","
    yield f'],"epochs":{dumps(list(epochs))},"next_after":{dumps(next_after)}}}'


CSV_FIELDS = EPOCH_FIELDS[1:]  # an epoch's metrics, but "epoch": a column already


def csv_rows(points: Sequence[Point], epochs: Mapping[int, Mapping[str, Any]],
             epoch_ends: Mapping[int, int]) -> str:
    """One CSV row per step; an epoch's metrics on the step that ended it (`epoch_ends`: the last
    stored step of each epoch)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for step, epoch, loss in points:
        ended = epochs.get(epoch) if epoch_ends.get(epoch) == step else None
        writer.writerow([step, epoch, loss, *((ended[f] if ended else "") for f in CSV_FIELDS)])
    return out.getvalue()


async def metrics_csv(slices: AsyncIterator[str]) -> AsyncIterator[str]:
    """The CSV export: a header, then the rows from `slices` (made by `csv_rows`)."""
    yield ",".join(["step", "epoch", "loss", *CSV_FIELDS]) + "\n"
    async for text in slices:
        yield text


def layers_history(bodies: Sequence[str], more: bool) -> schemas.LayersHistory:
    """Stored layer statistics (each the JSON of a LayersEvent) as the API's answer."""
    return schemas.LayersHistory(
        snapshots=[schemas.LayersSnapshot(**json.loads(body)) for body in bodies], more=more)
