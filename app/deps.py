"""Dependencies the routes ask for: the services `create_app` put on `app.state`."""

from __future__ import annotations

from fastapi import Request
from starlette.requests import HTTPConnection

from app.inspection import Inspector
from app.predictor import PredictionService
from app.runs import RunManager
from app.settings import Settings


def get_settings(connection: HTTPConnection) -> Settings:
    return connection.app.state.settings


def get_runs(connection: HTTPConnection) -> RunManager:
    return connection.app.state.runs


def get_predictions(request: Request) -> PredictionService:
    return request.app.state.predictions


def get_inspector(request: Request) -> Inspector:
    return request.app.state.inspector
