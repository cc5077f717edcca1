"""Shared fixtures. Each helper adds its own below a comment naming what they are for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.data import DataFormatError, MnistData, MnistUnavailableError, read_mnist_dir

# The Docker image test needs root and starts a daemon: `make test-docker` runs it
# (`pytest tests/docker`, a path given explicitly is collected); a plain `pytest` leaves it out.
collect_ignore = ["docker"]


def pytest_collection_modifyitems(items) -> None:
    """A test that asks for real MNIST is an `mnist` test, marked or not: `make test-fast`
    (-m "not mnist and not browser") never reads or trains on it."""
    for item in items:
        if {"mnist_dir", "mnist_data"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mnist)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_requirement(reason: str) -> None:
    """Skip locally, fail in CI: a requirement of the test command must never be skipped there."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


# --- Real MNIST -------------------------------------------------------------------------------
# `make test` runs `mnist-lab fetch-data` first, so the verified files are in the default data dir.


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """A folder holding the four raw MNIST files, each verified by SHA-256."""
    from engine.data import resolve_data_dir

    candidates = [resolve_data_dir(None) / "mnist"]
    if os.environ.get("MNIST_DIR"):
        candidates.append(Path(os.environ["MNIST_DIR"]))
    problems = []
    for folder in candidates:
        try:
            read_mnist_dir(folder)
        except (MnistUnavailableError, DataFormatError) as problem:
            problems.append(str(problem))
            continue
        return folder
    missing_requirement(
        "real MNIST not found; run `mnist-lab fetch-data` (or set MNIST_DIR). "
        + " | ".join(problems)
    )
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def mnist_data(mnist_dir: Path) -> MnistData:
    """The full, verified MNIST (60,000 training and 10,000 test digits), read-only uint8."""
    return read_mnist_dir(mnist_dir)
