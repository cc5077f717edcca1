"""How many threads the BLAS library under NumPy may use, chosen before NumPy loads it.

One thread is the choice for training here: a run's batches are prepared on another core
(engine/pipeline.py), and a trainer that spins several BLAS threads then fights its own batch
process (and the API, and other runs) for the cores and gets slower, not faster. Measured on
2 cores, `mnist-lab train --preset default --epochs 2`, three interleaved pairs: 1.63 s (median)
with one thread, 2.49 s with the library's default of two (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_blas_threads(threads: int) -> bool:
    """Use `threads` BLAS threads in this process and the processes it starts (0: leave the
    library's default). Only possible before NumPy is imported: returns whether it took effect."""
    if threads <= 0:
        return True
    if "numpy" in sys.modules:
        return False
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    return True
