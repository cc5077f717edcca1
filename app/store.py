"""Persistence: one SQLite file (WAL) holding runs, their configs, per-epoch metrics, every
per-iteration loss, the layer statistics of the watched steps, and the sweeps whose trials some
runs are. Model weights live next to it as `.npz` files (written by the workers); a sweep's
optimiser keeps its own journal (app/sweeps/).

The store is plain synchronous sqlite3 behind a lock, so it can be called from the event loop
(small writes) and from worker threads (reads, a slice at a time so that the lock is never held
for long) alike.

The database is opened in exclusive locking mode: the server is its only user while it runs, and
SQLite then keeps the WAL's index in the process's own memory instead of a memory-mapped `-shm`
file. A mapped file is written through page faults, and a page fault on a file that became
read-only or immutable, or on a file system with no room left, is a SIGBUS that kills the
server; plain writes that fail are errors the server answers (507) and recovers from.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints

from app.runs.state import ACTIVE_STATUSES
from engine.events import EPOCH_FIELDS, EpochEvent


def _epoch_columns() -> dict[str, str]:
    """The epochs table's metric columns: one per EpochEvent field, typed by it (a field that may
    be None is a nullable column)."""
    sql = {int: "INTEGER", float: "REAL", str: "TEXT"}
    hints = get_type_hints(EpochEvent)
    columns = {}
    for name in EPOCH_FIELDS:
        hint = hints[name]
        kinds = [kind for kind in getattr(hint, "__args__", (hint,)) if kind is not types.NoneType]
        nullable = len(kinds) < len(getattr(hint, "__args__", (hint,)))
        columns[name] = sql[kinds[0]] + ("" if nullable else " NOT NULL")
    return columns


EPOCH_COLUMNS = _epoch_columns()
_EPOCH_COLUMNS_SQL = "".join(f"    {name} {kind},\n" for name, kind in EPOCH_COLUMNS.items())
_EPOCHS_TABLE = f"""CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
{_EPOCH_COLUMNS_SQL}    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;"""
# One row per watched step: its LayersEvent as JSON (a few kB; with the first layer's images at
# an epoch's end, up to ~90 kB). A rowid table: its rows are too large for WITHOUT ROWID.
_LAYERS_TABLE = """CREATE TABLE IF NOT EXISTS layers (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);"""

# The schema's history: MIGRATIONS[n - 1] brings a database from version n - 1 to n (version 0:
# a new, empty file). A database runs the ones it lacks, in order, each in one transaction with its
# new version number, so a crash leaves it at one version or the next, never in between. To change
# the schema, append a migration; never edit one that has shipped (older files have run it). The
# epochs table's metric columns are the exception: they follow EpochEvent (see Store._migrate).
_VERSION_1 = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    duration_s REAL,
    reason TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT -1,
    steps_per_epoch INTEGER,
    samples_per_second REAL,
    best_val_accuracy REAL,
    test_accuracy REAL,
    has_model INTEGER NOT NULL DEFAULT 0
);
{_EPOCHS_TABLE}
CREATE TABLE IF NOT EXISTS iterations (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
"""
# 2: a run's name, tags (a JSON array of strings) and notes, given by its user; and where it
# diverged (the step whose loss blew up, and that loss: NULL when it was not finite).
_VERSION_2 = """
ALTER TABLE runs ADD COLUMN name TEXT;
ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN notes TEXT;
ALTER TABLE runs ADD COLUMN diverged_step INTEGER;
ALTER TABLE runs ADD COLUMN diverged_loss REAL;
"""
# 3: sweeps, and which sweep and trial a run is (a run may then end `pruned`).
_VERSION_3 = """
CREATE TABLE sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
ALTER TABLE runs ADD COLUMN sweep_id INTEGER;
ALTER TABLE runs ADD COLUMN trial INTEGER;
"""
# 4: held-out validation. Before it, an epoch's train_loss/train_accuracy were the running mean
# over its batches: they move to running_loss/running_accuracy, and the clean train metric, never
# measured then, is NULL (their "validation" was the test set). Runs get test_loss and
# model_epoch; the layer statistics get their table. (The epochs table is rebuilt: its val_*
# columns were NOT NULL, and a run without validation has none.)
_VERSION_4 = f"""
ALTER TABLE runs ADD COLUMN test_loss REAL;
ALTER TABLE runs ADD COLUMN model_epoch INTEGER;
ALTER TABLE epochs RENAME TO epochs_v2;
{_EPOCHS_TABLE}
INSERT INTO epochs (run_id, epoch, val_loss, val_accuracy, running_loss, running_accuracy,
                    duration_s, learning_rate)
    SELECT run_id, epoch, val_loss, val_accuracy, train_loss, train_accuracy, duration_s,
           learning_rate FROM epochs_v2;
DROP TABLE epochs_v2;
{_LAYERS_TABLE}
"""
MIGRATIONS: tuple[str, ...] = (_VERSION_1, _VERSION_2, _VERSION_3, _VERSION_4)
SCHEMA_VERSION = len(MIGRATIONS)
SWEEP_COLUMNS = ("status", "reason", "finished_at")  # what a sweep's changes update

