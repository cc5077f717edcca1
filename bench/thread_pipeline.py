"""The alternative to engine.pipeline's forked process, kept to measure against: a thread.

The thread runs the same `BatchPipeline.plan` and `prepare` (the same generators, so the same
batches) and hands batches over through a queue of at most `AHEAD`. It needs no fork and no shared
memory; the price is Python's GIL, handed over at every NumPy call of both the thread and the
trainer. Used by bench/pipeline.py (`--thread`) only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np

from engine.pipeline import AHEAD, Batch, BatchPipeline

_END = object()


class ThreadPipeline:
    """BatchPipeline's interface (`with`, `epoch(e)`), batches prepared on a thread."""

    def __init__(self, pipeline: BatchPipeline):
        self.pipeline = pipeline
        self._queue: queue.Queue = queue.Queue(maxsize=AHEAD)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._prepare_all, name="bench-batches", daemon=True)

    def __enter__(self) -> ThreadPipeline:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._closing.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in range(self.pipeline.steps_per_epoch):
            batch = self._queue.get()
            if isinstance(batch, BaseException):
                raise batch
            if (batch.epoch, batch.index) != (epoch, index):
                raise RuntimeError(f"expected batch {index} of epoch {epoch}, got {batch.index} "
                                   f"of {batch.epoch}")
            yield batch.x, batch.y

    def _prepare_all(self) -> None:
        pipeline = self.pipeline
        try:
            for epoch, index, batch in pipeline.plan():
                if self._closing.is_set():
                    return
                item = Batch(epoch, index, pipeline.prepare(batch),
                             pipeline.labels[batch].astype(np.intp))
                while not self._closing.is_set():
                    try:
                        self._queue.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        pass
        except Exception as error:  # the trainer raises it at its next batch
            self._queue.put(error)
