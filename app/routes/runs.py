"""Runs: create, list, inspect, steer and delete training runs; options and health. Each route is
one call to a service; the answers are the models of app/schemas.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

import engine
from app import options as server_options
from app import schemas
from app.deps import get_inspector, get_runs, get_settings
from app.inspection import MAX_MISCLASSIFIED_PAGE, MAX_WEIGHT_IMAGES, PIXELS_PATTERN, Inspector
from app.runs.service import METRICS_PAGE, RunService
from app.settings import Settings

router = APIRouter()
Runs = Annotated[RunService, Depends(get_runs)]
Models = Annotated[Inspector, Depends(get_inspector)]
MAX_WEIGHT_PAGE = 256
ERRORS = {404: {"model": schemas.Error}, 409: {"model": schemas.Error},
          422: {"model": schemas.Error}}


@router.get("/healthz", response_model=schemas.Health, tags=["meta"])
async def healthz():
    return schemas.Health(status="ok", version=engine.__version__)


@router.get("/api/options", response_model=schemas.Options, response_model_exclude_unset=True,
            tags=["meta"])  # a field's bounds hold only the keys that apply to it
async def options(settings: Annotated[Settings, Depends(get_settings)]):
    """Presets, the choices and bounds of each config field, the server's limits, and the
    `mnist-lab train` option of each config field."""
    return server_options.describe(settings)


@router.post("/api/runs", status_code=201, response_model=schemas.Run,
             responses={**ERRORS, 429: {"model": schemas.Error}}, tags=["runs"])
async def create_run(body: schemas.RunConfig, runs: Runs):
    """Queue a training run; it starts as soon as a training slot is free. Each field's bounds
    are this server's (the schema says them); a run may still be too large as a whole (its
    parameters, steps or memory, GET /api/options `limits`): 422 with what to make smaller."""
    return await runs.create(body)


@router.get("/api/runs", response_model=schemas.RunList, tags=["runs"])
async def list_runs(runs: Runs):
    """Every run, newest first (without per-epoch metrics)."""
    return runs.list_runs()


@router.get("/api/runs/{run_id}", response_model=schemas.Run, responses=ERRORS, tags=["runs"])
async def get_run(run_id: int, runs: Runs):
    return runs.get(run_id)


@router.patch("/api/runs/{run_id}", response_model=schemas.Run, responses=ERRORS, tags=["runs"])
async def edit_run(run_id: int, body: schemas.RunDetails, runs: Runs):
    """Set any of a run's name, tags and notes, whatever its status; a field left out keeps its
    value, null clears a name or notes."""
    return runs.edit(run_id, body)


@router.delete("/api/runs/{run_id}", status_code=204, responses=ERRORS, tags=["runs"])
async def delete_run(run_id: int, runs: Runs):
    """Delete a run, its metrics and its model; a queued, running or paused run is stopped first."""
    await runs.delete(run_id)
    return Response(status_code=204)


@router.post("/api/runs/{run_id}/step", response_model=schemas.Run, responses=ERRORS,
             tags=["runs"])
async def step_run(run_id: int, runs: Runs,
                   body: Annotated[schemas.StepRequest | None, Body()] = None):
    """Train a paused run exactly `steps` iterations (default 1), then pause it again; answers
    once it has paused (every step stored and streamed). 409 unless the run is paused."""
    return await runs.step(run_id, (body or schemas.StepRequest()).steps)


@router.post("/api/runs/{run_id}/stop", response_model=schemas.Run, responses=ERRORS, tags=["runs"])
async def stop_run(run_id: int, runs: Runs):
    """Stop a queued, running or paused run; 409 when it has already ended."""
    return await runs.stop(run_id)


@router.post("/api/runs/{run_id}/pause", response_model=schemas.Run, responses=ERRORS,
             tags=["runs"])
async def pause_run(run_id: int, runs: Runs):
    """Pause a running run; 409 when its status does not allow it."""
    return await runs.pause(run_id)


@router.post("/api/runs/{run_id}/resume", response_model=schemas.Run, responses=ERRORS,
             tags=["runs"])
async def resume_run(run_id: int, runs: Runs):
    """Resume a paused run; 409 when its status does not allow it."""
    return await runs.resume(run_id)


@router.get("/api/runs/{run_id}/metrics", response_model=schemas.Metrics, tags=["runs"], responses={
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **ERRORS})
async def metrics(run_id: int, runs: Runs,
                  format: Annotated[Literal["json", "csv"], Query()] = "json",
                  after: Annotated[int, Query(ge=-1, le=schemas.MAX_ID,
                                              description="only steps after this one")] = -1,
                  limit: Annotated[int, Query(ge=1, le=METRICS_PAGE, description=(
                      "at most this many steps; `next_after` (and the Link header) says where "
                      "the rest start"))] = METRICS_PAGE):
    """The stored per-iteration losses after `after` (at most `limit`) and every stored
    per-epoch metric, as JSON or CSV."""
    page = await runs.metrics(run_id, after, limit, format)
    headers = {}
    if page.next_after is not None:
        headers["Link"] = (f'</api/runs/{run_id}/metrics?format={format}&after={page.next_after}'
                           f'&limit={limit}>; rel="next"')
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="run-{run_id}-metrics.csv"'
    return StreamingResponse(page.body, headers=headers,
                             media_type="text/csv" if format == "csv" else "application/json")


@router.get("/api/runs/{run_id}/layers", response_model=schemas.LayersHistory, responses=ERRORS,
            tags=["runs"])
async def layers(run_id: int, runs: Runs,
                 after: Annotated[int, Query(ge=-1, le=schemas.MAX_ID,
                                             description="only steps after this one")] = -1,
                 limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100):
    """The layer statistics of the watched steps, in step order, a page at a time (at most
    `limit` snapshots and about 4 MB): ask again with `after` = the last step while `more`."""
    return await runs.layers(run_id, after, limit)


@router.get("/api/runs/{run_id}/hidden", response_model=schemas.HiddenUnits, responses=ERRORS,
            tags=["runs"])
async def hidden_units(run_id: int, runs: Runs, models: Models,
                       pixels: Annotated[str, Query(min_length=1, max_length=2048, description=(
                           "the 784 grey values (0..255, row-major, ink bright) of a digit as "
                           "base64url: /predict's `input` times 255"),
                           json_schema_extra={"pattern": PIXELS_PATTERN})],
                       top: Annotated[int, Query(ge=1, le=64)] = 8):
    """Which units of the first hidden layer fire for a digit, strongest first, with their
    weights as images: the run's saved model (the epoch selected on validation)."""
    return await run_in_threadpool(models.hidden_units, runs.with_model(run_id), pixels, top)


