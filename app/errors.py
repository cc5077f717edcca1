"""How failures become answers: every error is `{"detail": "<a sentence>"}` with a 4xx status,
validation errors add the structured `errors` list, and nothing a client sends causes a 500."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.predictor import CorruptModel, InputError, NoModel
from app.responses import CleanJSONResponse
from app.runs.errors import Conflict, NotSettled, RunNotFound
from app.store import StorageUnavailable, storage_problem
from app.sweeps.service import SweepNotFound
from app.sweeps.space import SpaceError
from engine.config import SHOWN_CHARACTERS, ConfigError, shown

logger = logging.getLogger("app.errors")


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """FastAPI's validation errors → one readable sentence and a JSON-safe list."""
    sentences, cleaned = [], []
    for error in errors:
        location = [_clipped(str(part)) for part in error.get("loc", ()) if part != "body"]
        kind = error.get("type", "")
        message = error.get("msg", "invalid value")
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            sentences.append(f"the request body is not valid JSON ({reason}); send a JSON object"
                             if reason else "the request body is not valid JSON; send a JSON object")
        elif kind == "missing" and not location:
            sentences.append("the request needs a JSON body; send a JSON object")
        elif kind == "extra_forbidden":
            sentences.append(f"{'.'.join(location)} is not a known field")
        else:
            where = ".".join(location) or "the request body"
            sentences.append(f"{where}: {message[0].lower() + message[1:] if message else message}")
        cleaned.append({"loc": [_clipped(part) if isinstance(part, str) else part
                                for part in error.get("loc", ())], "msg": message, "type": kind})
    return "; ".join(sentences), cleaned


def _clipped(text: str) -> str:
    """A name the client sent (an unknown field's), cut short: never echoed back whole."""
    return text if len(text) <= SHOWN_CHARACTERS else shown(text)


ALL_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this request's path (Starlette's own 405 names only those
    of the first route that matched the path, and one path may have several routes)."""
    routes = request.app.router.routes
    return [method for method in ALL_METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in routes)]


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, error: RequestValidationError):
        detail, errors = describe_validation(list(error.errors()))
        return CleanJSONResponse(status_code=422, content={"detail": detail, "errors": errors})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        detail = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404 and detail == "Not Found":
            detail = f"there is no {request.url.path}; the API is described at /docs"
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            allowed = allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = (f"{request.method} is not allowed on {request.url.path}; it takes "
                      f"{', '.join(allowed)} (see /docs)")
        elif error.status_code == 400 and detail == "There was an error parsing the body":
            detail = ("the request body cannot be read (JSON must be UTF-8 text, a form must be "
                      "well formed); send a JSON object")
        return CleanJSONResponse(status_code=error.status_code, content={"detail": detail},
                                 headers=headers)

    def plain(status: int):
        async def handler(request: Request, error: Exception):
            return CleanJSONResponse(status_code=status, content={"detail": str(error)})
        return handler

    app.add_exception_handler(RunNotFound, plain(404))
    app.add_exception_handler(SweepNotFound, plain(404))
    app.add_exception_handler(SpaceError, plain(422))
    app.add_exception_handler(Conflict, plain(409))
    app.add_exception_handler(NoModel, plain(409))
    app.add_exception_handler(CorruptModel, plain(409))
    app.add_exception_handler(ConfigError, plain(422))
    app.add_exception_handler(InputError, plain(422))

    async def storage(request: Request, error: Exception):
        if isinstance(error, StorageUnavailable):
            problem, error = error.problem, error.error
        else:
            problem = storage_problem(error)
        if problem is None:
            return await unexpected(request, error)
        logger.error("cannot write to the data dir: %s", error)
        data_dir = request.app.state.settings.data_dir
        return CleanJSONResponse(status_code=507, content={"detail": (
            f"the server cannot write to its data dir ({data_dir}): {problem} ({error}). Nothing "
            "already stored was changed, and what runs reported meanwhile is kept and stored once "
            "it works again; free some space or make the data dir writable, then try again")})

    app.add_exception_handler(sqlite3.Error, storage)
    app.add_exception_handler(OSError, storage)
    app.add_exception_handler(StorageUnavailable, storage)

    async def not_settled(request: Request, error: Exception):
        return CleanJSONResponse(status_code=503, content={"detail": str(error)},
                                 headers={"Retry-After": "5"})

    app.add_exception_handler(NotSettled, not_settled)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return CleanJSONResponse(status_code=500, content={
            "detail": "the server hit an internal error; its log has the details"})
