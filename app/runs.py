"""The run service: creates runs, schedules them onto the executor, follows their events, and
answers every question the routes ask about runs (status, progress, metrics, active model).

All of its methods run on the event loop; events from the executor's threads are handed over
with `call_soon_threadsafe`, so the state below is only ever touched from one thread. SQLite is
the record; the in-memory rows are a cache of it that the live runs keep up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from app.broadcast import Revision, RunFeed
from app.executor import Executor, RunHandle
from app.settings import Settings
from app.store import Store
from app.worker import PENDING_SUFFIX, RunJob
from engine.config import TrainConfig

logger = logging.getLogger("app.runs")

STATUSES = ("queued", "running", "paused", "stopped", "completed", "failed", "interrupted")
ACTIVE_MODEL_KEY = "active_model_run_id"
MNIST_TRAIN_SAMPLES = 60_000


class RunNotFound(LookupError):
    def __init__(self, run_id: int):
        super().__init__(f"there is no run {run_id}; GET /api/runs lists the runs that exist")


class Conflict(Exception):
    """A request that makes no sense in the run's current state (HTTP 409)."""


@dataclass
class LiveRun:
    """What the server tracks about a run that is queued, running or paused."""

    run_id: int
    config: TrainConfig
    feed: RunFeed
    handle: RunHandle | None = None
    pending: list[tuple[int, int, float]] = field(default_factory=list)  # points not yet in SQLite
    started: float | None = None  # time.monotonic() when the worker started training
    stop_requested: bool = False
    paused: asyncio.Event = field(default_factory=asyncio.Event)  # the worker confirmed a pause
    ended: asyncio.Event = field(default_factory=asyncio.Event)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class RunManager:
    def __init__(self, settings: Settings, store: Store, executor: Executor):
        self.settings = settings
        self.store = store
        self.executor = executor
        self._rows: dict[int, dict[str, Any]] = {}
        self._live: dict[int, LiveRun] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task | None = None
        self._closing = False
        self._meta_cache: dict[str, int | None] = {}
        self.revision = Revision()  # bumped whenever list_runs() would answer differently

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        interrupted = self.store.mark_interrupted()
        if interrupted:
            logger.warning("runs %s were interrupted by the previous server's end", interrupted)
        for leftover in self.settings.models_dir.glob(f"*{PENDING_SUFFIX}"):
            leftover.unlink(missing_ok=True)  # checkpoints the last server never took over
        for row in self.store.runs():
            row["has_model"] = row["has_model"] and self.settings.model_path(row["id"]).is_file()
            self._rows[row["id"]] = row
        self._flusher = asyncio.create_task(self._flush_periodically(), name="flush-iterations")

    async def shutdown(self) -> None:
        """Stop every worker (their runs become `interrupted`) and write what is pending."""
        self._closing = True
        await asyncio.to_thread(self.executor.shutdown, self.settings.stop_timeout_s)
        await asyncio.sleep(0)  # let the last events the pump threads handed over run
        for live in list(self._live.values()):
            self._finish(live, "interrupted", "the server shut down while this run was "
                             f"{self._rows[live.run_id]['status']}", {})
        if self._flusher:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._flush_all()

    # --- queries -------------------------------------------------------------------------------
    def row(self, run_id: int) -> dict[str, Any]:
        row = self._rows.get(run_id)
        if row is None:
            raise RunNotFound(run_id)
        return row

    def describe(self, run_id: int, with_epochs: bool = True,
                 active_run_id: int | None | bool = False) -> dict[str, Any]:
        """A run as the API shows it (docs/API.md, "Run"). `active_run_id`: the active model's
        run if the caller already knows it (False: look it up)."""
        row = self.row(run_id)
        if active_run_id is False:
            active_run_id = self.active_model()[0]
        live = self._live.get(run_id)
        config = row["config"]
        steps_per_epoch = row["steps_per_epoch"] or math.ceil(
            min(self.settings.train_subset or MNIST_TRAIN_SAMPLES, MNIST_TRAIN_SAMPLES)
            / config["batch_size"])
        steps_total = steps_per_epoch * config["epochs"]
        steps_done = row["step"] + 1
        running = row["status"] == "running"
        rate = row["samples_per_second"] if running else None
        eta = None
        if running and rate:
            eta = max(0, steps_total - steps_done) * config["batch_size"] / rate
        duration = row["duration_s"]
        if live is not None and live.started is not None:
            duration = time.monotonic() - live.started
        run = {
            "id": run_id,
            "status": row["status"],
            "config": config,
            "created_at": row["created_at"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "duration_s": duration,
            "reason": row["reason"],
            "progress": {
                "epoch": row["epoch"], "epochs": config["epochs"], "step": steps_done,
                "steps_per_epoch": steps_per_epoch, "steps_total": steps_total,
                "samples_per_second": rate, "eta_s": eta,
            },
            "best_val_accuracy": row["best_val_accuracy"],
            "test_accuracy": row["test_accuracy"],
            "has_model": row["has_model"],
            "is_active_model": active_run_id == run_id,
        }
        if with_epochs:
            run["epochs"] = live.feed.epochs if live else self.store.epochs(run_id)
        return run

    def list_runs(self) -> dict[str, Any]:
        active = self.active_model()[0]
        return {"runs": [self.describe(run_id, with_epochs=False, active_run_id=active)
                         for run_id in sorted(self._rows, reverse=True)],
                "active_model_run_id": active, "revision": self.revision.value}

    def active_model(self) -> tuple[int | None, str | None]:
        """The model /predict uses by default: the user's choice, else the best run with a model
        (completed runs first, then by best validation accuracy)."""
        chosen = self.store_meta_int(ACTIVE_MODEL_KEY)
        if chosen is not None and chosen in self._rows and self._rows[chosen]["has_model"]:
            return chosen, "user"
        candidates = [row for row in self._rows.values() if row["has_model"]]
        if not candidates:
            return None, None
        best = max(candidates, key=lambda row: (row["status"] == "completed",
                                                row["best_val_accuracy"] or 0.0, row["id"]))
        return best["id"], "best"

    def store_meta_int(self, key: str) -> int | None:
        if key not in self._meta_cache:
            value = self.store.get_meta(key)
            self._meta_cache[key] = int(value) if value is not None else None
        return self._meta_cache[key]

    def set_active_model(self, run_id: int | None) -> dict[str, Any]:
        if run_id is not None:
            row = self.row(run_id)
            if not row["has_model"]:
                raise Conflict(f"run {run_id} has no model yet (status {row['status']}); a model "
                               "is saved when its first epoch finishes")
        self.store.set_meta(ACTIVE_MODEL_KEY, None if run_id is None else str(run_id))
        self._meta_cache[ACTIVE_MODEL_KEY] = run_id
        self.revision.bump()
        return self.describe_active_model()

    def describe_active_model(self) -> dict[str, Any]:
        run_id, chosen_by = self.active_model()
        return {"run_id": run_id, "chosen_by": chosen_by}

    async def feed(self, run_id: int) -> RunFeed:
        """The live feed of an active run, or a finished feed built from the record."""
        self.row(run_id)
        live = self._live.get(run_id)
        if live is not None:
            return live.feed
        iterations, epochs = await asyncio.to_thread(self.metrics, run_id)
        return RunFeed(run_id, lambda: self.describe(run_id), iterations, epochs, live=False)

    def metrics(self, run_id: int, after: int = -1) -> tuple[list[tuple[int, int, float]],
                                                               list[dict[str, Any]]]:
        """(iterations after `after`, epochs). Call from a worker thread: it reads SQLite."""
        return self.store.iterations(run_id, after), self.store.epochs(run_id)

    def flush(self, run_id: int) -> None:
        live = self._live.get(run_id)
        if live is not None:
            self._flush(live)

    # --- commands -------------------------------------------------------------------------------
    async def create(self, config: TrainConfig) -> dict[str, Any]:
        row = self.store.create_run(config.to_dict(), now_iso())
        run_id = row["id"]
        self._rows[run_id] = row
        self._live[run_id] = LiveRun(run_id, config, RunFeed(run_id, lambda: self.describe(run_id)))
        self.revision.bump()
        await self._schedule()
        return self.describe(run_id)

    async def stop(self, run_id: int) -> dict[str, Any]:
        row = self.row(run_id)
        live = self._live.get(run_id)
        if live is None:
            raise Conflict(f"run {run_id} is {row['status']}, it cannot be stopped; only a queued, "
                           "running or paused run can")
        if live.handle is None:
            self._finish(live, "stopped", "stopped before it started", {})
            await self._schedule()
            return self.describe(run_id)
        live.stop_requested = True
        live.handle.stop()
        try:
            await asyncio.wait_for(live.ended.wait(), self.settings.stop_timeout_s)
        except TimeoutError:
            logger.warning("run %s ignored a stop for %ss; ending its process", run_id,
                           self.settings.stop_timeout_s)
            live.handle.terminate()
            await live.ended.wait()
        return self.describe(run_id)

    async def pause(self, run_id: int) -> dict[str, Any]:
        live = self._require_status(run_id, "running", "paused",
                                    "only a running run can be paused")
        # "paused" means nothing trains and every step taken is stored: wait until the worker
        # stops between two steps (its pause event comes after the points before it), or ends.
        live.paused.clear()
        live.handle.pause()
        settled = asyncio.ensure_future(live.paused.wait())
        ended = asyncio.ensure_future(live.ended.wait())
        done, _ = await asyncio.wait({settled, ended}, timeout=self.settings.stop_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        settled.cancel()
        ended.cancel()
        if not done:
            logger.warning("run %s has not paused after %ss; it will at its next step", run_id,
                           self.settings.stop_timeout_s)
        if run_id in self._live and self._rows[run_id]["status"] == "running":
            self._set_status(live, "paused")
        return self.describe(run_id)

    async def resume(self, run_id: int) -> dict[str, Any]:
        live = self._require_status(run_id, "paused", "resumed", "only a paused run can be resumed")
        live.handle.resume()
        self._set_status(live, "running")
        return self.describe(run_id)

    async def delete(self, run_id: int) -> None:
        self.row(run_id)
        live = self._live.get(run_id)
        if live is not None:
            await self.stop(run_id)
            live.feed.mark_deleted()
        self.store.delete_run(run_id)
        self._rows.pop(run_id, None)
        self.revision.bump()
        if self.store_meta_int(ACTIVE_MODEL_KEY) == run_id:
            self.set_active_model(None)
        self.settings.model_path(run_id).unlink(missing_ok=True)

    def _require_status(self, run_id: int, status: str, verb: str, rule: str) -> LiveRun:
        row = self.row(run_id)
        live = self._live.get(run_id)
        if row["status"] != status or live is None or live.handle is None:
            raise Conflict(f"run {run_id} is {row['status']}, so it cannot be {verb}; {rule}")
        return live

    # --- scheduling -----------------------------------------------------------------------------
    async def _schedule(self) -> None:
        """Start queued runs, oldest first, while fewer than max_concurrent_runs train."""
        while not self._closing:
            busy = sum(1 for live in self._live.values() if live.handle is not None)
            waiting = [live for live in self._live.values() if live.handle is None]
            if busy >= self.settings.max_concurrent_runs or not waiting:
                return
            live = min(waiting, key=lambda live: live.run_id)
            job = RunJob(
                run_id=live.run_id, config=live.config.to_dict(), data_dir=self.settings.data_dir,
                model_path=self.settings.model_path(live.run_id),
                train_subset=self.settings.train_subset, test_subset=self.settings.test_subset,
                nice=self.settings.worker_nice, threads=self.settings.worker_threads,
            )
            live.handle = _Starting()
            try:
                live.handle = await asyncio.to_thread(self.executor.submit, job, self._deliver)
                if live.stop_requested:  # asked while the process was being spawned
                    live.handle.stop()
            except Exception as error:  # noqa: BLE001 - reported on the run
                live.handle = None
                self._finish(live, "failed", f"could not start a training process: {error}", {})

    # --- events from the workers ------------------------------------------------------------------
    def _deliver(self, run_id: int, event: dict[str, Any]) -> None:
        """Called on an executor thread: hand the event to the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server ended
            self._loop.call_soon_threadsafe(self._on_event, run_id, event)

    def _on_event(self, run_id: int, event: dict[str, Any]) -> None:
        live = self._live.get(run_id)
        if live is None:
            return
        kind = event.get("event")
        row = self._rows[run_id]
        if kind == "iterations":
            points = [tuple(point) for point in event["points"]]
            live.pending.extend(points)
            try:  # stored before it is streamed: a step any client saw survives a crash
                self._flush(live)
            except Exception:  # noqa: BLE001 - a full or read-only disk must not stop the stream
                logger.exception("could not write iteration losses of run %s", run_id)
            live.feed.add_points(points, event["samples_per_second"], event["learning_rate"])
            row["step"], row["epoch"] = points[-1][0], points[-1][1]
            row["samples_per_second"] = event["samples_per_second"]
        elif kind == "epoch":
            epoch = {name: event[name] for name in ("epoch", "train_loss", "train_accuracy",
                                                    "val_loss", "val_accuracy", "duration_s",
                                                    "learning_rate")}
            self._flush(live)
            self.store.add_epoch(run_id, epoch)
            best = max(row["best_val_accuracy"] or 0.0, epoch["val_accuracy"])
            row.update(epoch=epoch["epoch"], best_val_accuracy=best)
            self.store.update_run(run_id, epoch=row["epoch"], step=row["step"],
                                  best_val_accuracy=best)
            live.feed.add_epoch(epoch)
            self.revision.bump()
        elif kind == "checkpoint":
            # The epoch it belongs to is stored (its event came first): now the model may show.
            try:
                os.replace(event["path"], self.settings.model_path(run_id))
            except OSError:
                logger.exception("could not move the checkpoint of run %s into place", run_id)
                return
            row["has_model"] = True
            self.store.update_run(run_id, has_model=True)
            self.revision.bump()
        elif kind == "start":
            live.started = time.monotonic()
            row.update(started_at=now_iso(), steps_per_epoch=event["steps_per_epoch"])
            self.store.update_run(run_id, started_at=row["started_at"],
                                  steps_per_epoch=row["steps_per_epoch"])
            if row["status"] == "queued":
                self._set_status(live, "running")
            else:
                self.revision.bump()
        elif kind == "pause":
            if event["paused"]:
                live.paused.set()
        elif kind == "end":
            self._on_end(live, event)

    def _on_end(self, live: LiveRun, event: dict[str, Any]) -> None:
        status, reason = event["status"], event["reason"]
        if self._closing and status != "completed":  # a run that just finished keeps its result
            status = "interrupted"
            reason = "the server shut down while this run was training; start a new run to train again"
        elif live.stop_requested and status == "failed" and event.get("steps_completed") is None:
            status, reason = "stopped", "stopped on request (the process did not stop in time and was ended)"
        elif status == "stopped" and live.stop_requested:
            reason = "stopped on request"
        if event.get("traceback"):
            logger.error("run %s failed:\n%s", live.run_id, event["traceback"])
        values = {"test_accuracy": event.get("test_accuracy")}
        if event.get("duration_s") is not None:
            values["duration_s"] = event["duration_s"]
        self._finish(live, status, reason, values)
        if not self._closing:
            asyncio.get_running_loop().create_task(self._schedule())

    def _finish(self, live: LiveRun, status: str, reason: str | None, values: dict[str, Any]) -> None:
        run_id = live.run_id
        if self._live.pop(run_id, None) is None:
            return
        self._flush(live)
        for leftover in self.settings.models_dir.glob(f"run-{run_id}.epoch-*{PENDING_SUFFIX}"):
            leftover.unlink(missing_ok=True)  # saved by a worker that died before reporting it
        row = self._rows[run_id]
        if live.started is not None and values.get("duration_s") is None:
            values["duration_s"] = time.monotonic() - live.started
        row.update(status=status, reason=reason, finished_at=now_iso(),
                   has_model=self.settings.model_path(run_id).is_file(), samples_per_second=None,
                   **values)
        self.store.update_run(run_id, status=status, reason=reason, finished_at=row["finished_at"],
                              has_model=row["has_model"], step=row["step"], epoch=row["epoch"],
                              samples_per_second=None, **values)
        live.feed.add_status(self._describe_finished(live))
        live.ended.set()
        self.revision.bump()

    def _describe_finished(self, live: LiveRun) -> dict[str, Any]:
        run = self.describe(live.run_id, with_epochs=False)
        run["epochs"] = live.feed.epochs
        return run

    def _set_status(self, live: LiveRun, status: str) -> None:
        row = self._rows[live.run_id]
        row["status"] = status
        row["reason"] = None
        self.store.update_run(live.run_id, status=status, reason=None, step=row["step"],
                              epoch=row["epoch"])
        live.feed.add_status(self.describe(live.run_id))
        self.revision.bump()

    # --- batched writes of iteration losses ---------------------------------------------------------
    def _flush(self, live: LiveRun) -> None:
        if live.pending:
            points, live.pending = live.pending, []
            self.store.add_iterations(live.run_id, points)

    def _flush_all(self) -> None:
        for live in list(self._live.values()):
            self._flush(live)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            try:
                self._flush_all()
            except Exception:  # noqa: BLE001 - keep flushing; the error is logged
                logger.exception("could not write iteration losses to the database")


class _Starting:
    """Placeholder handle while a worker process is being spawned: requests wait for the real one."""

    run_id = -1

    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def terminate(self) -> None: ...

