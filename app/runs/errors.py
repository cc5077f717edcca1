"""What the run service refuses, each answered with one status code (app/errors.py)."""

from __future__ import annotations


class RunNotFound(LookupError):
    """No run has this id (HTTP 404)."""

    def __init__(self, run_id: int):
        super().__init__(f"there is no run {run_id}; GET /api/runs lists the runs that exist")


class Conflict(Exception):
    """A request that makes no sense in the run's current state (HTTP 409)."""


class NoModelYet(Conflict):
    """The run (or the server) has no trained model yet (HTTP 409, like every other conflict)."""


class NotSettled(Exception):
    """A request whose effect the run did not confirm in time (HTTP 503: ask again)."""
