"""The sweep service: sweeps whose trials are ordinary runs of the run service.

It talks to the run service only (never to an executor): a trial starts as `runs.submit(config,
sweep_id, trial)`, is pruned with `runs.prune(run_id, reason)` and stopped with `runs.stop`, and
its epochs and end come back through the run service's observers. So a sweep runs on whatever
executor the runs do, and each trial streams, persists, can be opened, compared and predicted with
like any other run.

Each running sweep has a driver: a task that moves its `Sweep` (app/sweeps/sweep.py, the ask-and-
tell loop shared with `mnist-lab sweep`) as its trials' events arrive. Optuna's calls (which append
to the sweep's journal, fsync'ed) run on a worker thread, one at a time per sweep; the event loop
only queues events. A sweep survives a restart: it goes on where it was (its trials that were
training end `interrupted`, and are asked again with the same parameters; app/sweeps/search.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field

from app import limits, schemas
from app.limits import LimitExceeded
from app.runs.errors import Conflict
from app.runs.service import RunService
from app.runs.state import Moment, RunMessage, RunState
from app.settings import Settings
from app.store import Store
from app.sweeps import presenter
from app.sweeps.journal import journal_path, open_journal, remove_journal
from app.sweeps.record import SweepRecord, SweepStatus
from app.sweeps.search import Proposal, Search
from app.sweeps.spec import SweepSpec, make_spec
from app.sweeps.sweep import Sweep
from engine import config as engine_config
from engine.config import ConfigError
from engine.events import EpochEvent, kept_epoch

logger = logging.getLogger("app.sweeps")

RETRY_S = 2.0  # a trial the run queue had no room for is offered again this often


class SweepNotFound(LookupError):
    """No sweep has this id (HTTP 404)."""

    def __init__(self, sweep_id: int):
        super().__init__(f"there is no sweep {sweep_id}; GET /api/sweeps lists the sweeps that exist")


# --- what a driver hears ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialEpoch:
    run_id: int
    trial: int
    epoch: int
    metrics: dict


@dataclass(frozen=True)
class TrialEnded:
    run_id: int
    trial: int
    status: str


@dataclass(frozen=True)
class StopAsked:
    pass


@dataclass
class Driver:
    record_id: int
    sweep: Sweep
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    pending: list[Proposal] = field(default_factory=list)  # asked for, not yet runs
    task: asyncio.Task | None = None
    helpers: set[asyncio.Task] = field(default_factory=set)  # prunes and stops under way
    launched: asyncio.Event = field(default_factory=asyncio.Event)  # its first trials were offered


class SweepService:
    def __init__(self, settings: Settings, store: Store, runs: RunService):
        self.settings = settings
        self.store = store
        self.runs = runs
        self.records: dict[int, SweepRecord] = {}
        self.drivers: dict[int, Driver] = {}
        # run id -> the epoch each trial's run keeps (best so far), and how many it finished
        self.kept: dict[int, tuple[dict, int]] = {}
        runs.observers.append(self._observe)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the sweeps; those that were running go on (after the run service started, so
        their trials that were training are `interrupted` by now)."""
        fields = engine_config.field_bounds()  # what every stored spec was checked against
        for row in await asyncio.to_thread(self.store.sweeps):
            try:
                spec = SweepSpec.from_json(row["spec"], fields)
            except (ValueError, KeyError, TypeError) as error:  # SpaceError, ConfigError: a newer
                # engine's bounds, a damaged row. The server starts all the same; the trials stay runs.
                logger.error("sweep %s is left out: its stored spec cannot be read (%s)", row["id"], error)
                continue
            self.records[row["id"]] = SweepRecord(row["id"], spec, row["status"], row["created_at"],
                                                  row["reason"], row["finished_at"])
        trial_runs = [run.id for sweep_id in self.records for run in self.runs.trials(sweep_id)]
        self.kept = await asyncio.to_thread(self.runs.kept_epochs, trial_runs)
        for record in list(self.records.values()):
            if record.status == "running":
                await self._resume(record)

    async def shutdown(self) -> None:
        """Stop driving (before the run service shuts down: the trials it stops then end
        `interrupted`, and are asked again when the sweep resumes)."""
        tasks = [t for d in self.drivers.values() for t in (d.task, *d.helpers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.drivers.clear()

    # --- queries -----------------------------------------------------------------------------
    def get(self, sweep_id: int) -> schemas.Sweep:
        record = self._record(sweep_id)
        return presenter.sweep(record, self._trials(record))

    def list_sweeps(self) -> schemas.SweepList:
        records = sorted(self.records.values(), key=lambda r: r.id, reverse=True)
        return schemas.SweepList(sweeps=[presenter.sweep_summary(r, self._trials(r)) for r in records])

    def _record(self, sweep_id: int) -> SweepRecord:
        record = self.records.get(sweep_id)
        if record is None:
            raise SweepNotFound(sweep_id)
        return record

    def _trials(self, record: SweepRecord) -> list[schemas.SweepTrial]:
        return [presenter.trial(record, run, *self.kept.get(run.id, (None, 0)))
                for run in self.runs.trials(record.id)]

    # --- commands ------------------------------------------------------------------------------
    async def create(self, body: schemas.SweepCreate) -> schemas.Sweep:
        """Check (422), admit (429: too many sweeps running; 409: no room for its runs), store,
        and start its first trials."""
        settings = self.settings
        running = sum(1 for record in self.records.values() if record.status == "running")
        if running >= settings.max_active_sweeps:
            raise LimitExceeded(429, (
                f"{running} sweeps are running, the most the server runs at once "
                f"(MNIST_LAB_MAX_ACTIVE_SWEEPS={settings.max_active_sweeps}); wait for one to "
                "finish or stop one"), retry_after_s=60)
        base = body.base if isinstance(body.base, str) else body.base.model_dump(exclude_unset=True)
        config = limits.run_config({"preset": base} if isinstance(base, str) else base, settings)
        spec = make_spec(
            base=config, fields=limits.field_bounds(settings), name=body.name,
            space={name: param.model_dump(exclude_none=True) for name, param in body.space.items()},
            method=body.method, trials=body.trials, metric=body.metric, pruner=body.pruner,
            max_concurrent=(body.max_concurrent if body.max_concurrent is not None
                            else min(settings.max_concurrent_runs, settings.max_sweep_concurrent)),
            seed=body.seed, max_trials=settings.max_sweep_trials,
            max_concurrent_limit=settings.max_sweep_concurrent,
            check_config=lambda trial_config: limits.check_run_config(trial_config, settings))
        self.runs.check_room(spec.trials)
        row = self.store.create_sweep(spec.name, spec.to_json(), Moment.now().iso)
        record = SweepRecord(row["id"], spec, "running", row["created_at"])
        self.records[record.id] = record
        try:
            sweep = await asyncio.to_thread(self._open, record)
        except Exception as error:
            self._finish(record.id, "failed", f"its optimiser could not be set up: {error}")
            raise
        driver = self._drive(record, sweep)
        await driver.launched.wait()
        return self.get(record.id)

    async def stop(self, sweep_id: int) -> schemas.Sweep:
        """Start no more trials and stop those training; returns once they ended (or after the
        time a stop may take)."""
        record = self._record(sweep_id)
        driver = self.drivers.get(sweep_id)
        if record.status != "running" or driver is None:
            raise Conflict(f"sweep {sweep_id} is {record.status}, it cannot be stopped; only a "
                           "running sweep can")
        driver.queue.put_nowait(StopAsked())
        await asyncio.wait({driver.task}, timeout=2 * self.settings.stop_timeout_s + 5)
        return self.get(sweep_id)

    async def delete(self, sweep_id: int) -> None:
        """Delete a sweep and its trials' runs (a running sweep is stopped first)."""
        record = self._record(sweep_id)
        driver = self.drivers.get(sweep_id)
        if driver is not None and record.status == "running":
            await self.stop(sweep_id)
        driver = self.drivers.pop(sweep_id, None)
        if driver is not None and driver.task is not None:  # one that did not stop in time
            driver.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver.task
        for run in self.runs.trials(sweep_id):
            await self.runs.delete(run.id)
            self.kept.pop(run.id, None)
        self.store.delete_sweep(sweep_id)
        self.records.pop(sweep_id, None)
        await asyncio.to_thread(remove_journal, journal_path(self.settings.data_dir, sweep_id))

    # --- driving -------------------------------------------------------------------------------
    def _open(self, record: SweepRecord) -> Sweep:
        """The sweep's study, from its journal (worker thread: file I/O and Optuna)."""
        storage = open_journal(journal_path(self.settings.data_dir, record.id))
        search = Search(record.spec, storage, study_name=f"sweep-{record.id}")
        interrupted = search.replace_interrupted()
        if interrupted:
            logger.warning("sweep %s: trials %s were interrupted; they are asked again", record.id,
                           interrupted)
        return Sweep(record.spec, search)

    async def _resume(self, record: SweepRecord) -> None:
        try:
            sweep = await asyncio.to_thread(self._open, record)
        except Exception as error:  # noqa: BLE001 - a damaged journal must not stop the server
            logger.exception("sweep %s cannot go on", record.id)
            self._finish(record.id, "failed", f"its optimiser's journal could not be read ({error}); "
                         "its trials are kept as runs")
            return
        self._drive(record, sweep)

    def _drive(self, record: SweepRecord, sweep: Sweep) -> Driver:
        driver = Driver(record.id, sweep)
        self.drivers[record.id] = driver
        driver.task = asyncio.get_running_loop().create_task(self._run(driver),
                                                             name=f"sweep-{record.id}")
        return driver

    async def _run(self, driver: Driver) -> None:
        sweep = driver.sweep
        try:
            while True:
                await self._launch(driver)
                driver.launched.set()
                if sweep.done:
                    break
                try:
                    event = await asyncio.wait_for(driver.queue.get(),
                                                   RETRY_S if driver.pending else None)
                except TimeoutError:
                    continue
                await self._handle(driver, event)
            self._finish(driver.record_id, "stopped" if sweep.stopping else "completed")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the sweep fails, the server goes on
            if not isinstance(error, _SweepFailed):
                logger.exception("sweep %s failed", driver.record_id)
            reason = str(error) if isinstance(error, _SweepFailed) else \
                f"the sweep stopped on an error: {error}"
            self._finish(driver.record_id, "failed", reason)
            await self._stop_trials(driver.record_id)
        finally:
            driver.launched.set()

    async def _launch(self, driver: Driver) -> None:
        """Offer the trials the sweep wants started as runs; those the run queue has no room
        for wait (`pending`) and are offered again."""
        if not driver.pending:
            driver.pending = await asyncio.to_thread(driver.sweep.propose)
        while driver.pending:
            proposal = driver.pending[0]
            try:
                await self.runs.submit(proposal.config, driver.record_id, proposal.trial)
            except LimitExceeded as error:
                if error.status_code == 429:  # the queue is full: later
                    return
                if error.status_code == 409:  # no room for runs: nothing more can train
                    raise _SweepFailed(f"trial {proposal.trial} could not start: {error.detail}") \
                        from None
                await self._refused(driver, proposal, error.detail)
            except ConfigError as error:
                await self._refused(driver, proposal, str(error))
            driver.pending.pop(0)

    async def _refused(self, driver: Driver, proposal: Proposal, why: str) -> None:
        logger.warning("sweep %s: trial %s was refused: %s", driver.record_id, proposal.trial, why)
        await asyncio.to_thread(driver.sweep.ended, proposal.trial, "failed")

    async def _handle(self, driver: Driver, event) -> None:
        sweep = driver.sweep
        match event:
            case TrialEpoch(run_id=run_id, trial=trial, epoch=epoch, metrics=metrics):
                reason = await asyncio.to_thread(sweep.epoch, trial, epoch, metrics)
                if reason is not None:
                    self._helper(driver, self._quietly(self.runs.prune(run_id, reason)))
            case TrialEnded(trial=trial, status=status):
                await asyncio.to_thread(sweep.ended, trial, status)
            case StopAsked():
                sweep.stop()
                for proposal in driver.pending:  # asked for, never started
                    await asyncio.to_thread(sweep.ended, proposal.trial, "stopped")
                driver.pending = []
                self._helper(driver, self._stop_trials(driver.record_id))

    def _helper(self, driver: Driver, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        driver.helpers.add(task)
        task.add_done_callback(driver.helpers.discard)

    async def _stop_trials(self, sweep_id: int) -> None:
        runs = [run.id for run in self.runs.trials(sweep_id) if run.active]
        await asyncio.gather(*(self._quietly(self.runs.stop(run_id)) for run_id in runs))

    @staticmethod
    async def _quietly(work) -> None:
        with contextlib.suppress(Conflict):  # the run ended meanwhile
            await work

    def _finish(self, sweep_id: int, status: SweepStatus, reason: str | None = None) -> None:
        self.drivers.pop(sweep_id, None)
        record = self.records.get(sweep_id)
        if record is None:  # deleted
            return
        finished_at = Moment.now().iso
        self.records[sweep_id] = dataclasses.replace(record, status=status, reason=reason,
                                                     finished_at=finished_at)
        try:
            self.store.update_sweep(sweep_id, status=status, reason=reason, finished_at=finished_at)
        except Exception:  # noqa: BLE001 - a full disk: the sweep still ends here
            logger.exception("could not record the end of sweep %s", sweep_id)
        self.runs.revision.bump()

    # --- what the run service tells ----------------------------------------------------------------
    def _observe(self, message: RunMessage, before: RunState, after: RunState) -> None:
        if after.sweep_id is None:
            return
        if isinstance(message, EpochEvent):
            epoch = dataclasses.asdict(message)
            kept = self.kept[after.id][0] if after.id in self.kept else None
            self.kept[after.id] = (epoch if kept is None or kept_epoch([kept, epoch]) is epoch
                                   else kept, message.epoch)
        driver = self.drivers.get(after.sweep_id)
        if driver is None:
            return
        if isinstance(message, EpochEvent):
            driver.queue.put_nowait(TrialEpoch(after.id, after.trial, message.epoch,
                                               dataclasses.asdict(message)))
        if before.active and not after.active:
            driver.queue.put_nowait(TrialEnded(after.id, after.trial, after.status))


class _SweepFailed(Exception):
    """The sweep cannot go on; the message says why."""
