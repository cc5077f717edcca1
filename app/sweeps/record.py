"""A sweep as the server keeps it: its stored record (app/store.py's `sweeps` table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from app.sweeps.spec import SweepSpec

SweepStatus = Literal["running", "completed", "stopped", "failed"]
SWEEP_STATUSES: tuple[SweepStatus, ...] = get_args(SweepStatus)
# running: trials train or wait (also again after a restart); completed: every trial ran;
# stopped: on request, before every trial ran; failed: the sweep could not go on (the reason says).


@dataclass(frozen=True)
class SweepRecord:
    id: int
    spec: SweepSpec
    status: SweepStatus
    created_at: str
    reason: str | None = None
    finished_at: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name
