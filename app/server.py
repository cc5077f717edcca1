"""`mnist-lab serve`: the app under uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from app.main import create_app
from app.settings import Settings, SettingsError
from engine.data import MnistUnavailableError, ensure_mnist


def serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(data_dir=args.data_dir, host=args.host, port=args.port,
                                     max_concurrent_runs=args.max_concurrent_runs)
        app = create_app(settings)  # refuses a non-loopback host without MNIST_LAB_TOKEN
    except (SettingsError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        ensure_mnist(settings.data_dir, progress=True)
    except MnistUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"MNIST Lab on http://{settings.host}:{settings.port} (data in {settings.data_dir})",
          file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port,
                log_level="warning", access_log=False, ws_max_size=1 << 20,
                timeout_graceful_shutdown=15)
    return 0
