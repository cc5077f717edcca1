"""Give memory the server freed back to the operating system.

glibc's malloc serves a large block from fresh pages (mmap) and returns them when the block is
freed, but only up to a threshold that it raises each time such a block is freed (the "dynamic
mmap threshold", up to 32 MB). After one decoded picture is freed, the next ones come from the
heap arenas of the threads that decoded them, and those keep the memory: a burst of uploads left
hundreds of megabytes resident for good (docs/reliability.md). `configure()` fixes the threshold
at 1 MiB, so every large buffer (a picture, a batch of inputs) is its own mapping and goes back
when freed; `release()` also hands back the free pages left in the arenas (`malloc_trim`).
Elsewhere than glibc (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20

_libc = None
try:
    _candidate = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if hasattr(_candidate, "malloc_trim") and hasattr(_candidate, "mallopt"):
        _candidate.malloc_trim.argtypes = [ctypes.c_size_t]
        _candidate.malloc_trim.restype = ctypes.c_int
        _candidate.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        _candidate.mallopt.restype = ctypes.c_int
        _libc = _candidate
except OSError:  # pragma: no cover - no C library to load
    pass


def configure() -> bool:
    """Serve every allocation of 1 MiB or more from its own pages, returned when it is freed.
    Process-wide: called once by `mnist-lab serve` (training processes are spawned afresh)."""
    return _libc is not None and _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


def release() -> None:
    """Return the free pages of every malloc arena to the OS (a millisecond or so)."""
    if _libc is not None:
        _libc.malloc_trim(0)