RUN_COLUMNS = (  # the columns a run's changes update (RunState, app/runs/state.py)
    "status", "started_at", "finished_at", "duration_s", "reason", "epoch", "step",
    "steps_per_epoch", "samples_per_second", "best_val_accuracy", "test_accuracy", "has_model",
    "name", "tags", "notes", "diverged_step", "diverged_loss",  # version 2
    "test_loss", "model_epoch",  # version 4
)
JSON_COLUMNS = frozenset({"tags"})  # stored as JSON text, read back as lists
SQLITE_INTEGER_MAX = 2**63 - 1  # run ids and steps are SQLite integers


STORAGE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                  errno.EROFS: "the file system is read-only",
                  errno.EACCES: "it may not (permissions: the files are read-only to it)",
                  errno.EPERM: "it may not (the files are read-only or immutable)"}
SQLITE_STORAGE_MESSAGES = {"readonly": "the database or its file system is read-only",
                           "disk is full": "the disk is full",
                           "disk i/o": "writing failed (the disk may be read-only, full or failing)",
                           "unable to open": "the database file cannot be opened"}


def storage_problem(error: Exception) -> str | None:
    """What is wrong with the data dir, if `error` says the disk is full or not writable."""
    if isinstance(error, OSError):
        return STORAGE_ERRNOS.get(error.errno)
    if isinstance(error, sqlite3.Error):
        text = str(error).lower()
        return next((problem for key, problem in SQLITE_STORAGE_MESSAGES.items() if key in text), None)
    return None


class StoreError(RuntimeError):
    """The database cannot be used (for instance it was written by a newer MNIST Lab)."""


