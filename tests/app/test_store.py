"""The SQLite store: schema versioning, batched iteration losses, and what a restart finds."""

from __future__ import annotations

import sqlite3

import pytest

from app.store import SCHEMA_VERSION, Store, StoreError


def test_runs_metrics_and_restart(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    store = Store(path)
    run = store.create_run({"epochs": 2}, "2026-01-01T00:00:00+00:00")
    other = store.create_run({"epochs": 1}, "2026-01-01T00:00:01+00:00")
    store.update_run(run["id"], status="running", step=2)
    store.add_iterations(run["id"], [(0, 1, 2.3), (1, 1, 2.1)])
    store.add_iterations(run["id"], [(1, 1, 9.9), (2, 1, 1.9)])  # a repeated step keeps its value
    store.add_epoch(run["id"], {"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.5, "val_loss": 1.9,
                                "val_accuracy": 0.6, "duration_s": 1.0, "learning_rate": 0.1})
    store.update_run(other["id"], status="completed")
    store.close()

    reopened = Store(path)
    assert reopened.mark_interrupted() == [run["id"]]
    assert reopened.run(run["id"])["status"] == "interrupted"
    assert "running" in reopened.run(run["id"])["reason"]
    assert reopened.run(other["id"])["status"] == "completed"
    assert reopened.iterations(run["id"]) == [(0, 1, 2.3), (1, 1, 2.1), (2, 1, 1.9)]
    assert reopened.iterations(run["id"], after=0) == [(1, 1, 2.1), (2, 1, 1.9)]
    assert reopened.epochs(run["id"])[0]["val_accuracy"] == 0.6
    assert [r["id"] for r in reopened.runs()] == [other["id"], run["id"]]  # newest first
    assert reopened.delete_run(run["id"]) and reopened.iterations(run["id"]) == []
    assert reopened.epochs(run["id"]) == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        Store(path)
