"""The run service: what the routes ask of runs, and how a run's messages are followed.

It owns the run table (app/runs/table.py) and changes a run only through its reducer
(app/runs/state.py): every message, from a worker or from a request, goes through `_receive`,
which does the side effects the new state calls for around `apply`: steps and epochs stored
before anyone is told, a checkpoint moved into place before the run says it has a model, the
record updated, the live feed and the run list's revision told, the next queued run started.

Everything here runs on the event loop; messages from the executor's threads are handed over with
`call_soon_threadsafe`. SQLite is the record; the table is a cache of it that the live runs keep
up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

from app import limits, schemas
from app.broadcast import Revision, RunFeed, dumps
from app.executor import Executor
from app.protocol import Checkpoint, Ended, Iterations, Point
from app.runs.errors import Conflict, NoModelYet
from app.runs.models import ActiveModel, ModelFiles
from app.runs.presenter import RunPresenter, layers_history, metrics, metrics_csv
from app.runs.scheduler import Scheduler
from app.runs.state import (
    DetailsChanged,
    Moment,
    PauseRequested,
    PauseTimedOut,
    PruneRequested,
    Resumed,
    RunMessage,
    RunState,
    ShuttingDown,
    StepRequested,
    StopRequested,
    apply,
)
from app.runs.table import LiveRun, RunTable
from app.settings import Settings
from app.store import RUN_COLUMNS, Store
from engine.config import TrainConfig
from engine.events import EpochEvent, LayersEvent, kept_epoch

logger = logging.getLogger("app.runs")

Action = Literal["stop", "pause", "resume"]
# Changes to these alone are written with the next other change, not on their own (~20 a second).
PROGRESS_COLUMNS = ("step", "epoch", "samples_per_second")
# Told of every message applied to a run: (message, the run before, the run after). Called on the
# event loop, after the side effects; it must not block (a sweep hands it to its own task).
Observer = Callable[[RunMessage, RunState, RunState], None]


class _Starting:
    """The handle of a run whose process is being spawned: requests meanwhile act on nothing."""

    run_id = -1

    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step(self, steps: int) -> None: ...
    def terminate(self) -> None: ...


class RunService:
    def __init__(self, settings: Settings, store: Store, executor: Executor,
                 forget: Iterable[Callable[[int], None]] = ()):
        """`forget`: called with a run's id when it is deleted (caches of its model, say)."""
        self.settings = settings
        self.store = store
        self.executor = executor
        self.forget = list(forget)
        self.table = RunTable()
        self.models = ModelFiles(settings)
        self.active_model = ActiveModel(store)
        self.scheduler = Scheduler(settings, self.models.path)
        self.presenter = RunPresenter(settings.train_subset, settings.test_subset)
        self.revision = Revision()  # bumped whenever the run list would answer differently
        self.observers: list[Observer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task | None = None
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        interrupted = self.store.mark_interrupted()
        if interrupted:
            logger.warning("runs %s were interrupted by the previous server's end", interrupted)
        self.models.discard_pending()  # checkpoints the last server never took over
        for record in self.store.runs():
            run = RunState.from_record(record)
            self.table.put(dataclasses.replace(run, has_model=run.has_model
                                               and self.models.exists(run.id)))
        self._flusher = asyncio.create_task(self._flush_periodically(), name="flush-iterations")

    async def shutdown(self) -> None:
        """Stop every worker (their runs become `interrupted`) and write what is pending."""
        self._closing = True
        for run_id in list(self.table.live):
            self._receive(run_id, ShuttingDown())
        await asyncio.to_thread(self.executor.shutdown, self.settings.stop_timeout_s)
        await asyncio.sleep(0)  # let the last messages the pump threads handed over run
        for run_id in list(self.table.live):  # no worker said how it ended: the shutdown did
            self._receive(run_id, Ended("stopped", None))
        if self._flusher:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._flush_all()

    # --- queries -------------------------------------------------------------------------------
    def get(self, run_id: int) -> schemas.Run:
        run = self.table.get(run_id)
        return self.presenter.run(run, self._epochs(run_id), self.active_model_id(), time.monotonic())

    def list_runs(self) -> schemas.RunList:
        return self.presenter.run_list(self.table.newest_first(), self.active_model_id(),
                                       self.revision.value, time.monotonic())

    def state(self, run_id: int) -> RunState:
        """The run as the service knows it (RunNotFound: 404)."""
        return self.table.get(run_id)

    def trials(self, sweep_id: int) -> list[RunState]:
        """The runs that are trials of this sweep, by trial number."""
        return sorted((run for run in self.table.rows.values() if run.sweep_id == sweep_id),
                      key=lambda run: (run.trial, run.id))

    def kept_epochs(self, run_ids: Sequence[int]) -> dict[int, tuple[dict, int]]:
        """For each of these runs that finished an epoch: the epoch whose weights it keeps (the
        best on validation so far) and how many epochs it finished (live runs from their feed).
        Blocking: call it in a thread."""
        kept = {}
        for run_id in run_ids:
            live = self.table.live.get(run_id)
            epochs = live.feed.epochs if live is not None else self.store.epochs(run_id)
            if epochs:
                kept[run_id] = (dict(kept_epoch(epochs)), len(epochs))
        return kept

    def check_room(self, runs: int) -> None:
        """Refuse (409) when `runs` more runs would not fit the runs kept."""
        limits.check_room(self.settings, len(self.table.rows), runs)

    def describe(self, run_id: int) -> dict:
        """The Run as JSON-ready data (for the live feed)."""
        return self.get(run_id).model_dump()

    def _epochs(self, run_id: int) -> list[dict]:
        live = self.table.live.get(run_id)
        return live.feed.epochs if live is not None else self.store.epochs(run_id)

    async def metrics(self, run_id: int, after: int = -1) -> schemas.Metrics:
        return metrics(*await self._metrics(run_id, after))

    async def metrics_csv(self, run_id: int, after: int = -1) -> str:
        return metrics_csv(*await self._metrics(run_id, after))

    async def _metrics(self, run_id: int, after: int) -> tuple[list[Point], list[dict]]:
        self.table.get(run_id)
        self.flush(run_id)
        return await asyncio.to_thread(self._read_metrics, run_id, after)

    def _read_metrics(self, run_id: int, after: int = -1) -> tuple[list[Point], list[dict]]:
        """(iterations after `after`, epochs), from SQLite: call from a worker thread."""
        return self.store.iterations(run_id, after), self.store.epochs(run_id)

    async def layers(self, run_id: int, after: int = -1, limit: int = 100) -> schemas.LayersHistory:
        """The layer statistics of the watched steps after `after`, a page at a time."""
        self.table.get(run_id)
        bodies, more = await asyncio.to_thread(self.store.layers, run_id, after, limit)
        return layers_history(bodies, more)

    async def feed(self, run_id: int) -> RunFeed:
        """The live feed of an active run, or a finished feed built from the record."""
        self.table.get(run_id)
        live = self.table.live.get(run_id)
        if live is not None:
            return live.feed
        iterations, epochs = await asyncio.to_thread(self._read_metrics, run_id)
        return RunFeed(run_id, lambda: self.describe(run_id), iterations, epochs, live=False)

    # --- models --------------------------------------------------------------------------------
    def active_model_id(self) -> int | None:
        return self.active_model.resolve(self.table.rows)[0]

    def describe_active_model(self) -> schemas.ActiveModel:
        run_id, chosen_by = self.active_model.resolve(self.table.rows)
        return schemas.ActiveModel(run_id=run_id, chosen_by=chosen_by)

    def set_active_model(self, run_id: int | None) -> schemas.ActiveModel:
        if run_id is not None:
            self.with_model(run_id)
        self.active_model.choose(run_id)
        self.revision.bump()
        return self.describe_active_model()

    def with_model(self, run_id: int) -> int:
        """`run_id`, if that run has a model; RunNotFound (404) or NoModelYet (409)."""
        run = self.table.get(run_id)
        if not run.has_model:
            raise NoModelYet(f"run {run_id} has no model yet (status {run.status}); a model is "
                             "saved when its first epoch finishes")
        return run_id

    def model_for(self, run_id: int | None) -> int:
        """The run whose model answers a prediction: the one named, else the active model."""
        if run_id is not None:
            return self.with_model(run_id)
        active = self.active_model_id()
        if active is None:
            raise NoModelYet("there is no trained model yet: start a run and wait for its first "
                             "epoch to finish, then try again")
        return active

    def model_file(self, run_id: int) -> Path:
        path = self.models.path(self.with_model(run_id))
        if not path.is_file():
            raise Conflict(f"the model file of run {run_id} is missing; start a new run to train "
                           "one again")
        return path

    # --- commands -------------------------------------------------------------------------------
    async def create(self, body: schemas.RunConfig) -> schemas.Run:
        """Validate (ConfigError: 422), admit (limits: 422, 429, 409), queue and schedule."""
        config = limits.run_config(body.model_dump(exclude_unset=True), self.settings)
        return self.get((await self.submit(config)).id)

    async def submit(self, config: TrainConfig, sweep_id: int | None = None,
                     trial: int | None = None) -> RunState:
        """Admit (limits: 422, 429, 409), queue and schedule a run of `config`; a sweep's trial
        names its sweep and trial number."""
        limits.admit_run(config, self.settings, [run.status for run in self.table.rows.values()])
        run = RunState.from_record(self.store.create_run(config.to_dict(), Moment.now().iso,
                                                         sweep_id, trial))
        self.table.put(run)
        self.table.live[run.id] = LiveRun(run.id, config,
                                          RunFeed(run.id, lambda: self.describe(run.id)))
        self.revision.bump()
        await self._schedule()
        return self.table.get(run.id)

    async def step(self, run_id: int, steps: int) -> schemas.Run:
        """Train a paused run `steps` more iterations; answers once it has paused again (or
        ended: its last epoch may end meanwhile), every step stored and streamed."""
        live = self._require_status(run_id, "paused", "stepped", "only a paused run can be "
                                    "stepped; pause it first")
        if self.table.get(run_id).stepping:
            raise Conflict(f"run {run_id} is already taking the steps of an earlier request; "
                           "wait for its answer")
        self._receive(run_id, StepRequested(steps))
        live.handle.step(steps)
        await live.until(lambda: not self.table.get(run_id).stepping, None)
        return self.get(run_id)

    async def control(self, run_id: int, action: Action) -> schemas.Run:
        command = {"stop": self.stop, "pause": self.pause, "resume": self.resume}[action]
        return await command(run_id)

    async def stop(self, run_id: int) -> schemas.Run:
        await self._stop(run_id, StopRequested())
        return self.get(run_id)

    async def prune(self, run_id: int, reason: str) -> None:
        """End a sweep's trial early: it stops as on request and ends `pruned`, its epochs and
        model kept. Returns once it ended."""
        await self._stop(run_id, PruneRequested(reason))

    async def _stop(self, run_id: int, request: StopRequested | PruneRequested) -> None:
        run = self.table.get(run_id)
        live = self.table.live.get(run_id)
        if live is None:
            raise Conflict(f"run {run_id} is {run.status}, it cannot be stopped; only a queued, "
                           "running or paused run can")
        if live.handle is None:  # (ending it lets the next queued run start)
            if isinstance(request, PruneRequested):
                self._receive(run_id, request)
            self._receive(run_id, Ended("stopped", "stopped before it started"))
            return
        self._receive(run_id, request)
        live.handle.stop()
        ended = lambda: run_id not in self.table.live  # noqa: E731
        if not await live.until(ended, self.settings.stop_timeout_s):
            logger.warning("run %s ignored a stop for %ss; ending its process", run_id,
                           self.settings.stop_timeout_s)
            live.handle.terminate()
            await live.until(ended, None)

    async def pause(self, run_id: int) -> schemas.Run:
        live = self._require_status(run_id, "running", "paused", "only a running run can be paused")
        # "paused" means nothing trains and every step taken is stored: the worker confirms once
        # it stopped between two steps (its PauseEvent comes after the steps before it).
        self._receive(run_id, PauseRequested())
        live.handle.pause()
        settled = lambda: self.table.get(run_id).status != "running"  # noqa: E731
        if not await live.until(settled, self.settings.stop_timeout_s):
            logger.warning("run %s has not paused after %ss; it will at its next step", run_id,
                           self.settings.stop_timeout_s)
            self._receive(run_id, PauseTimedOut())
        return self.get(run_id)

    async def resume(self, run_id: int) -> schemas.Run:
        live = self._require_status(run_id, "paused", "resumed", "only a paused run can be resumed")
        live.handle.resume()
        self._receive(run_id, Resumed())
        return self.get(run_id)

    def edit(self, run_id: int, body: schemas.RunDetails) -> schemas.Run:
        """Set any of the run's name, tags and notes, whatever its status."""
        self.table.get(run_id)
        given = body.model_dump(include=body.model_fields_set)
        if "tags" in given:
            given["tags"] = tuple(given["tags"])
        self._receive(run_id, DetailsChanged(**given))
        return self.get(run_id)

    async def delete(self, run_id: int) -> None:
        self.table.get(run_id)
        live = self.table.live.get(run_id)
        if live is not None:
            await self.stop(run_id)
            live.feed.mark_deleted()
        self.store.delete_run(run_id)
        self.table.remove(run_id)
        self.revision.bump()
        if self.active_model.chosen == run_id:
            self.set_active_model(None)
        self.models.remove(run_id)
        for forget in self.forget:
            forget(run_id)

    def _require_status(self, run_id: int, status: str, verb: str, rule: str) -> LiveRun:
        run = self.table.get(run_id)
        live = self.table.live.get(run_id)
        if run.status != status or live is None or live.handle is None:
            raise Conflict(f"run {run_id} is {run.status}, so it cannot be {verb}; {rule}")
        return live

    # --- scheduling -----------------------------------------------------------------------------
    async def _schedule(self) -> None:
        while not self._closing:
            live = self.scheduler.next_to_start(self.table.live.values())
            if live is None:
                return
            live.handle = _Starting()
            try:
                live.handle = await asyncio.to_thread(self.executor.submit,
                                                      self.scheduler.job(live), self._deliver)
            except Exception as error:  # noqa: BLE001 - reported on the run
                live.handle = None
                self._receive(live.run_id, Ended("failed", f"could not start a training process: "
                                                           f"{error}"))
                continue
            run = self.table.rows.get(live.run_id)
            if run is not None and run.stop_requested:  # asked while the process was spawned
                live.handle.stop()

    # --- messages ---------------------------------------------------------------------------------
    def _deliver(self, run_id: int, message: RunMessage) -> None:
        """Called on an executor thread: hand the message to the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server ended
            self._loop.call_soon_threadsafe(self._receive, run_id, message)

    def _receive(self, run_id: int, message: RunMessage) -> None:
        """Apply one message to a run, with the side effects around it. A run that ended has no
        live part: only its record changes (its name, say; the reducer ignores the rest)."""
        before = self.table.rows.get(run_id)
        live = self.table.live.get(run_id)
        if before is None or (live is not None and not self._before(live, message)):
            return
        after = apply(message, before, Moment.now())
        self.table.put(after)
        self._record(message, before, after)
        if live is None:
            return
        self._publish(live, message, before, after)
        if before.active and not after.active:
            self._end(live)
        live.changed()
        for observer in self.observers:
            try:
                observer(message, before, after)
            except Exception:  # noqa: BLE001 - an observer's failure must not stop the run's record
                logger.exception("an observer of run %s failed", run_id)

    def _before(self, live: LiveRun, message: RunMessage) -> bool:
        """What must be done before the run's state may say so; False drops the message."""
        match message:
            case Iterations(points=points):
                live.pending.extend(points)
                try:  # stored before it is streamed: a step any client saw survives a crash
                    self._flush(live)
                except Exception:  # noqa: BLE001 - a full or read-only disk must not stop the stream
                    logger.exception("could not write iteration losses of run %s", live.run_id)
            case EpochEvent():
                self._flush(live)
                self.store.add_epoch(live.run_id, dataclasses.asdict(message))
            case LayersEvent(step=step, epoch=epoch):
                try:  # a full disk loses the statistics of this step, not the run
                    self.store.add_layers(live.run_id, step, epoch,
                                          dumps(dataclasses.asdict(message)))
                except Exception:  # noqa: BLE001
                    logger.exception("could not store the layer statistics of run %s", live.run_id)
            case Checkpoint(path=path):
                # The epoch it belongs to is stored (its message came first): the model may show.
                return self.models.take_over(live.run_id, path)
            case Ended(traceback=trace):
                self._flush(live)
                self.models.discard_pending(live.run_id)  # saved by a worker that died
                if trace:
                    logger.error("run %s failed:\n%s", live.run_id, trace)
        return True

    def _record(self, message: RunMessage, before: RunState, after: RunState) -> None:
        """Update the stored record with what changed (progress alone waits for the next change)."""
        changes = {name: getattr(after, name) for name in RUN_COLUMNS
                   if getattr(after, name) != getattr(before, name)}
        if set(changes) - set(PROGRESS_COLUMNS) or isinstance(message, EpochEvent):
            self.store.update_run(after.id, **changes, step=after.step, epoch=after.epoch)
            self.revision.bump()

    def _publish(self, live: LiveRun, message: RunMessage, before: RunState, after: RunState) -> None:
        """Tell the run's watchers."""
        match message:
            case Iterations(points=points, samples_per_second=rate, learning_rate=learning_rate):
                live.feed.add_points(list(points), rate, learning_rate)
            case EpochEvent():
                live.feed.add_epoch(dataclasses.asdict(message))
            case LayersEvent():
                live.feed.add_layers(dumps(dataclasses.asdict(message)))
            case DetailsChanged() if after != before:  # the run with its new name, tags or notes
                live.feed.add_status(self.describe(after.id))
        if after.status != before.status:
            live.feed.add_status(self.describe(after.id))

    def _end(self, live: LiveRun) -> None:
        self.table.live.pop(live.run_id, None)
        if not self._closing:
            asyncio.get_running_loop().create_task(self._schedule())

    # --- batched writes of iteration losses ---------------------------------------------------------
    def flush(self, run_id: int) -> None:
        live = self.table.live.get(run_id)
        if live is not None:
            self._flush(live)

    def _flush(self, live: LiveRun) -> None:
        if live.pending:
            points, live.pending = live.pending, []
            self.store.add_iterations(live.run_id, points)

    def _flush_all(self) -> None:
        for live in list(self.table.live.values()):
            self._flush(live)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            try:
                self._flush_all()
            except Exception:  # noqa: BLE001 - keep flushing; the error is logged
                logger.exception("could not write iteration losses to the database")
