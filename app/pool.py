"""How many runs this machine trains at once: the size of the local process pool.

A training process keeps `cores_per_run` cores busy: its BLAS threads (`worker_threads`; 0, the
library's default, means one per core) plus the core on which the input pipeline prepares the next
batches (engine/pipeline.py). The pool holds as many runs as the usable cores fit, and at least one:

    max_concurrent_runs = max(1, usable cores // (BLAS threads per run + 1))

so 2 cores train one run at a time, 4 cores two, 16 cores eight. The API itself needs little CPU
and gets it first (training processes run at a lower priority, `worker_nice`). "Usable" cores are
those this process may run on (its CPU affinity), fewer if a cgroup quota (a container's
`--cpus`) allows less.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

PREPARING_CORES = 1  # the input pipeline's process, preparing batches while the trainer trains
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def cores_per_run(worker_threads: int, cores: int) -> int:
    """The cores one training process keeps busy."""
    blas = worker_threads if worker_threads > 0 else cores
    return blas + PREPARING_CORES


def default_concurrent_runs(worker_threads: int, cores: int | None = None) -> int:
    """The pool's size when none is set: as many runs as the cores fit, at least one."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // cores_per_run(worker_threads, cores))
