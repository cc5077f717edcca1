"""Fetching MNIST: every file verified by SHA-256 before it is moved into place, sources tried in
order, and a message naming every source tried when none delivers."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.data.errors import MnistUnavailableError, SourceError
from engine.data.files import MNIST_SHA256, sha256_file
from engine.data.sources import Source, default_sources

logger = logging.getLogger(__name__)

_STAGING_PREFIX = ".staging-"
_STALE_STAGING_S = 3600.0


def fetch_mnist(
    data_dir: Path,
    progress: bool = False,
    *,
    sources: Sequence[Source] | None = None,
    checksums: Mapping[str, str] = MNIST_SHA256,
) -> Path:
    """Make sure `<data_dir>/mnist/` holds every file in `checksums`, verified; return that folder.

    Files already there are hashed; a damaged one is reported, removed and fetched again. Missing
    files are taken from `sources` (default: `default_sources`) in order, each verified before it
    is moved into place. Raises MnistUnavailableError naming every source tried and its failure.
    """
    folder = Path(data_dir) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(folder)
    missing = [name for name in checksums if not _present_and_valid(folder / name, checksums[name])]
    if not missing:
        return folder
    attempts: list[tuple[str, str]] = []
    for source in default_sources(folder) if sources is None else sources:
        if not missing:
            break
        missing, reason = _try_source(source, missing, folder, checksums, progress)
        attempts.append((source.name, reason))
    if missing:
        raise MnistUnavailableError(_unavailable_message(folder, missing, attempts, checksums))
    return folder


def _present_and_valid(path: Path, expected: str) -> bool:
    if not path.exists():
        return False
    actual = sha256_file(path)
    if actual == expected:
        return True
    logger.warning(
        "%s is damaged (SHA-256 %s..., expected %s...); removed it, fetching it again",
        path, actual[:16], expected[:16],
    )
    path.unlink()
    return False


def _try_source(
    source: Source, missing: list[str], folder: Path, checksums: Mapping[str, str],
    progress: bool,
) -> tuple[list[str], str]:
    """Fetch what `source` has into a staging folder; move in what verifies. (still missing, why)"""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(dir=folder, prefix=_STAGING_PREFIX) as staging_name:
        staging = Path(staging_name)
        try:
            source.fetch(list(missing), staging, progress)
        except (SourceError, OSError) as error:
            problems.append(str(error) or type(error).__name__)
        for name in missing:
            candidate = staging / name
            if not candidate.is_file():
                continue
            actual = sha256_file(candidate)
            if actual != checksums[name]:
                problem = (f"gave a damaged {name} (SHA-256 {actual[:16]}..., "
                           f"expected {checksums[name][:16]}...)")
                logger.warning("%s %s; trying the next source", source.name, problem)
                problems.append(problem)
                continue
            os.replace(candidate, folder / name)
    got = [name for name in missing if (folder / name).is_file()]
    still_missing = [name for name in missing if name not in got]
    if got:
        logger.info("%s: got %s", source.name, ", ".join(got))
    elif problems:
        # Expected whenever an earlier source is absent (e.g. offline); the final error lists all.
        logger.info("%s: %s", source.name, "; ".join(problems))
    reason = "; ".join(problems) if problems else "ok"
    if not got and not problems:
        reason = f"delivered none of {', '.join(missing)}"
    if got and still_missing:
        reason = f"got {', '.join(got)}; {reason}"
    return still_missing, reason


def _remove_stale_staging(folder: Path) -> None:
    """Staging folders left by a killed fetch; an hour is far longer than any fetch takes."""
    for staging in folder.glob(f"{_STAGING_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - staging.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(staging, ignore_errors=True)


def _unavailable_message(
    folder: Path, missing: Sequence[str], attempts: Sequence[tuple[str, str]],
    checksums: Mapping[str, str],
) -> str:
    tried = "\n".join(
        f"  {number}. {name}: {reason}" for number, (name, reason) in enumerate(attempts, 1)
    ) or "  (no sources)"
    return (
        f"MNIST is not available: {len(missing)} of {len(checksums)} files could not be "
        f"obtained ({', '.join(missing)}).\n"
        f"Sources tried, in order:\n{tried}\n"
        f"To place the files by hand: put the raw IDX files {', '.join(checksums)} "
        f"(or the same names with .gz) in {folder}, or set MNIST_DIR to the folder that holds "
        "them, then run `mnist-lab fetch-data` again."
    )
