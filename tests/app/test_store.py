"""The SQLite store: schema versioning and migrations, batched iteration losses, and what a
restart finds."""

from __future__ import annotations

import sqlite3

import pytest

from app.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError

EPOCH = {"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.5, "val_loss": 1.9,
         "val_accuracy": 0.6, "duration_s": 1.0, "learning_rate": 0.1}


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
    reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_sweeps_and_their_trials(tmp_path):
    store = Store(tmp_path / "mnist-lab.sqlite3")
    sweep = store.create_sweep("lr", {"method": "tpe", "trials": 4}, "2026-01-01T00:00:00+00:00")
    assert (sweep["name"], sweep["status"], sweep["spec"]["trials"]) == ("lr", "running", 4)
    trial = store.create_run({"epochs": 2}, "2026-01-01T00:00:01+00:00", sweep["id"], 0)
    plain = store.create_run({"epochs": 2}, "2026-01-01T00:00:02+00:00")
    assert (trial["sweep_id"], trial["trial"]) == (sweep["id"], 0)
    assert (plain["sweep_id"], plain["trial"]) == (None, None)
    for number, accuracy in ((1, 0.5), (2, 0.7)):
        store.add_epoch(trial["id"], {"epoch": number, "train_loss": 1.0, "train_accuracy": 0.4,
                                      "val_loss": 1.0, "val_accuracy": accuracy, "duration_s": 1.0,
                                      "learning_rate": 0.1})
    assert store.last_epochs([trial["id"], plain["id"]]) == {trial["id"]: {
        "epoch": 2, "train_loss": 1.0, "train_accuracy": 0.4, "val_loss": 1.0, "val_accuracy": 0.7,
        "duration_s": 1.0, "learning_rate": 0.1}}
    store.update_run(trial["id"], status="pruned")
    store.update_sweep(sweep["id"], status="completed", finished_at="2026-01-01T00:01:00+00:00")
    assert store.sweeps()[0]["status"] == "completed"
    with pytest.raises(KeyError):
        store.update_sweep(sweep["id"], name="renamed")
    store.delete_sweep(sweep["id"])
    assert store.sweeps() == [] and store.run(trial["id"])["status"] == "pruned"


VERSION_1_RUNS = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, config TEXT NOT NULL,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, duration_s REAL, reason TEXT,
    epoch INTEGER NOT NULL DEFAULT 0, step INTEGER NOT NULL DEFAULT -1, steps_per_epoch INTEGER,
    samples_per_second REAL, best_val_accuracy REAL, test_accuracy REAL,
    has_model INTEGER NOT NULL DEFAULT 0);
CREATE TABLE epochs (run_id INTEGER NOT NULL, epoch INTEGER NOT NULL, train_loss REAL NOT NULL,
    train_accuracy REAL NOT NULL, val_loss REAL NOT NULL, val_accuracy REAL NOT NULL,
    duration_s REAL NOT NULL, learning_rate REAL NOT NULL, PRIMARY KEY (run_id, epoch));
