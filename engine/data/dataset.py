"""MNIST in memory: four read-only uint8 arrays, and the Keras `mnist.npz` that holds them too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.data.errors import DataFormatError
from engine.digits import IMAGE_SIDE, N_CLASSES, N_INPUTS


def _frozen(array: np.ndarray) -> np.ndarray:
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class MnistData:
    """MNIST as read-only uint8 arrays: images flattened to 784 pixels (row-major 28x28, 0..255).

    Shared by every run in a process, so the arrays are read-only: convert (e.g. to float32 in
    [0, 1]) instead of editing in place.
    """

    train_images: np.ndarray  # (N, 784) uint8
    train_labels: np.ndarray  # (N,) uint8, digits 0..9
    test_images: np.ndarray  # (M, 784) uint8
    test_labels: np.ndarray  # (M,) uint8, digits 0..9

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            for name, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
                if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
                    kind = getattr(array, "dtype", type(array).__name__)
                    raise DataFormatError(f"{name} must be a uint8 NumPy array, got {kind}")
            if images.ndim != 2 or images.shape[1] != N_INPUTS:
                raise DataFormatError(
                    f"{split}_images has shape {images.shape}; expected (N, {N_INPUTS}): "
                    f"flatten each {IMAGE_SIDE}x{IMAGE_SIDE} image with reshape(N, -1)"
                )
            if labels.ndim != 1 or len(labels) != len(images):
                raise DataFormatError(
                    f"{split}_labels has shape {labels.shape}; expected ({len(images)},), "
                    f"one label per image in {split}_images"
                )
            if len(labels) and int(labels.max()) >= N_CLASSES:
                raise DataFormatError(
                    f"{split}_labels contains {int(labels.max())}; MNIST labels are digits 0..9"
                )
            object.__setattr__(self, f"{split}_images", _frozen(images))
            object.__setattr__(self, f"{split}_labels", _frozen(labels))

    def subset(self, train: int | None = None, test: int | None = None) -> MnistData:
        """The first `train` training and first `test` test samples (None keeps a split whole)."""
        train_count = self._count("train", train, len(self.train_labels))
        test_count = self._count("test", test, len(self.test_labels))
        return MnistData(
            self.train_images[:train_count],
            self.train_labels[:train_count],
            self.test_images[:test_count],
            self.test_labels[:test_count],
        )

    @staticmethod
    def _count(split: str, wanted: int | None, available: int) -> int:
        if wanted is None:
            return available
        if not 0 <= wanted <= available:
            raise ValueError(f"subset {split}={wanted}: expected 0..{available} samples")
        return wanted


def mnist_from_arrays(
    train_images: np.ndarray, train_labels: np.ndarray,
    test_images: np.ndarray, test_labels: np.ndarray, where: str,
) -> MnistData:
    for name, images in (("training images", train_images), ("test images", test_images)):
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataFormatError(
                f"{where}: {name} have shape {images.shape}; expected (N, 28, 28)"
            )
    return MnistData(
        train_images.reshape(len(train_images), N_INPUTS),
        train_labels,
        test_images.reshape(len(test_images), N_INPUTS),
        test_labels,
    )


def load_npz(path: Path) -> MnistData:
    """Read Keras' `mnist.npz` (x_train, y_train, x_test, y_test; never unpickles anything)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("x_train", "y_train", "x_test", "y_test")
                       if key not in archive.files]
            if missing:
                raise DataFormatError(
                    f"{path} lacks {', '.join(missing)}; a Keras mnist.npz holds x_train, "
                    f"y_train, x_test and y_test (it has: {', '.join(archive.files) or 'nothing'})"
                )
            arrays = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise DataFormatError(f"{path} is not a readable mnist.npz: {error}") from error
    return mnist_from_arrays(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], str(path)
    )
