"""What the benchmarks need to know about the machine they run on (Linux /proc)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def raised_priority(steps: int):
    """Lower the niceness of this process and of its session's scheduling group (Linux shares
    the CPU fairly between sessions first, whatever the niceness) for the duration: the server
    and its worker, started from here, inherit both. The session's is restored afterwards (it
    is shared with the shell that started this)."""
    autogroup = Path("/proc/self/autogroup")
    previous = None
    if steps:
        os.nice(-steps)
        if autogroup.exists():
            previous = autogroup.read_text().split("nice")[-1].strip()
            autogroup.write_text(str(-min(steps, 20)))
    try:
        yield
    finally:
        if previous is not None:
            autogroup.write_text(previous)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
