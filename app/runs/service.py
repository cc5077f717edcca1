"""The run service: what the routes ask of runs, and how a run's messages are followed.

It owns the run table (app/runs/table.py) and changes a run only through its reducer
(app/runs/state.py): every message, from a worker or from a request, goes through `_receive`,
which does the side effects the new state calls for around `apply`: steps and epochs stored
before anyone is told, a checkpoint moved into place before the run says it has a model, the
record updated, the feed and the run list's revision told, the next queued run started.

Storing goes through the backlog (app/runs/backlog.py): on a full or read-only disk what a worker
reports waits there, in order, and is stored (then streamed) as soon as the disk takes it again;
the run's state goes on meanwhile (its status, its progress), and every answer about the run says
what is not stored yet (`unstored`). Requests that would write something new (a run, a name, a
choice of model, a deletion) are refused with 507 while the disk refuses.

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
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app import limits, schemas
from app.broadcast import Feeds, Revision, RunFeed, dumps
from app.executor import Executor
from app.protocol import Checkpoint, Ended, Iterations, Point
from app.runs import presenter
from app.runs.backlog import Backlog
from app.runs.errors import Conflict, NoModelYet, NotSettled
from app.runs.models import ActiveModel, ModelFiles
from app.runs.presenter import RunPresenter, layers_history
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
from app.store import RUN_COLUMNS, StorageUnavailable, Store
from engine.config import TrainConfig
from engine.events import EpochEvent, LayersEvent, kept_epoch

logger = logging.getLogger("app.runs")

# Changes to these alone are written with the next other change, not on their own (~20 a second).
PROGRESS_COLUMNS = ("step", "epoch", "samples_per_second")
DETAIL_COLUMNS = ("name", "tags", "notes")  # the user's, set by a request (PATCH)
METRICS_PAGE = 100_000  # most steps in one /metrics answer (the default run limit's worth)
READ_POINTS = 5_000  # steps read (and formatted) at a time, in a worker thread


@dataclass
class MetricsPage:
    """One answer of GET /api/runs/{id}/metrics: its text, produced a slice at a time while it is
    sent, and the step to ask for the rest after (None: nothing follows)."""

    body: AsyncIterator[str]
    next_after: int | None


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
        self.feeds = Feeds()  # what watchers read: one feed per watched run
        self.backlog = Backlog(store, self.models)  # what is not stored yet
        self._held: set[int] = set()  # runs with reports the disk refused, until it takes them
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
        self._write_all()
        for run_id, unstored in self.backlog.runs.items():
            logger.error("run %s: %s steps, %s epochs and changes to its record could not be "
                         "stored before the server stopped (%s); they are lost", run_id,
                         len(unstored.points), len(unstored.epochs), self.backlog.problem)

    # --- queries -------------------------------------------------------------------------------
    def get(self, run_id: int) -> schemas.Run:
        run = self.table.get(run_id)
        return self.presenter.run(run, self._epochs(run_id), self.active_model_id(), time.monotonic(),
                                  self._unstored(run_id))

    def list_runs(self) -> schemas.RunList:
        return self.presenter.run_list(self.table.newest_first(), self.active_model_id(),
                                       self.revision.value, time.monotonic(), self._unstored)

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
        """The Run as JSON-ready data (for the feed)."""
        return self.get(run_id).model_dump()

    def _epochs(self, run_id: int) -> list[dict]:
        feed = self.feeds.get(run_id)
        return feed.epochs if feed is not None else self.store.epochs(run_id)

    def _unstored(self, run_id: int) -> schemas.Unstored | None:
        unstored = self.backlog.unstored(run_id)
        if unstored is None:
            return None
        return schemas.Unstored(steps=len(unstored.points), epochs=len(unstored.epochs),
                                problem=self.backlog.problem or "not written yet")

    async def metrics(self, run_id: int, after: int = -1, limit: int = METRICS_PAGE,
                      format: Literal["json", "csv"] = "json") -> MetricsPage:
        """The stored steps after `after` (at most `limit`) and every stored epoch, as JSON or
        CSV. The text is made a few thousand steps at a time in a worker thread while it is sent,
        so neither a large run nor many clients make the server hold it whole."""
        self.table.get(run_id)
        self._write(run_id)  # what waits, stored first (if the disk takes it)
        last, more = await asyncio.to_thread(self.store.page_end, run_id, after, limit)
        epochs = await asyncio.to_thread(self.store.epochs, run_id)
        next_after = last if more else None
        if format == "csv":
            ends = await asyncio.to_thread(self.store.epoch_last_steps, run_id)
            by_number = {epoch["epoch"]: epoch for epoch in epochs}
            rows = lambda points: presenter.csv_rows(points, by_number, ends)  # noqa: E731
            body = presenter.metrics_csv(self._slices(run_id, after, last, rows))
        else:
            body = presenter.metrics_json(
                self._slices(run_id, after, last, presenter.points_json), epochs, next_after)
        return MetricsPage(body, next_after)

    async def _slices(self, run_id: int, after: int, last: int | None,
                      format: Callable[[list[Point]], str]) -> AsyncIterator[str]:
        """The steps after `after` up to `last`, READ_POINTS at a time, each slice read and
        formatted in a worker thread."""
        def read(after: int) -> tuple[int | None, str]:
            points = self.store.iterations(run_id, after, READ_POINTS, last)
            return (points[-1][0], format(points)) if points else (None, "")

        while last is not None and after < last:
            end, text = await asyncio.to_thread(read, after)
            if end is None:
                return
            yield text
            after = end

    async def layers(self, run_id: int, after: int = -1, limit: int = 100) -> schemas.LayersHistory:
        """The layer statistics of the watched steps after `after`, a page at a time."""
        self.table.get(run_id)
        bodies, more = await asyncio.to_thread(self.store.layers, run_id, after, limit)
        return layers_history(bodies, more)

    @contextlib.asynccontextmanager
    async def watch(self, run_id: int) -> AsyncIterator[RunFeed]:
        """The run's feed while the block runs: shared with every other watcher of the run; a
        finished run's is built from the record (in a worker thread) by its first watcher."""
        self.table.get(run_id)
        async with self.feeds.hold(run_id, lambda: self._build_feed(run_id)) as feed:
            yield feed

    async def _build_feed(self, run_id: int) -> RunFeed:
        def points() -> Iterable[Point]:  # a slice at a time: the lock is never held for long
            after = -1
            while chunk := self.store.iterations(run_id, after, READ_POINTS):
                yield from chunk
                after = chunk[-1][0]

        def build() -> RunFeed:
            return RunFeed(run_id, lambda: self.describe(run_id), points(),
                           self.store.epochs(run_id))
        return await asyncio.to_thread(build)

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
        """Validate (ConfigError: 422), admit (limits: 422, 429, 409), queue and schedule; 507
        while the disk refuses what waits to be stored (a new run could not be kept either)."""
        config = limits.run_config(body.model_dump(exclude_unset=True), self.settings)
        return self.get((await self.submit(config)).id)

    async def submit(self, config: TrainConfig, sweep_id: int | None = None,
                     trial: int | None = None) -> RunState:
        """Admit (limits: 422, 429, 409), queue and schedule a run of `config`; a sweep's trial
        names its sweep and trial number."""
        limits.admit_run(config, self.settings, [run.status for run in self.table.rows.values()])
        self._storage_must_work()
        run = RunState.from_record(self.store.create_run(config.to_dict(), Moment.now().iso,
                                                         sweep_id, trial))
        self.table.put(run)
        feed = RunFeed(run.id, lambda: self.describe(run.id))
        self.feeds.pin(feed)
        self.table.live[run.id] = LiveRun(run.id, config, feed)
        self.revision.bump()
        await self._schedule()
        return self.table.get(run.id)

    async def step(self, run_id: int, steps: int) -> schemas.Run:
        """Train a paused run `steps` more iterations; answers once it has paused again (or
        ended: its last epoch may end meanwhile), every step stored and streamed. A run that
        takes no step for `stop_timeout_s` answers NotSettled (503) instead of waiting on."""
        live = self._require_status(run_id, "paused", "stepped", "only a paused run can be "
                                    "stepped; pause it first")
        if self.table.get(run_id).stepping:
            raise Conflict(f"run {run_id} is already taking the steps of an earlier request; "
                           "wait for its answer")
        self._receive(run_id, StepRequested(steps))
        live.handle.step(steps)
        settled = lambda: not self.table.get(run_id).stepping  # noqa: E731
        progress = self.table.get(run_id).step
        while not await live.until(settled, self.settings.stop_timeout_s):
            if self.table.get(run_id).step == progress:
                raise NotSettled(f"run {run_id} took no step for {self.settings.stop_timeout_s:g} "
                                 "s of the ones asked for; the server log may say why. Its "
                                 "status says where it is")
            progress = self.table.get(run_id).step
        return self.get(run_id)

    async def stop(self, run_id: int) -> schemas.Run:
        await self._stop(run_id, StopRequested())
        return self.get(run_id)

    async def prune(self, run_id: int, reason: str) -> None:
        """End a sweep's trial early: it stops as on request and ends `pruned`, its epochs and
        model kept. Returns once it ended."""
        await self._stop(run_id, PruneRequested(reason))

    async def _stop(self, run_id: int, request: StopRequested | PruneRequested) -> None:
        """Answers once the run ended; a worker that ignores the stop for `stop_timeout_s` is
        killed, and if even that is not reported in as long again, NotSettled (503)."""
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
        timeout = self.settings.stop_timeout_s
        if not await live.until(ended, timeout):
            logger.warning("run %s ignored a stop for %ss; ending its process", run_id, timeout)
            live.handle.terminate()
            if not await live.until(ended, timeout):
                raise NotSettled(f"run {run_id} did not stop within {2 * timeout:g} s, although its "
                                 "training process was killed; the server log may say why. Ask "
                                 "again in a moment")

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
        """Set any of the run's name, tags and notes, whatever its status. Stored before it is
        applied: a disk that refuses it answers 507 and changes nothing."""
        run = self.table.get(run_id)
        given = body.model_dump(include=body.model_fields_set)
        if "tags" in given:
            given["tags"] = tuple(given["tags"])
        after = apply(DetailsChanged(**given), run, Moment.now())
        changes = {name: getattr(after, name) for name in DETAIL_COLUMNS
                   if getattr(after, name) != getattr(run, name)}
        if changes:
            self.store.update_run(run_id, **changes)
            self.table.put(after)
            self.revision.bump()
            feed = self.feeds.get(run_id)
            if feed is not None and after.active:  # the run with its new name, tags or notes
                feed.add_status(self.describe(run_id))
        return self.get(run_id)

    async def delete(self, run_id: int) -> None:
        self.table.get(run_id)
        if run_id in self.table.live:
            await self.stop(run_id)
        self.store.delete_run(run_id)  # 507 if the disk refuses: the run stays (stopped)
        self.backlog.forget(run_id)
        self._held.discard(run_id)
        self.feeds.remove(run_id)  # its watchers are told
        self.table.remove(run_id)
        self.revision.bump()
        if self.active_model.chosen == run_id:
            self.set_active_model(None)
        self.models.remove(run_id)
        for forget in self.forget:
            forget(run_id)

    def _storage_must_work(self) -> None:
        """Raise StorageUnavailable (507) if what waits to be stored still cannot be."""
        self._write_all()
        if self.backlog.problem is not None:
            raise StorageUnavailable(self.backlog.problem, self.backlog.error)

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
        """A message about a live run: what it reports is stored first (or waits in the backlog
        for the disk), then it is applied. A checkpoint is applied once it is in place."""
        live = self.table.live.get(run_id)
        if live is None or run_id not in self.table.rows:
            return
        match message:
            case Iterations(points=points, samples_per_second=rate, learning_rate=learning_rate):
                live.feed.set_speed(rate, learning_rate)
                self.backlog.add_points(run_id, points)
            case EpochEvent():
                self.backlog.add_epoch(run_id, dataclasses.asdict(message))
            case Checkpoint():
                self.backlog.add_checkpoint(run_id, message)
            case LayersEvent(step=step, epoch=epoch):
                body = dumps(dataclasses.asdict(message))
                try:  # a full disk loses the statistics of this step, not the run
                    self.store.add_layers(run_id, step, epoch, body)
                except Exception:  # noqa: BLE001
                    logger.exception("could not store the layer statistics of run %s", run_id)
                else:  # (streamed once stored, like everything else)
                    if (feed := self.feeds.get(run_id)) is not None:
                        feed.add_layers(body)
            case Ended(traceback=trace):
                # Checkpoints saved by a worker that died go; those waiting for their epoch stay.
                self.models.discard_pending(run_id, keep=self.backlog.checkpoint_paths(run_id))
                if trace:
                    logger.error("run %s failed:\n%s", live.run_id, trace)
        self._write(run_id)
        if not isinstance(message, Checkpoint):
            self._apply(run_id, message)

    def _apply(self, run_id: int, message: RunMessage) -> None:
        """Apply one message to a run, with the side effects the new state calls for."""
        before = self.table.rows.get(run_id)
        if before is None:
            return
        after = apply(message, before, Moment.now())
        self.table.put(after)
        self._record(message, before, after)
        feed = self.feeds.get(run_id)
        if feed is not None and after.status != before.status:
            feed.add_status(self.describe(run_id))
        live = self.table.live.get(run_id)
        if live is not None:
            if before.active and not after.active:
                self._end(live)
            live.changed()
        for observer in self.observers:
            try:
                observer(message, before, after)
            except Exception:  # noqa: BLE001 - an observer's failure must not stop the run's record
                logger.exception("an observer of run %s failed", run_id)

    def _record(self, message: RunMessage, before: RunState, after: RunState) -> None:
        """Update the stored record with what changed (progress alone waits for the next change)."""
        changes = {name: getattr(after, name) for name in RUN_COLUMNS
                   if getattr(after, name) != getattr(before, name)}
        if set(changes) - set(PROGRESS_COLUMNS) or isinstance(message, EpochEvent):
            self.backlog.add_record(after.id, {**changes, "step": after.step, "epoch": after.epoch})
            self._write(after.id)
            self.revision.bump()

    def _end(self, live: LiveRun) -> None:
        self.table.live.pop(live.run_id, None)
        if self.backlog.unstored(live.run_id) is None:  # else once it is all stored
            self.feeds.unpin(live.run_id)
        if not self._closing:
            asyncio.get_running_loop().create_task(self._schedule())

    # --- storing -------------------------------------------------------------------------------------
    def _write(self, run_id: int) -> None:
        """Store what waits for the run (normally: what just arrived), stream what was stored,
        and apply the checkpoints now in place. Never raises: what the disk refuses waits."""
        try:
            stored = self.backlog.write(run_id)
        except Exception:  # noqa: BLE001 - not the disk: a bug; keep the server and the run going
            logger.exception("could not store the reports of run %s", run_id)
            return
        feed = self.feeds.get(run_id)
        held = self.backlog.unstored(run_id) is not None
        if feed is not None:
            points, start = stored.points, 0
            for epoch in stored.epochs:  # each epoch right after the last step of it
                end = start
                while end < len(points) and points[end][1] <= epoch["epoch"]:
                    end += 1
                feed.add_points(points[start:end])
                feed.add_epoch(epoch)
                start = end
            feed.add_points(points[start:])
        for checkpoint in stored.checkpoints:
            self._apply(run_id, checkpoint)
        if held != (run_id in self._held):  # the disk began to refuse, or took everything
            self._held.symmetric_difference_update({run_id})
            self.revision.bump()
            if feed is not None and run_id in self.table.rows:  # the Run says what is unstored
                feed.add_status(self.describe(run_id))
        if run_id not in self.table.live and not held:
            self.feeds.unpin(run_id)  # all stored: the feed of a run that ended may go

    def _write_all(self) -> None:
        for run_id in list(self.backlog.runs):
            self._write(run_id)

    async def _flush_periodically(self) -> None:
        """Retry what the disk refused, every `flush_interval_s`."""
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            self._write_all()
