"""Runs: create, list, inspect, steer and delete training runs; options and health."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

import engine
from app import limits, schemas, security
from app.deps import get_inspector, get_runs, get_settings
from app.inspection import Inspector
from app.responses import CleanJSONResponse
from app.runs import Conflict, RunManager
from app.settings import Settings
from engine.config import CHOICES
from engine.presets import PRESETS

router = APIRouter()
Runs = Annotated[RunManager, Depends(get_runs)]
ERRORS = {404: {"model": schemas.Error}, 409: {"model": schemas.Error},
          422: {"model": schemas.Error}}


@router.get("/healthz", response_model=schemas.Health, tags=["meta"])
async def healthz():
    return CleanJSONResponse({"status": "ok", "version": engine.__version__})


@router.get("/api/options", response_model=schemas.Options, tags=["meta"])
async def options(settings: Annotated[Settings, Depends(get_settings)]):
    """Presets, the choices and bounds of each config field, and the server's limits."""
    return CleanJSONResponse({
        "presets": [{"name": p.name, "description": p.description, "config": p.config.to_dict()}
                    for p in PRESETS.values()],
        "choices": {name: list(choices) for name, choices in CHOICES.items()},
        "fields": limits.field_bounds(settings),
        "limits": settings.limits(),
        "auth_required": security.auth_required(settings),
    })


@router.post("/api/runs", status_code=201, response_model=schemas.Run, responses=ERRORS,
             tags=["runs"])
async def create_run(body: schemas.RunConfig, runs: Runs,
                     settings: Annotated[Settings, Depends(get_settings)]):
    """Queue a training run; it starts as soon as a training slot is free."""
    config = limits.run_config(body.model_dump(exclude_unset=True), settings)  # 422s
    limits.admit_run(config, settings, [run["status"] for run in runs.list_runs()["runs"]])
    return CleanJSONResponse(await runs.create(config), status_code=201)


@router.get("/api/runs", response_model=schemas.RunList, tags=["runs"])
async def list_runs(runs: Runs):
    """Every run, newest first (without per-epoch metrics)."""
    return CleanJSONResponse(runs.list_runs())


@router.get("/api/runs/{run_id}", response_model=schemas.Run, responses=ERRORS, tags=["runs"])
async def get_run(run_id: int, runs: Runs):
    return CleanJSONResponse(runs.describe(run_id))


@router.delete("/api/runs/{run_id}", status_code=204, responses=ERRORS, tags=["runs"])
async def delete_run(run_id: int, runs: Runs, inspector: Annotated[Inspector, Depends(get_inspector)]):
    """Delete a run, its metrics and its model; a queued, running or paused run is stopped first."""
    await runs.delete(run_id)
    inspector.forget(run_id)
    inspector.models.forget(run_id)
    return Response(status_code=204)


@router.post("/api/runs/{run_id}/{action}", response_model=schemas.Run, responses=ERRORS,
             tags=["runs"])
async def control_run(run_id: int, action: Literal["stop", "pause", "resume"], runs: Runs):
    """Stop, pause or resume; 409 when the run's status does not allow it."""
    handler = {"stop": runs.stop, "pause": runs.pause, "resume": runs.resume}[action]
    return CleanJSONResponse(await handler(run_id))


@router.get("/api/runs/{run_id}/metrics", response_model=schemas.Metrics, responses=ERRORS,
            tags=["runs"])
async def metrics(run_id: int, runs: Runs,
                  format: Annotated[Literal["json", "csv"], Query()] = "json",
                  after: Annotated[int, Query(ge=-1, le=schemas.SQLITE_INTEGER_MAX,
                                              description="only steps after this one")] = -1):
    """Every per-iteration loss and every per-epoch metric, as JSON or CSV."""
    runs.row(run_id)
    runs.flush(run_id)
    iterations, epochs = await run_in_threadpool(runs.metrics, run_id, after)
    if format == "csv":
        return Response(_csv(iterations, epochs), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="run-{run_id}-metrics.csv"'})
    return CleanJSONResponse({
        "iterations": [{"step": s, "epoch": e, "loss": loss} for s, e, loss in iterations],
        "epochs": epochs,
    })


def _csv(iterations, epochs) -> str:
    """One row per step; the epoch's metrics on the step that ended it."""
    fields = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "duration_s",
              "learning_rate")
    by_epoch = {epoch["epoch"]: epoch for epoch in epochs}
    last_step = {epoch: step for step, epoch, _ in iterations}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "epoch", "loss", *fields])
    for step, epoch, loss in iterations:
        ended = by_epoch.get(epoch) if last_step[epoch] == step else None
        writer.writerow([step, epoch, loss, *((ended[f] if ended else "") for f in fields)])
    return out.getvalue()


@router.get("/api/runs/{run_id}/model", responses={200: {"content": {"application/octet-stream": {}}},
                                                   **ERRORS}, tags=["runs"])
async def download_model(run_id: int, runs: Runs, settings: Annotated[Settings, Depends(get_settings)]):
    """The weights as the engine's `.npz` (load with engine.model.load_model)."""
    row = runs.row(run_id)
    path = settings.model_path(run_id)
    if not row["has_model"] or not path.is_file():
        return CleanJSONResponse(status_code=404, content={"detail": (
            f"run {run_id} has no model yet (status {row['status']}); a model is saved when its "
            "first epoch finishes")})
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"mnist-lab-run-{run_id}.npz")


@router.get("/api/runs/{run_id}/evaluation", response_model=schemas.Evaluation, responses=ERRORS,
            tags=["runs"])
async def evaluation(run_id: int, runs: Runs, inspector: Annotated[Inspector, Depends(get_inspector)]):
    """Confusion matrix, per-class accuracy and misclassified test digits of the saved model."""
    _require_model(runs, run_id)
    result = await run_in_threadpool(inspector.evaluation, run_id)
    return _or_no_model(result, run_id)


@router.get("/api/runs/{run_id}/weights", response_model=schemas.Weights, responses=ERRORS,
            tags=["runs"])
async def weights(run_id: int, runs: Runs, inspector: Annotated[Inspector, Depends(get_inspector)]):
    """The first layer's weights, one 28x28 image per hidden unit (at most 64)."""
    _require_model(runs, run_id)
    result = await run_in_threadpool(inspector.weights, run_id)
    return _or_no_model(result, run_id)


def _require_model(runs: RunManager, run_id: int) -> None:
    row = runs.row(run_id)
    if not row["has_model"]:
        raise Conflict(f"run {run_id} has no model yet (status {row['status']}); a model is "
                       "saved when its first epoch finishes")


def _or_no_model(result, run_id: int):
    if result is None:
        raise Conflict(f"the model file of run {run_id} is missing or unreadable")
    return CleanJSONResponse(result)


@router.get("/api/active-model", response_model=schemas.ActiveModel, tags=["models"])
async def get_active_model(runs: Runs):
    """The model /predict uses by default."""
    return CleanJSONResponse(runs.describe_active_model())


@router.put("/api/active-model", response_model=schemas.ActiveModel, responses=ERRORS,
            tags=["models"])
async def put_active_model(body: schemas.ActiveModelChoice, runs: Runs):
    """Make a run's model the default for /predict (null: back to the best run)."""
    return CleanJSONResponse(runs.set_active_model(body.run_id))
