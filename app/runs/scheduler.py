"""Which run trains next, and what its worker is given."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from app.runs.table import LiveRun
from app.settings import Settings
from app.worker import RunJob


class Scheduler:
    """Queued runs start oldest first, while fewer than `max_concurrent_runs` hold a worker."""

    def __init__(self, settings: Settings, model_path):
        self.settings = settings
        self.model_path = model_path  # run id -> where its model lives

    def next_to_start(self, live: Iterable[LiveRun]) -> LiveRun | None:
        live = list(live)
        busy = sum(1 for run in live if run.handle is not None)
        waiting = [run for run in live if run.handle is None]
        if busy >= self.settings.max_concurrent_runs or not waiting:
            return None
        return min(waiting, key=lambda run: run.run_id)

    def job(self, live: LiveRun) -> RunJob:
        settings = self.settings
        return RunJob(run_id=live.run_id, config=live.config, data_dir=settings.data_dir,
                      model_path=Path(self.model_path(live.run_id)),
                      train_subset=settings.train_subset, test_subset=settings.test_subset,
                      nice=settings.worker_nice, threads=settings.worker_threads)
