"""Where MNIST Lab keeps its data, and which folder MNIST is read from: the one place that decides."""

from __future__ import annotations

import os
from pathlib import Path

from engine.data.files import MNIST_SHA256


def resolve_data_dir(path: Path | None = None) -> Path:
    """The one folder for everything the app writes, created if needed.

    `path` if given, else $MNIST_LAB_HOME, else $XDG_DATA_HOME/mnist-lab, else
    ~/.local/share/mnist-lab. MNIST itself lives in `<data_dir>/mnist/`.
    """
    if path is not None:
        folder = Path(path).expanduser()
    elif os.environ.get("MNIST_LAB_HOME"):
        folder = Path(os.environ["MNIST_LAB_HOME"]).expanduser()
    elif os.environ.get("XDG_DATA_HOME") and Path(os.environ["XDG_DATA_HOME"]).is_absolute():
        folder = Path(os.environ["XDG_DATA_HOME"]) / "mnist-lab"
    else:
        folder = Path.home() / ".local" / "share" / "mnist-lab"
    folder = folder.absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(
            f"data dir {folder} exists but is not a folder; pass another --data-dir or "
            "set MNIST_LAB_HOME to a folder"
        ) from None
    return folder


def mnist_folder(data_dir: Path) -> Path:
    """The folder MNIST is read from: `<data_dir>/mnist` when it holds the four files (or when
    $MNIST_DIR is not set), else $MNIST_DIR, read in place (files placed by hand, or a shared copy
    such as a container image's)."""
    own = Path(data_dir) / "mnist"
    external = os.environ.get("MNIST_DIR", "").strip()
    if not external or all((own / name).is_file() for name in MNIST_SHA256):
        return own
    return Path(external).expanduser()
