"""The runs' models: where each one's file is, checkpoints taken over from the workers, and which
model /predict uses when a request names none (the active model)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from app.runs.state import RunState
from app.settings import Settings
from app.store import Store
from app.worker import PENDING_SUFFIX

logger = logging.getLogger("app.runs")

ACTIVE_MODEL_KEY = "active_model_run_id"
ChosenBy = Literal["user", "best"]


class ModelFiles:
    """Each run's model file (where `Settings.model_path` says), and the checkpoints workers
    write next to them."""

    def __init__(self, settings: Settings):
        self.models_dir = settings.models_dir
        self.path = settings.model_path

    def exists(self, run_id: int) -> bool:
        return self.path(run_id).is_file()

    def take_over(self, run_id: int, checkpoint: str) -> None:
        """Move a worker's checkpoint into place (OSError if it cannot be)."""
        os.replace(checkpoint, self.path(run_id))

    def discard(self, checkpoint: str) -> None:
        Path(checkpoint).unlink(missing_ok=True)

    def discard_pending(self, run_id: int | None = None, keep: Iterable[str] = ()) -> None:
        """Checkpoints nobody will take over: of one run (saved by a worker that died before
        reporting it), or of every run (left by the previous server); but those in `keep`
        (reported, and waiting for their epoch to be stored)."""
        pattern = f"*{PENDING_SUFFIX}" if run_id is None else f"run-{run_id}.epoch-*{PENDING_SUFFIX}"
        kept = {Path(path) for path in keep}
        for leftover in self.models_dir.glob(pattern):
            if leftover not in kept:
                leftover.unlink(missing_ok=True)

    def remove(self, run_id: int) -> None:
        self.path(run_id).unlink(missing_ok=True)


def best_model(runs: Iterable[RunState]) -> int | None:
    """The run whose model serves by default: completed runs first, then the best validation
    accuracy (so while the very first run trains, its latest epoch serves)."""
    candidates = [run for run in runs if run.has_model]
    if not candidates:
        return None
    return max(candidates, key=lambda run: (run.status == "completed",
                                            run.best_val_accuracy or 0.0, run.id)).id


class ActiveModel:
    """The user's choice (kept in the store), else the best model."""

    def __init__(self, store: Store):
        self.store = store
        self._chosen: int | None | bool = False  # False: not read from the store yet

    @property
    def chosen(self) -> int | None:
        if self._chosen is False:
            value = self.store.get_meta(ACTIVE_MODEL_KEY)
            self._chosen = int(value) if value is not None else None
        return self._chosen

    def choose(self, run_id: int | None) -> None:
        self.store.set_meta(ACTIVE_MODEL_KEY, None if run_id is None else str(run_id))
        self._chosen = run_id

    def resolve(self, runs: dict[int, RunState]) -> tuple[int | None, ChosenBy | None]:
        chosen = self.chosen
        if chosen is not None and chosen in runs and runs[chosen].has_model:
            return chosen, "user"
        best = best_model(runs.values())
        return best, None if best is None else "best"
