"""MNIST ready to train on: read, verified, from where it is; fetched first when it is missing."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.data.dataset import MnistData
from engine.data.errors import DataFormatError, MnistUnavailableError
from engine.data.fetch import fetch_mnist
from engine.data.files import MNIST_SHA256, read_mnist_dir
from engine.data.location import mnist_folder, resolve_data_dir

logger = logging.getLogger(__name__)


def load_mnist(data_dir: Path | None = None, fetch: bool = True, *, train: int | None = None,
               test: int | None = None) -> MnistData:
    """MNIST from `mnist_folder(data_dir)`, every byte checked against its SHA-256; when it is
    missing or damaged, fetched into `<data_dir>/mnist/` first (or, with fetch=False, an
    MnistUnavailableError / DataFormatError that says what to do). `train` and `test` keep at most
    that many of the first digits of each split (quick runs on a slice of real MNIST).
    """
    data_dir = resolve_data_dir(data_dir)
    folder = mnist_folder(data_dir)
    try:
        data = read_mnist_dir(folder)
    except MnistUnavailableError as problem:
        if not fetch:
            raise MnistUnavailableError(
                f"MNIST is not available ({problem}); run `mnist-lab fetch-data --data-dir "
                f"{data_dir}` (or set MNIST_DIR to a folder with the four files) and try again"
            ) from None
        logger.info("MNIST is not complete in %s (%s); fetching it", folder, problem)
        data = read_mnist_dir(fetch_mnist(data_dir))
    except DataFormatError as problem:
        if not fetch:
            raise
        logger.warning("%s; fetching it again", problem)
        data = read_mnist_dir(fetch_mnist(data_dir))
    return data.subset(
        None if train is None else min(train, len(data.train_labels)),
        None if test is None else min(test, len(data.test_labels)),
    )


def ensure_mnist(data_dir: Path, progress: bool = False) -> Path:
    """Fetch MNIST into `<data_dir>/mnist/` when neither it nor $MNIST_DIR holds the four files
    (a server's first start; never inside a request). Files that are present are verified when
    they are loaded. Returns the folder MNIST is read from."""
    folder = mnist_folder(data_dir)
    if all((folder / name).is_file() for name in MNIST_SHA256):
        return folder
    return fetch_mnist(Path(data_dir), progress=progress)
