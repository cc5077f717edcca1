"""Where the server keeps each sweep's Optuna study: a journal file of its own in the data dir.

Optuna 5 offers two storages that outlive a process: RDB (SQLAlchemy, here over SQLite, with its
schema upgraded by Alembic) and the journal (an append-only file of JSON lines, replayed when the
study is loaded). Both come with Optuna itself (SQLAlchemy and Alembic are among its requirements),
so neither adds a dependency. The journal is the one used: one file per sweep, so deleting a sweep
deletes its file and a damaged file harms one sweep; every change is one line, appended and
fsync'ed, so a killed server loses at most the line it was writing (cut off here, on opening);
and there is no schema to migrate.

A data dir belongs to one server: the lock file Optuna takes around each append is a leftover of a
server that died while appending, when one is found at start, and is removed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

logger = logging.getLogger("app.sweeps")

LOCK_SUFFIX = ".lock"  # what JournalFileOpenLock adds to the file's name


def journal_path(data_dir: Path, sweep_id: int) -> Path:
    return data_dir / "sweeps" / f"sweep-{sweep_id}.journal"


def open_journal(path: Path) -> JournalStorage:
    """The study storage in `path` (created if missing), its cut-off last line dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{path}{LOCK_SUFFIX}").unlink(missing_ok=True)  # only a dead server leaves one
    repair_tail(path)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def repair_tail(path: Path) -> None:
    """Cut a last line that was being written when the process died (it has no newline): the
    journal's reader would skip it, but the next append would be glued to it."""
    try:
        with open(path, "rb+") as journal:
            size = journal.seek(0, os.SEEK_END)
            if size == 0:
                return
            journal.seek(size - 1)
            if journal.read(1) == b"\n":
                return
            keep = _end_of_last_line(journal, size)
            logger.warning("%s ended in a cut-off line (%d bytes); it is dropped", path, size - keep)
            journal.truncate(keep)
    except FileNotFoundError:
        pass


def _end_of_last_line(journal, size: int, chunk: int = 65536) -> int:
    position = size
    while position > 0:
        start = max(0, position - chunk)
        journal.seek(start)
        block = journal.read(position - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def remove_journal(path: Path) -> None:
    for leftover in (path, Path(f"{path}{LOCK_SUFFIX}")):
        leftover.unlink(missing_ok=True)
