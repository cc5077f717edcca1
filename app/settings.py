"""The server's settings: one object, read from the environment and the `serve` command line.

Every knob the server has lives here, so a test builds an isolated app with `Settings(data_dir=tmp)`
and a deployment changes behaviour with environment variables (`MNIST_LAB_*`) or flags.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.pool import default_concurrent_runs
from engine.data import resolve_data_dir

ENV_PREFIX = "MNIST_LAB_"
EXECUTORS = ("local", "ray")  # where runs train: app/executor.py, app/executor_ray.py


class SettingsError(ValueError):
    """A setting with a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    # Runs that train at once (the local process pool); None: as many as the cores fit (app/pool.py).
    max_concurrent_runs: int | None = None
    # Train/test on the first N samples of real MNIST (quick demos and tests); None = all of it.
    train_subset: int | None = None
    test_subset: int | None = None
    # Connections and requests (app/connections.py, app/middleware.py)
    max_connections: int = 1000  # open HTTP and WebSocket connections; one more gets 503
    max_header_bytes: int = 64 * 1024  # request line and headers; larger: 431
    header_timeout_s: float = 10.0  # for the request line and headers to arrive; then 408
    body_timeout_s: float = 30.0  # for the body to arrive (time spent waiting for it); then 408
    keep_alive_timeout_s: int = 5  # an idle connection between two requests is closed after this
    max_body_bytes: int = 2 * 1024 * 1024
    max_predict_batch: int = 512
    max_image_side: int = 8192  # pixels, checked from the header before decoding
    # Pixels decoded (after a JPEG's own downscaling), 4 bytes each at most: 2048 x 2048.
    max_image_pixels: int = 4_194_304
    max_concurrent_decodes: int = 2  # pictures decoded at once; more wait their turn
    # Live stream: at most this many points in one message (a finished run's curve, or a client
    # that fell behind, comes a page at a time); a client more than this many messages behind
    # gets a fresh snapshot instead of them.
    stream_page_points: int = 10_000
    stream_max_lag_messages: int = 256
    stream_interval_s: float = 0.05  # at most ~20 `iterations` messages a second per client
    stream_send_timeout_s: float = 30.0  # a client that accepts nothing this long is disconnected
    # Persistence: per-iteration losses are written as each batch arrives from the worker (about
    # 20 a second); a batch that could not be written is retried this often.
    flush_interval_s: float = 0.5
    # Workers
    worker_nice: int = 5  # training yields the CPU to the API and the page
    worker_threads: int = 1  # BLAS threads per training process (0: the library's default)
    stop_timeout_s: float = 10.0  # a worker that ignores a stop this long is terminated
    # Where runs train: "local" (a process each, on this machine) or "ray" (an actor each, on the
    # Ray cluster at ray_address; None: $RAY_ADDRESS, else the cluster `ray start` last started
    # on this machine, else a Ray instance of the server's own). docs/ray.md.
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus_per_run: float = 1.0  # CPUs Ray reserves for each run's actor
    evaluation_misclassified: int = 32
    # Who may change what (app/security.py). A token is required on any non-loopback host.
    token: str | None = dataclasses.field(default=None, repr=False)  # MNIST_LAB_TOKEN
    allowed_origins: str = ""  # comma-separated extra origins for WebSockets, writes and CORS
    rate_limit_per_s: float | None = None  # per client; None: 20 when exposed, off on loopback
    rate_limit_burst: int = 100
    # Limits against exhaustion (app/limits.py)
    max_hidden_layers: int = 8
    max_units_per_layer: int = 4096
    max_parameters: int = 20_000_000
    max_epochs: int = 200
    max_batch_size: int = 8192
    max_steps_per_run: int = 100_000  # epochs x batches per epoch (200 epochs of batch 128 fit)
    max_run_memory_mb: int = 2048  # estimated peak of one training process plus the server's share
    max_queued_runs: int = 16
    max_runs_kept: int = 500
    max_sweep_trials: int = 200  # trials of one sweep
    max_sweep_concurrent: int = 8  # trials of one sweep queued or training at once
    max_active_sweeps: int = 4  # sweeps running at once
    max_stream_clients_per_run: int = 100
    max_stream_clients: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().absolute())
        if self.max_concurrent_runs is None:
            object.__setattr__(self, "max_concurrent_runs", default_concurrent_runs(self.worker_threads))
        if self.max_concurrent_runs < 1:
            raise SettingsError(
                f"max_concurrent_runs must be at least 1, got {self.max_concurrent_runs}"
            )
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SettingsError(f"{name} must be a positive number of samples, got {value}")
        if self.stream_page_points < 1:
            raise SettingsError(f"stream_page_points must be at least 1, got {self.stream_page_points}")
        if self.executor not in EXECUTORS:
            raise SettingsError(f"executor must be one of {', '.join(EXECUTORS)}, got "
                                f"{self.executor!r}")
        if self.ray_cpus_per_run <= 0:
            raise SettingsError(f"ray_cpus_per_run must be above 0, got {self.ray_cpus_per_run}")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        if self.max_header_bytes < 1024:
            raise SettingsError(f"max_header_bytes must be at least 1024, got {self.max_header_bytes}")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be a positive number of seconds, got "
                                    f"{getattr(self, name)}")
        if self.max_connections <= self.max_stream_clients:
            raise SettingsError(
                f"max_connections ({self.max_connections}) must be larger than max_stream_clients "
                f"({self.max_stream_clients}): every WebSocket watcher holds a connection")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"the port must be between 1 and 65535 (0: any free port), got "
                                f"{self.port}")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "mnist-lab.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def model_path(self, run_id: int) -> Path:
        return self.models_dir / f"run-{run_id}.npz"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `MNIST_LAB_<FIELD>` variables (e.g. MNIST_LAB_TRAIN_SUBSET=2000), then
        `overrides` (None values are ignored, so CLI flags that were not given change nothing)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw.strip() == "" or field.name == "data_dir":
                continue
            values[field.name] = _parse(field, raw.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["data_dir"] = resolve_data_dir(values.get("data_dir"))
        return cls(**values)


def _parse(field: dataclasses.Field, raw: str) -> Any:
    kind = str(field.type)
    name = ENV_PREFIX + field.name.upper()
    try:
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError:
        expected = "a whole number" if "int" in kind else "a number"
        raise SettingsError(f"{name} must be {expected}, got {raw!r}") from None
    return raw
