"""The app factory: `create_app(settings)` wires the store, the executor, the run service, the
prediction service and the routes, and owns their lifecycle (the lifespan starts and stops them)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import engine
from app import apidocs, errors, limits, security
from app.executor import Executor, ExecutorError, LocalProcessExecutor
from app.inspection import Inspector
from app.middleware import BodySizeLimit
from app.predictor import ModelCache, PredictionService
from app.responses import CleanJSONResponse
from app.routes import pages, predict, runs, stream, sweeps
from app.runs.service import RunService
from app.settings import Settings
from app.store import Store
from app.sweeps.service import SweepService
from engine.data import load_mnist

logger = logging.getLogger("app")


def create_app(settings: Settings, executor: Executor | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.database_path)
        models = ModelCache(settings.model_path)
        inspector = Inspector(models, lambda: _test_set(settings), settings.evaluation_misclassified)
        runs = RunService(settings, store, executor or make_executor(settings),
                          forget=[models.forget, inspector.forget])
        app.state.settings = settings
        app.state.store = store
        app.state.runs = runs
        app.state.sweeps = sweeps = SweepService(settings, store, runs)
        app.state.predictions = PredictionService(models, settings.max_predict_batch,
                                                  settings.max_image_side, settings.max_image_pixels,
                                                  settings.max_concurrent_decodes)
        app.state.inspector = inspector
        await runs.start()
        await sweeps.start()  # after the runs: a sweep that goes on finds its trials interrupted
        try:
            yield
        finally:
            await sweeps.shutdown()  # first: the trials the runs' shutdown ends are redone later
            await runs.shutdown()
            store.close()

    app = FastAPI(
        title="MNIST Lab",
        version=engine.__version__,
        description="Train a from-scratch NumPy MLP on MNIST and watch it learn. "
                    "The contract in prose: docs/API.md.",
        lifespan=lifespan,
        default_response_class=CleanJSONResponse,
        docs_url=None,  # app.apidocs serves /docs without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    errors.install(app)
    apidocs.install(app)
    app.include_router(predict.router)  # first: the hot path is matched before anything else
    app.include_router(runs.router)
    app.include_router(sweeps.router)
    app.include_router(stream.router)
    app.include_router(pages.router)
    static = pages.asset_dir("static")
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       timeout_s=settings.body_timeout_s)
    limits.install(app, settings)  # WebSocket client limits
    security.install(app, settings)  # outermost: Host, rate limit, Origin, token (refuses exposure)
    return app


def make_executor(settings: Settings) -> Executor:
    """The executor `settings.executor` names. ExecutorError if it cannot start."""
    if settings.executor == "ray":
        try:  # Ray is an optional extra, imported only when runs go to a cluster
            from app.executor_ray import RayExecutor
        except ModuleNotFoundError as error:
            if error.name != "ray" and not (error.name or "").startswith("ray."):
                raise
            raise ExecutorError("the Ray executor needs Ray, an optional extra of MNIST Lab: "
                                "pip install 'mnist-lab[ray]'") from None
        return RayExecutor(settings.ray_address, cpus_per_run=settings.ray_cpus_per_run)
    return LocalProcessExecutor(settings.stop_timeout_s)


def _test_set(settings: Settings):
    data = load_mnist(settings.data_dir, fetch=False, test=settings.test_subset)
    return data.test_images.copy(), data.test_labels.copy()
