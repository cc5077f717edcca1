"""Sweeps: search a config space with trials that are ordinary runs. Each route is one call to
the sweep service; the answers are the models of app/schemas.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app import schemas
from app.deps import get_sweeps
from app.sweeps.service import SweepService

router = APIRouter()
Sweeps = Annotated[SweepService, Depends(get_sweeps)]
ERRORS = {404: {"model": schemas.Error}, 409: {"model": schemas.Error},
          422: {"model": schemas.Error}, 429: {"model": schemas.Error}}


@router.post("/api/sweeps", status_code=201, response_model=schemas.Sweep, responses=ERRORS,
             tags=["sweeps"])
async def create_sweep(body: schemas.SweepCreate, sweeps: Sweeps):
    """Start a sweep: its first trials are queued as runs at once, the others as trials end."""
    return await sweeps.create(body)


@router.get("/api/sweeps", response_model=schemas.SweepList, tags=["sweeps"])
async def list_sweeps(sweeps: Sweeps):
    """Every sweep, newest first, with its progress and best trial (without the trial list)."""
    return sweeps.list_sweeps()


@router.get("/api/sweeps/{sweep_id}", response_model=schemas.Sweep, responses=ERRORS,
            tags=["sweeps"])
async def get_sweep(sweep_id: int, sweeps: Sweeps):
    return sweeps.get(sweep_id)


@router.post("/api/sweeps/{sweep_id}/stop", response_model=schemas.Sweep, responses=ERRORS,
             tags=["sweeps"])
async def stop_sweep(sweep_id: int, sweeps: Sweeps):
    """Start no more trials and stop those training (they end `stopped`); 409 unless running."""
    return await sweeps.stop(sweep_id)


@router.delete("/api/sweeps/{sweep_id}", status_code=204, responses=ERRORS, tags=["sweeps"])
async def delete_sweep(sweep_id: int, sweeps: Sweeps):
    """Delete a sweep and its trials' runs (a running sweep is stopped first)."""
    await sweeps.delete(sweep_id)
    return Response(status_code=204)
