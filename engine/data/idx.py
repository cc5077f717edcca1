"""The IDX format of the original MNIST files: a 4-byte magic number (0, 0, type code, number of
dimensions), one big-endian uint32 per dimension, then the values in C order."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from engine.data.errors import DataFormatError

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
    return parse_idx(data, where, ndim)


def parse_idx(data: bytes, where: str, ndim: int | None) -> np.ndarray:
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
