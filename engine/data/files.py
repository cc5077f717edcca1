"""The four original files: their names, their SHA-256, and reading them back verified."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from engine.data.dataset import MnistData, mnist_from_arrays
from engine.data.errors import DataFormatError, MnistUnavailableError
from engine.data.idx import parse_idx

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

# SHA-256 of the raw (uncompressed) original files.
MNIST_SHA256: dict[str, str] = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_CHUNK = 1 << 20


def read_mnist_dir(folder: Path, checksums: Mapping[str, str] = MNIST_SHA256) -> MnistData:
    """Parse the four raw IDX files in `folder`, each checked against its SHA-256 first.

    Raises MnistUnavailableError if a file is missing, DataFormatError if one is damaged.
    """
    folder = Path(folder)
    missing = [name for name in mnist_names(checksums) if not (folder / name).is_file()]
    if missing:
        raise MnistUnavailableError(
            f"{folder} lacks {', '.join(missing)}; run `mnist-lab fetch-data` to fetch MNIST"
        )
    arrays = []
    for name in mnist_names(checksums):
        data = (folder / name).read_bytes()
        _check_digest(folder / name, hashlib.sha256(data).hexdigest(), checksums[name])
        arrays.append(parse_idx(data, str(folder / name), ndim=3 if "images" in name else 1))
    return mnist_from_arrays(*arrays, where=str(folder))


def mnist_names(checksums: Mapping[str, str]) -> tuple[str, str, str, str]:
    names = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
    unknown = [name for name in names if name not in checksums]
    if unknown:
        raise ValueError(f"checksums lack {', '.join(unknown)}")
    return names


def _check_digest(path: Path, actual: str, expected: str) -> None:
    if actual != expected:
        raise DataFormatError(
            f"{path} is damaged: its SHA-256 is {actual[:16]}..., expected {expected[:16]}...; "
            "run `mnist-lab fetch-data` to replace it"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
