"""Limits against exhaustion: what one request, one run or one client may ask of the server.

Every limit is a field of `Settings` (environment `MNIST_LAB_<FIELD>`), so a deployment can raise
or lower it. A request over a limit is refused before anything starts, with a 4xx whose message
says what was asked, what is allowed and what to do. (Body size, image size and batch predict
size are enforced where the bytes arrive: `app.middleware` and `app.predictor`.)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from starlette.exceptions import HTTPException

from app.settings import Settings
from engine import config as engine_config
from engine.config import ConfigError, TrainConfig, shown
from engine.data.split import training_samples
from engine.digits import TRAIN_SAMPLES
from engine.footprint import estimated_memory_bytes, parameter_count

# What the server itself holds per step of a run: the live feed keeps every step (an int and its
# JSON, 116 bytes measured with tracemalloc), and a `/metrics` answer or a watcher's snapshot
# being built holds the steps again as Python objects and text for a while; rounded up.
SERVER_BYTES_PER_STEP = 512


class LimitExceeded(HTTPException):
    """A request over one of the server's limits (answered as `{"detail": ...}` with its status)."""

    def __init__(self, status_code: int, detail: str, retry_after_s: float | None = None):
        headers = None if retry_after_s is None else {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        super().__init__(status_code=status_code, detail=detail, headers=headers)


# --- run configs ------------------------------------------------------------------------------------
def steps_per_run(config: TrainConfig, settings: Settings) -> int:
    """Optimisation steps the run takes: epochs x batches of the digits it trains on (those not
    held out for validation, at most the server's train_subset)."""
    samples = max(training_samples(TRAIN_SAMPLES, config.validation_size, settings.train_subset), 1)
    return config.epochs * math.ceil(samples / config.batch_size)


def server_memory_bytes(config: TrainConfig, settings: Settings) -> int:
    """What the server process holds for the run's record of steps (see SERVER_BYTES_PER_STEP)."""
    return SERVER_BYTES_PER_STEP * steps_per_run(config, settings)


def _size_problems(layers: list, epochs: Any, batch_size: Any, settings: Settings) -> list[str]:
    """Each size limit the given values exceed, as a phrase naming the limit's setting. Values
    that are not numbers are left to the engine's validation."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    problems = []
    if len(layers) > settings.max_hidden_layers:
        problems.append(f"{len(layers)} hidden layers, at most {settings.max_hidden_layers} "
                        "are allowed (MNIST_LAB_MAX_HIDDEN_LAYERS)")
    widest = max((n for n in layers if number(n)), default=0)
    if widest > settings.max_units_per_layer:
        problems.append(f"a layer of {shown(widest)} units, at most {settings.max_units_per_layer} "
                        "per layer are allowed (MNIST_LAB_MAX_UNITS_PER_LAYER)")
    if number(epochs) and epochs > settings.max_epochs:
        problems.append(f"{shown(epochs)} epochs, at most {settings.max_epochs} are allowed "
                        "(MNIST_LAB_MAX_EPOCHS)")
    if number(batch_size) and batch_size > settings.max_batch_size:
        problems.append(f"a batch size of {shown(batch_size)}, at most {settings.max_batch_size} "
                        "is allowed (MNIST_LAB_MAX_BATCH_SIZE)")
    return problems


def _too_large(problems: list[str]) -> LimitExceeded:
    return LimitExceeded(422, "this run is larger than the server allows: " + "; ".join(problems)
                         + ". Make the run smaller, or ask the server's operator to raise the "
                         "limit")


def run_config(values: dict[str, Any], settings: Settings) -> TrainConfig:
    """The TrainConfig a request asks for (422 if invalid). A value over one of this server's
    limits is refused with that limit, not with the engine's looser bound (a layer of 70,000
    units: at most 4096 here, not the engine's 65536)."""
    try:
        return TrainConfig.from_dict(values)
    except ConfigError:
        layers = values.get("hidden_layers")
        problems = _size_problems(layers if isinstance(layers, list) else [],
                                  values.get("epochs"), values.get("batch_size"), settings)
        if problems:
            raise _too_large(problems) from None
        raise


def check_run_config(config: TrainConfig, settings: Settings) -> None:
    """Refuse (422) a config over the size limits, before anything is queued or started."""
    problems = _size_problems(list(config.hidden_layers), config.epochs, config.batch_size, settings)
    parameters = parameter_count(config)
    if parameters > settings.max_parameters:
        problems.append(f"{parameters:,} parameters, at most {settings.max_parameters:,} are "
                        "allowed (MNIST_LAB_MAX_PARAMETERS)")
    steps = steps_per_run(config, settings)
    if steps > settings.max_steps_per_run:
        per_epoch = steps // config.epochs
        problems.append(f"{steps:,} steps ({config.epochs} epochs of {per_epoch:,} batches of "
                        f"{config.batch_size}), at most {settings.max_steps_per_run:,} are allowed "
                        "(MNIST_LAB_MAX_STEPS_PER_RUN), so use a larger batch size or fewer epochs")
    if problems:
        raise _too_large(problems)
    worker_mb = estimated_memory_bytes(config) / 2**20
    server_mb = server_memory_bytes(config, settings) / 2**20
    if worker_mb + server_mb > settings.max_run_memory_mb:
        raise LimitExceeded(422, (
            f"this run would need about {worker_mb + server_mb:,.0f} MB of memory ({worker_mb:,.0f} MB "
            f"to train, {server_mb:,.0f} MB in the server for its {steps:,} steps), and the server "
            f"allows {settings.max_run_memory_mb:,} MB per run (MNIST_LAB_MAX_RUN_MEMORY_MB); use "
            "smaller layers, a smaller batch size or fewer steps"))


def check_capacity(settings: Settings, statuses: Iterable[str]) -> None:
    """Refuse a new run when the queue is full (429) or too many runs are stored (409).

    `statuses` are the statuses of every stored run."""
    counts = Counter(statuses)
    stored = sum(counts.values())
    if counts["queued"] >= settings.max_queued_runs:
        raise LimitExceeded(429, (
            f"{counts['queued']} runs are already waiting in the queue, the most the server keeps "
            f"(MNIST_LAB_MAX_QUEUED_RUNS={settings.max_queued_runs}); wait for one to start, or "
            "stop or delete a queued run"), retry_after_s=30)
    if stored >= settings.max_runs_kept:
        raise LimitExceeded(409, (
            f"{stored} runs are stored, the most the server keeps (MNIST_LAB_MAX_RUNS_KEPT="
            f"{settings.max_runs_kept}); delete runs you no longer need (DELETE /api/runs/{{id}}) "
            "and start this one again"))


def check_room(settings: Settings, stored: int, more: int) -> None:
    """Refuse (409) `more` runs (a sweep's trials) that would not fit the runs kept."""
    if stored + more > settings.max_runs_kept:
        raise LimitExceeded(409, (
            f"{stored} runs are stored and this needs room for {more} more; the server keeps at "
            f"most {settings.max_runs_kept} (MNIST_LAB_MAX_RUNS_KEPT); delete runs or sweeps you "
            "no longer need, or ask for fewer trials"))


def admit_run(config: TrainConfig, settings: Settings, statuses: Iterable[str]) -> None:
    """Everything `POST /api/runs` checks before creating a run."""
    check_run_config(config, settings)
    check_capacity(settings, statuses)


def describe(settings: Settings) -> dict[str, Any]:
    """Every limit a client should know about, for `/api/options` `limits`."""
    return {name: getattr(settings, name) for name in LIMIT_SETTINGS}


def field_bounds(settings: Settings) -> dict[str, dict[str, Any]]:
    """What each config field may be on this server, for `/api/options` `fields`: the engine's
    bounds (`engine.config.field_bounds`), tightened where a size limit is lower."""
    fields = engine_config.field_bounds()
    for name, key, limit in (("epochs", "max", settings.max_epochs),
                             ("batch_size", "max", settings.max_batch_size),
                             ("hidden_layers", "max", settings.max_units_per_layer),
                             ("hidden_layers", "max_items", settings.max_hidden_layers)):
        fields[name][key] = min(fields[name][key], limit)
    return fields


LIMIT_SETTINGS = (
    "max_body_bytes", "max_predict_batch", "max_image_side", "max_image_pixels",
    "max_concurrent_decodes", "max_header_bytes", "header_timeout_s", "body_timeout_s",
    "max_concurrent_runs", "max_hidden_layers", "max_units_per_layer", "max_parameters",
    "max_epochs", "max_batch_size", "max_steps_per_run", "max_run_memory_mb", "max_queued_runs",
    "max_runs_kept",
    "max_stream_clients_per_run", "max_stream_clients", "max_sweep_trials", "max_sweep_concurrent",
    "max_active_sweeps",
)


# --- live stream clients -------------------------------------------------------------------------
STREAM_PATH = re.compile(r"^/ws/runs/(\d+)$")
TRY_AGAIN_LATER = 1013  # WebSocket close code


class StreamSlots:
    """Counts WebSocket watchers per run and in total; `take` refuses one over either limit.

    Used on the event loop only (no lock needed)."""

    def __init__(self, per_run: int, total: int):
        self.per_run = per_run
        self.total = total
        self._by_run: Counter[int | None] = Counter()

    @property
    def in_use(self) -> int:
        return sum(self._by_run.values())

    def take(self, run_id: int | None) -> str | None:
        """Reserve a slot; returns None, or why the client is refused (short: it is sent as a
        WebSocket close reason, at most 123 bytes)."""
        if self.in_use >= self.total:
            return (f"the server streams to {self.total} clients, its limit "
                    "(MNIST_LAB_MAX_STREAM_CLIENTS); try again later")
        if run_id is not None and self._by_run[run_id] >= self.per_run:
            return (f"run {run_id} has {self.per_run} watchers, the limit "
                    "(MNIST_LAB_MAX_STREAM_CLIENTS_PER_RUN); try again later")
        self._by_run[run_id] += 1
        return None

    def give_back(self, run_id: int | None) -> None:
        self._by_run[run_id] -= 1
        if self._by_run[run_id] <= 0:
            del self._by_run[run_id]


class StreamClientLimit:
    """ASGI middleware: holds a slot for every open WebSocket; over the limit, the handshake is
    accepted and closed at once with code 1013 (try again later) and the reason."""

    def __init__(self, app, slots: StreamSlots):
        self.app = app
        self.slots = slots

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        match = STREAM_PATH.match(scope["path"])
        run_id = int(match.group(1)) if match else None
        refusal = self.slots.take(run_id)
        if refusal is not None:
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": TRY_AGAIN_LATER,
                            "reason": refusal[:123]})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.give_back(run_id)


def install(app, settings: Settings) -> None:
    """Put the stream client limit in front of the WebSocket routes."""
    slots = StreamSlots(settings.max_stream_clients_per_run, settings.max_stream_clients)
    app.state.stream_slots = slots
    app.add_middleware(StreamClientLimit, slots=slots)
