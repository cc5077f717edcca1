"""The SQLite store: schema versioning and migrations, batched iteration losses, and what a
restart finds."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from app.store import SCHEMA_VERSION, Store, StoreError


@contextlib.contextmanager
def database(path):
    """A plain connection to the file, committed and closed at the end of the block (a Store
    needs the file to itself: it opens it in exclusive locking mode)."""
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()

# An epoch as version 1 stored it (train_*: the running mean over its batches), and as it reads
# once migrated (version 4: running_*; the clean train metric was not measured).
V1_EPOCH = {"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.5, "val_loss": 1.9,
            "val_accuracy": 0.6, "duration_s": 1.0, "learning_rate": 0.1}
MIGRATED_EPOCH = {"epoch": 1, "train_loss": None, "train_accuracy": None, "val_loss": 1.9,
                  "val_accuracy": 0.6, "running_loss": 2.0, "running_accuracy": 0.5,
                  "duration_s": 1.0, "learning_rate": 0.1}


def test_runs_metrics_and_restart(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    store = Store(path)
    run = store.create_run({"epochs": 2}, "2026-01-01T00:00:00+00:00")
    other = store.create_run({"epochs": 1}, "2026-01-01T00:00:01+00:00")
    store.update_run(run["id"], status="running", step=2)
    store.add_iterations(run["id"], [(0, 1, 2.3), (1, 1, 2.1)])
    store.add_iterations(run["id"], [(1, 1, 9.9), (2, 1, 1.9)])  # a repeated step keeps its value
    store.add_epoch(run["id"], {"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.5, "val_loss": 1.9,
                                "val_accuracy": 0.6, "running_loss": 2.1, "running_accuracy": 0.4,
                                "duration_s": 1.0, "learning_rate": 0.1})
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
    with database(path) as db:
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
        store.add_epoch(trial["id"], {**MIGRATED_EPOCH, "epoch": number, "val_accuracy": accuracy})
    assert store.last_epochs([trial["id"], plain["id"]]) == {
        trial["id"]: {**MIGRATED_EPOCH, "epoch": 2, "val_accuracy": 0.7}}
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
    with database(path) as db:
        db.executescript(VERSION_1_RUNS)
    store = Store(path)
    [old] = store.runs()
    assert (old["status"], old["config"], old["sweep_id"], old["trial"]) == (
        "completed", {"epochs": 1}, None, None)
    assert store.sweeps() == []
    store.create_sweep("after the upgrade", {}, "now")
    store.close()
    with database(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    with database(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        Store(path)


V1_TABLES = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, config TEXT NOT NULL,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, duration_s REAL, reason TEXT,
    epoch INTEGER NOT NULL DEFAULT 0, step INTEGER NOT NULL DEFAULT -1, steps_per_epoch INTEGER,
    samples_per_second REAL, best_val_accuracy REAL, test_accuracy REAL,
    has_model INTEGER NOT NULL DEFAULT 0);
CREATE TABLE epochs (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL, train_loss REAL NOT NULL, train_accuracy REAL NOT NULL,
    val_loss REAL NOT NULL, val_accuracy REAL NOT NULL, duration_s REAL NOT NULL,
    learning_rate REAL NOT NULL, PRIMARY KEY (run_id, epoch)) WITHOUT ROWID;
CREATE TABLE iterations (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL, epoch INTEGER NOT NULL, loss REAL NOT NULL,
    PRIMARY KEY (run_id, step)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
"""  # a file as MNIST Lab wrote it before runs had names (version 1), written out as it was
V1_SCHEMA = V1_TABLES + """
INSERT INTO runs (status, config, created_at, test_accuracy, has_model)
    VALUES ('completed', '{"epochs": 1}', '2026-01-01T00:00:00+00:00', 0.97, 1);
INSERT INTO epochs VALUES (1, 1, 0.61, 0.84, 0.12, 0.965, 20.5, 0.05);
PRAGMA user_version=1;
"""