CREATE TABLE iterations (run_id INTEGER NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL,
    loss REAL NOT NULL, PRIMARY KEY (run_id, step));
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO runs (status, config, created_at) VALUES ('completed', '{"epochs": 1}', 'then');
PRAGMA user_version=1;
"""


def test_a_version_1_database_gains_sweeps_and_keeps_its_runs(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(VERSION_1_RUNS)
    store = Store(path)
    [old] = store.runs()
    assert (old["status"], old["config"], old["sweep_id"], old["trial"]) == (
        "completed", {"epochs": 1}, None, None)
    assert store.sweeps() == []
    store.create_sweep("after the upgrade", {}, "now")
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def version_1_database(path) -> None:
    """A file as MNIST Lab wrote it before runs had names (schema version 1): one finished run
    with an epoch and two steps."""
    with sqlite3.connect(path) as db:
        db.executescript(f"{MIGRATIONS[0]} PRAGMA user_version=1;")
        db.execute("INSERT INTO runs (id, status, config, created_at, step, epoch, has_model) "
                   "VALUES (1, 'completed', '{\"epochs\": 1}', '2026-01-01T00:00:00+00:00', 1, 1, 1)")
        db.execute(f"INSERT INTO epochs (run_id, {', '.join(EPOCH)}) "
                   f"VALUES (1, {', '.join('?' * len(EPOCH))})", tuple(EPOCH.values()))
        db.executemany("INSERT INTO iterations VALUES (1, ?, 1, ?)", [(0, 2.3), (1, 2.1)])


def test_a_version_1_database_is_migrated_and_keeps_its_runs(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    version_1_database(path)
    store = Store(path)
    run = store.run(1)
    assert (run["status"], run["config"], run["has_model"]) == ("completed", {"epochs": 1}, True)
    assert (run["name"], run["tags"], run["notes"]) == (None, [], None)
    assert (run["diverged_step"], run["diverged_loss"]) == (None, None)
    assert store.iterations(1) == [(0, 1, 2.3), (1, 1, 2.1)] and store.epochs(1) == [EPOCH]
    store.update_run(1, name="from before", tags=("old", "kept"), notes="line one\nline two")
    store.close()
    reopened = Store(path)  # nothing left to migrate: opening again changes nothing
    assert reopened.run(1) == {**run, "name": "from before", "tags": ["old", "kept"],
                               "notes": "line one\nline two"}
    reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_migration_that_fails_leaves_the_database_as_it_was(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    version_1_database(path)
    with sqlite3.connect(path) as db:  # a column migration 2 adds, there already: it must fail
        db.execute("ALTER TABLE runs ADD COLUMN diverged_step INTEGER")
    with pytest.raises(sqlite3.OperationalError, match="duplicate column"):
        Store(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        assert "diverged_step" in columns and not {"name", "tags", "notes"} & columns
        assert db.execute("SELECT status FROM runs WHERE id = 1").fetchone() == ("completed",)


def test_a_runs_name_tags_notes_and_divergence_are_stored(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    store = Store(path)
    run = store.create_run({"epochs": 1}, "2026-01-01T00:00:00+00:00")
    assert (run["name"], run["tags"], run["notes"], run["diverged_step"]) == (None, [], None, None)
    store.update_run(run["id"], status="failed", name="lr 10", tags=("diverges", "été"),
                     notes=None, diverged_step=12, diverged_loss=426.1)
    store.update_run(other := store.create_run({}, "2026-01-01T00:00:01+00:00")["id"],
                     status="failed", diverged_step=0, diverged_loss=None)
    store.close()
    reopened = Store(path)
    stored = reopened.run(run["id"])
    assert (stored["name"], stored["tags"], stored["notes"]) == ("lr 10", ["diverges", "été"], None)
    assert (stored["diverged_step"], stored["diverged_loss"]) == (12, 426.1)
    assert (reopened.run(other)["diverged_step"], reopened.run(other)["diverged_loss"]) == (0, None)


def test_the_server_is_the_databases_only_user_so_no_file_is_memory_mapped(tmp_path):
    """No `-shm` file: SQLite keeps the WAL index in the process's memory (a mapped file that
    turns read-only or has no room left kills the process with SIGBUS on its next write). A
    second server on the same data dir is refused with what to do."""
    path = tmp_path / "mnist-lab.sqlite3"
    store = Store(path)
    store.add_iterations(store.create_run({"epochs": 1}, "2026-01-01T00:00:00+00:00")["id"],
                         [(0, 1, 2.3)])
    assert not path.with_name(path.name + "-shm").exists()
    mapped = [line for line in open("/proc/self/maps") if str(tmp_path) in line]
    assert mapped == []
    with pytest.raises(StoreError, match="in use by another program"):
        Store(path)
    assert store.iterations(1) == [(0, 1, 2.3)]  # the refusal left the first one working
    store.close()