class StorageUnavailable(Exception):
    """Writing to the data dir fails (`problem`, from `storage_problem`; `error`, the failure):
    a request that would store something new is refused (HTTP 507) until it works again."""

    def __init__(self, problem: str, error: Exception | None):
        super().__init__(f"{problem} ({error})" if error else problem)
        self.problem, self.error = problem, error


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no shared memory (above)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crash of the process
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except BaseException as error:
            self._db.close()  # (its lock with it)
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise StoreError(f"{self.path} is in use by another program (another mnist-lab "
                                 "serve on the same data dir?); stop it, or use another "
                                 "--data-dir") from None
            raise

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this MNIST Lab understands "
                f"({SCHEMA_VERSION}); upgrade MNIST Lab or use another --data-dir"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            try:
                self._db.executescript(
                    f"BEGIN; {MIGRATIONS[number - 1]} PRAGMA user_version={number}; COMMIT;")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        # A metric added to EpochEvent since this file was created becomes a column; epochs stored
        # before have NULL there (so such a field must be `X | None` in EpochEvent).
        present = {row[1] for row in self._db.execute("PRAGMA table_info(epochs)")}
        for name, kind in EPOCH_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE epochs ADD COLUMN {name} {kind.split()[0]}")

    def _transaction(self):
        return _Transaction(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- runs --------------------------------------------------------------------------------
    def create_run(self, config: dict[str, Any], created_at: str, sweep_id: int | None = None,
                   trial: int | None = None) -> dict[str, Any]:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO runs (status, config, created_at, sweep_id, trial) "
                "VALUES ('queued', ?, ?, ?, ?)",
                (json.dumps(config, allow_nan=False), created_at, sweep_id, trial),
            )
            return self._run(cursor.lastrowid)

    def update_run(self, run_id: int, **values: Any) -> None:
        unknown = set(values) - set(RUN_COLUMNS)
        if unknown:
            raise KeyError(f"not run columns: {sorted(unknown)}")
        if not values:
            return
        assignments = ", ".join(f"{name} = ?" for name in values)
        stored = [json.dumps(list(value), allow_nan=False) if name in JSON_COLUMNS else value
                  for name, value in values.items()]
        with self._lock:
            self._db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*stored, run_id))

    def run(self, run_id: int) -> dict[str, Any] | None:
        with self._lock:
            return self._run(run_id)

    def _run(self, run_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run_row(row) if row else None

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
        return [_run_row(row) for row in rows]

    def delete_run(self, run_id: int) -> bool:
        with self._lock, self._transaction():
            cursor = self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            return cursor.rowcount > 0

    def mark_interrupted(self) -> list[int]:
        """Runs left queued/running/paused by a server that died become `interrupted`."""
        with self._lock, self._transaction():
            rows = self._db.execute(
                f"SELECT id, status FROM runs WHERE status IN ({', '.join('?' * len(ACTIVE_STATUSES))})",
                ACTIVE_STATUSES,
            ).fetchall()
            for row in rows:
                self._db.execute(
                    "UPDATE runs SET status = 'interrupted', reason = ? WHERE id = ?",
                    (f"the server stopped while this run was {row['status']}; start a new run "
                     "to train again", row["id"]),
                )
        return [row["id"] for row in rows]

    # --- metrics -----------------------------------------------------------------------------
    def add_iterations(self, run_id: int, points: Sequence[tuple[int, int, float]]) -> None:
        """Append (step, epoch, loss) points; a step already stored is left as it is."""
        if not points:
            return
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO iterations (run_id, step, epoch, loss) VALUES (?, ?, ?, ?)",
                [(run_id, step, epoch, loss) for step, epoch, loss in points],
            )

    def iterations(self, run_id: int, after: int = -1, limit: int = -1,
                   upto: int | None = None) -> list[tuple[int, int, float]]:
        """(step, epoch, loss) of the steps after `after` (up to `upto`), in order; at most
        `limit` of them (-1: all)."""
        upto = SQLITE_INTEGER_MAX if upto is None else upto
        with self._lock:
            rows = self._db.execute(
                "SELECT step, epoch, loss FROM iterations WHERE run_id = ? AND step > ? "
                "AND step <= ? ORDER BY step LIMIT ?", (run_id, after, upto, limit),
            ).fetchall()
        return [tuple(row) for row in rows]

    def page_end(self, run_id: int, after: int, limit: int) -> tuple[int | None, bool]:
        """The last of the (at most `limit`) steps after `after`, None if there are none; and
        whether more steps follow it."""
        with self._lock:
            rows = self._db.execute(
                "SELECT step FROM iterations WHERE run_id = ? AND step > ? ORDER BY step "
                "LIMIT 2 OFFSET ?", (run_id, after, limit - 1)).fetchall()
            if rows:
                return rows[0][0], len(rows) > 1
            last = self._db.execute("SELECT MAX(step) FROM iterations WHERE run_id = ? AND "
                                    "step > ?", (run_id, after)).fetchone()[0]
        return last, False

    def epoch_last_steps(self, run_id: int) -> dict[int, int]:
        """The last stored step of each epoch."""
        with self._lock:
            rows = self._db.execute("SELECT epoch, MAX(step) FROM iterations WHERE run_id = ? "
                                    "GROUP BY epoch", (run_id,)).fetchall()
        return {epoch: step for epoch, step in rows}

    def add_epoch(self, run_id: int, epoch: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO epochs (run_id, {', '.join(EPOCH_FIELDS)}) "
                f"VALUES (?, {', '.join('?' for _ in EPOCH_FIELDS)})",
                (run_id, *(epoch[name] for name in EPOCH_FIELDS)),
            )

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(EPOCH_FIELDS)} FROM epochs WHERE run_id = ? ORDER BY epoch",
                (run_id,),
            ).fetchall()
        return [dict(row) for row in rows]

    def add_layers(self, run_id: int, step: int, epoch: int, body: str) -> None:
        """Store one watched step's layer statistics (`body`: its JSON); a step already stored
        is replaced."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO layers (run_id, step, epoch, body) VALUES (?, ?, ?, ?)",
                (run_id, step, epoch, body))

    def layers(self, run_id: int, after: int = -1, limit: int = 100,
               max_bytes: int = 4 * 1024 * 1024) -> tuple[list[str], bool]:
        """The JSON of the watched steps after `after`, in step order: at most `limit` of them
        and, past the first, at most `max_bytes` of JSON; and whether more follow."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM layers WHERE run_id = ? AND step > ? ORDER BY step LIMIT ?",
                (run_id, after, limit + 1)).fetchall()
        bodies, size = [], 0
        for (body,) in rows[:limit]:
            if bodies and size + len(body) > max_bytes:
                return bodies, True
            bodies.append(body)
            size += len(body)
        return bodies, len(rows) > limit

    def last_epochs(self, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The latest stored epoch of each of these runs (a run without one is left out)."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        with self._lock:
            rows = self._db.execute(
                f"SELECT run_id, {', '.join(EPOCH_FIELDS)} FROM epochs AS e WHERE run_id IN ({marks}) "
                "AND epoch = (SELECT MAX(epoch) FROM epochs WHERE run_id = e.run_id)",
                tuple(run_ids),
            ).fetchall()
        return {row["run_id"]: {name: row[name] for name in EPOCH_FIELDS} for row in rows}

    # --- sweeps ------------------------------------------------------------------------------
    def create_sweep(self, name: str, spec: dict[str, Any], created_at: str) -> dict[str, Any]:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO sweeps (name, spec, status, created_at) VALUES (?, ?, 'running', ?)",
                (name, json.dumps(spec, allow_nan=False), created_at),
            )
            return self._sweep(cursor.lastrowid)

    def update_sweep(self, sweep_id: int, **values: Any) -> None:
        unknown = set(values) - set(SWEEP_COLUMNS)
        if unknown:
            raise KeyError(f"not sweep columns: {sorted(unknown)}")
        if values:
            assignments = ", ".join(f"{name} = ?" for name in values)
            with self._lock:
                self._db.execute(f"UPDATE sweeps SET {assignments} WHERE id = ?",
                                 (*values.values(), sweep_id))

    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM sweeps ORDER BY id DESC").fetchall()
        return [_sweep_row(row) for row in rows]

    def _sweep(self, sweep_id: int) -> dict[str, Any]:
        return _sweep_row(self._db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone())

    def delete_sweep(self, sweep_id: int) -> None:
        """The sweep's record (its trials are runs, deleted as runs are)."""
        with self._lock:
            self._db.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,))

    # --- key/value ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                 (key, value))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind, error, traceback) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _sweep_row(row: sqlite3.Row) -> dict[str, Any]:
    sweep = dict(row)
    sweep["spec"] = json.loads(sweep["spec"])
    return sweep


def _run_row(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    run["config"] = json.loads(run["config"])
    run["has_model"] = bool(run["has_model"])
    for name in JSON_COLUMNS:
        run[name] = json.loads(run[name])
    return run