@router.get("/api/runs/{run_id}/model", response_class=FileResponse, tags=["runs"], responses={
    200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    **ERRORS})
async def download_model(run_id: int, runs: Runs):
    """The weights as the engine's `.npz` (load with engine.model.load_model); 409 until the
    run's first epoch finished."""
    return FileResponse(runs.model_file(run_id), media_type="application/octet-stream",
                        filename=f"mnist-lab-run-{run_id}.npz")


@router.get("/api/runs/{run_id}/evaluation", response_model=schemas.Evaluation, responses=ERRORS,
            tags=["runs"])
async def evaluation(run_id: int, runs: Runs, models: Models):
    """Confusion matrix, per-class accuracy and misclassified test digits of the saved model."""
    return await run_in_threadpool(models.evaluation, runs.with_model(run_id))


@router.get("/api/runs/{run_id}/misclassified", response_model=schemas.MisclassifiedPage,
            responses=ERRORS, tags=["runs"])
async def misclassified(
        run_id: int, runs: Runs, models: Models,
        true: Annotated[int | None, Query(ge=0, le=9, description="only this true digit")] = None,
        predicted: Annotated[int | None, Query(ge=0, le=9, description="only read as this")] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_MISCLASSIFIED_PAGE)] = 32):
    """The misclassified test digits, most confident mistake first, a page at a time."""
    return await run_in_threadpool(models.mistakes, runs.with_model(run_id), offset, limit, true,
                                   predicted)


@router.get("/api/runs/{run_id}/weights", response_model=schemas.Weights, responses=ERRORS,
            tags=["runs"])
async def weights(run_id: int, runs: Runs, models: Models,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                  limit: Annotated[int, Query(ge=1, le=MAX_WEIGHT_PAGE)] = MAX_WEIGHT_IMAGES):
    """The first layer's weights, one 28x28 image per hidden unit, `limit` units from `offset`."""
    return await run_in_threadpool(models.weights, runs.with_model(run_id), offset, limit)


@router.get("/api/active-model", response_model=schemas.ActiveModel, tags=["models"])
async def get_active_model(runs: Runs):
    """The model /predict uses by default."""
    return runs.describe_active_model()


@router.put("/api/active-model", response_model=schemas.ActiveModel, responses=ERRORS,
            tags=["models"])
async def put_active_model(body: schemas.ActiveModelChoice, runs: Runs):
    """Make a run's model the default for /predict (null: back to the best run)."""
    return runs.set_active_model(body.run_id)
