"""Dependencies the routes ask for: the services `create_app` put on `app.state`.

All `async def`: FastAPI runs a plain `def` dependency in its threadpool, a thread hop per
request that costs more than the whole prediction on a busy machine.
"""

from __future__ import annotations

from fastapi import Request
from starlette.requests import HTTPConnection

from app.inspection import Inspector
from app.predictor import PredictionService
from app.runs.service import RunService
from app.settings import Settings
from app.sweeps.service import SweepService


async def get_settings(connection: HTTPConnection) -> Settings:
    return connection.app.state.settings


async def get_runs(connection: HTTPConnection) -> RunService:
    return connection.app.state.runs


async def get_sweeps(connection: HTTPConnection) -> SweepService:
    return connection.app.state.sweeps


async def get_predictions(request: Request) -> PredictionService:
    return request.app.state.predictions


async def get_inspector(request: Request) -> Inspector:
    return request.app.state.inspector
