"""`mnist-lab serve`: the app under uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from app.executor import ExecutorError
from app.main import create_app, make_executor
from app.security import check_exposure
from app.settings import Settings, SettingsError
from engine.data import MnistUnavailableError, ensure_mnist


def serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(data_dir=args.data_dir, host=args.host, port=args.port,
                                     max_concurrent_runs=args.max_concurrent_runs,
                                     executor=args.executor, ray_address=args.ray_address)
        check_exposure(settings)  # refuses a non-loopback host without MNIST_LAB_TOKEN
    except (SettingsError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        ensure_mnist(settings.data_dir, progress=True)
    except MnistUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:  # before serving: a cluster that does not answer is said here, not in a traceback
        executor = make_executor(settings)
    except ExecutorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    app = create_app(settings, executor)  # the app's lifespan shuts the executor down
    where = "" if settings.executor == "local" else f", runs on the {settings.executor} executor"
    print(f"MNIST Lab on http://{settings.host}:{settings.port} (data in {settings.data_dir}{where})",
          file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port,
                log_level="warning", access_log=False, ws_max_size=1 << 20,
                timeout_graceful_shutdown=15)
    return 0
