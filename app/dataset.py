"""Which MNIST the server trains and evaluates on: the verified files, cut to the configured subset."""

from __future__ import annotations

import os
from pathlib import Path

from engine.data import MNIST_SHA256, MnistData, MnistUnavailableError, fetch_mnist, read_mnist_dir


def mnist_folder(data_dir: Path) -> Path:
    """`<data_dir>/mnist` when it holds the files, else $MNIST_DIR (files placed by hand)."""
    own = Path(data_dir) / "mnist"
    external = os.environ.get("MNIST_DIR")
    if (own / "train-images-idx3-ubyte").is_file() or not external:
        return own
    return Path(external)


def ensure_mnist(data_dir: Path) -> None:
    """First use: fetch MNIST into the data dir (with a progress bar) when neither it nor
    $MNIST_DIR has the four files, before the server starts, never inside a request. Files that
    are present are verified when a run loads them."""
    folder = mnist_folder(data_dir)
    if not all((folder / name).is_file() for name in MNIST_SHA256):
        fetch_mnist(Path(data_dir), progress=True)


def load_data(data_dir: Path, train_subset: int | None, test_subset: int | None) -> MnistData:
    """Real MNIST, every byte checked against its SHA-256; never fetched from here (the server
    must not download 55 MB in the middle of a request: `mnist-lab fetch-data` does that)."""
    folder = mnist_folder(data_dir)
    try:
        data = read_mnist_dir(folder)
    except MnistUnavailableError as error:
        raise MnistUnavailableError(
            f"MNIST is not available to the server ({error}); run `mnist-lab fetch-data "
            f"--data-dir {data_dir}` (or set MNIST_DIR to a folder with the four files) and "
            "start the run again"
        ) from None
    return data.subset(
        None if train_subset is None else min(train_subset, len(data.train_labels)),
        None if test_subset is None else min(test_subset, len(data.test_labels)),
    )