def test_an_old_database_is_migrated_keeping_what_each_number_was(tmp_path):
    """Before validation was held out, an epoch's train_* was the running mean over its batches:
    it becomes running_*, and the clean train metric, never measured, is NULL."""
    path = tmp_path / "mnist-lab.sqlite3"
    with database(path) as db:
        db.executescript(V1_SCHEMA)
    store = Store(path)
    assert store.epochs(1) == [{"epoch": 1, "train_loss": None, "train_accuracy": None,
                                "val_loss": 0.12, "val_accuracy": 0.965, "running_loss": 0.61,
                                "running_accuracy": 0.84, "duration_s": 20.5,
                                "learning_rate": 0.05}]
    run = store.run(1)
    assert (run["test_accuracy"], run["test_loss"], run["model_epoch"]) == (0.97, None, None)
    store.add_layers(1, 5, 1, '{"step": 5}')
    assert store.layers(1) == (['{"step": 5}'], False)
    store.add_epoch(1, {"epoch": 2, "train_loss": 0.1, "train_accuracy": 0.97, "val_loss": None,
                        "val_accuracy": None, "running_loss": 0.2, "running_accuracy": 0.9,
                        "duration_s": 1.0, "learning_rate": 0.01})  # null validation fits
    store.close()
    with database(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert Store(path).epochs(1)[1]["val_accuracy"] is None


def test_layer_statistics_page_through_in_step_order(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    run = store.create_run({"epochs": 1}, "2026-01-01T00:00:00+00:00")["id"]
    other = store.create_run({"epochs": 1}, "2026-01-01T00:00:00+00:00")["id"]
    for step in (40, 0, 20, 10, 30):
        store.add_layers(run, step, 1, f'{{"step": {step}, "pad": "{"x" * 100}"}}')
    store.add_layers(other, 15, 1, '{"step": 15}')
    steps = lambda bodies: [json.loads(body)["step"] for body in bodies]  # noqa: E731
    bodies, more = store.layers(run, limit=2)
    assert steps(bodies) == [0, 10] and more
    bodies, more = store.layers(run, after=10, limit=2)
    assert steps(bodies) == [20, 30] and more
    bodies, more = store.layers(run, after=30, limit=2)
    assert steps(bodies) == [40] and not more
    bodies, more = store.layers(run, limit=10, max_bytes=250)  # about two bodies' worth
    assert steps(bodies) == [0, 10] and more
    assert steps(store.layers(run, limit=10, max_bytes=1)[0]) == [0]  # always at least one
    store.delete_run(run)
    assert store.layers(run) == ([], False) and steps(store.layers(other)[0]) == [15]


def version_1_database(path) -> None:
    """A file as MNIST Lab wrote it before runs had names (schema version 1): one finished run
    with an epoch and two steps."""
    with database(path) as db:
        db.executescript(V1_TABLES + "PRAGMA user_version=1;")
        db.execute("INSERT INTO runs (id, status, config, created_at, step, epoch, has_model) "
                   "VALUES (1, 'completed', '{\"epochs\": 1}', '2026-01-01T00:00:00+00:00', 1, 1, 1)")
        db.execute(f"INSERT INTO epochs (run_id, {', '.join(V1_EPOCH)}) "
                   f"VALUES (1, {', '.join('?' * len(V1_EPOCH))})", tuple(V1_EPOCH.values()))
        db.executemany("INSERT INTO iterations VALUES (1, ?, 1, ?)", [(0, 2.3), (1, 2.1)])


def test_a_version_1_database_is_migrated_and_keeps_its_runs(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    version_1_database(path)
    store = Store(path)
    run = store.run(1)
    assert (run["status"], run["config"], run["has_model"]) == ("completed", {"epochs": 1}, True)
    assert (run["name"], run["tags"], run["notes"]) == (None, [], None)
    assert (run["diverged_step"], run["diverged_loss"]) == (None, None)
    assert store.iterations(1) == [(0, 1, 2.3), (1, 1, 2.1)] and store.epochs(1) == [MIGRATED_EPOCH]
    store.update_run(1, name="from before", tags=("old", "kept"), notes="line one\nline two")
    store.close()
    reopened = Store(path)  # nothing left to migrate: opening again changes nothing
    assert reopened.run(1) == {**run, "name": "from before", "tags": ["old", "kept"],
                               "notes": "line one\nline two"}
    reopened.close()
    with database(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_migration_that_fails_leaves_the_database_as_it_was(tmp_path):
    path = tmp_path / "mnist-lab.sqlite3"
    version_1_database(path)
    with database(path) as db:  # a column migration 2 adds, there already: it must fail
        db.execute("ALTER TABLE runs ADD COLUMN diverged_step INTEGER")
    with pytest.raises(sqlite3.OperationalError, match="duplicate column"):
        Store(path)
    with database(path) as db:
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
