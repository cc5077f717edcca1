"""Training batches prepared ahead on a second thread, while the current batch trains.

    preparing thread                                    trainer
    for each epoch:                                     for each step:
        order = permutation(N)       (shuffle stream)       x, y = the next prepared batch
        for each batch of `order`:                          forward, backward, update
            x = distort(images[batch]) or images[batch] / 255      (augmentation stream)
            → queue of at most `depth` batches  ─────────→

A thread and not a process: NumPy releases the GIL inside every array operation of a batch's size,
so the thread's gathers, interpolation and matrix products run on the other core while the trainer's
run on this one. Measured against a process with shared memory (docs/benchmarks-pipeline.md), the
thread was as fast, needs no copy of the data set or of the batches, and also works inside a
daemonic process, which the server's training processes are (they may not start children).

Determinism: only the preparing thread draws from the shuffle and augmentation generators, in the
order a loop without prefetching would (the permutation of an epoch, then its batches one by one),
so the batches are the same bit for bit whatever the timing. Prefetching changes when the numbers
are drawn, never which.

Lifecycle: the thread starts with the `with` block and the block's end stops it and waits for it,
whether the run completed, was stopped, diverged or failed. A stop wastes at most `depth` prepared
batches plus the one being prepared; while the trainer is paused the thread waits on the full queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from engine.augment import Augmenter
from engine.config import AugmentConfig
from engine.metrics import normalise

DEPTH = 2  # batches prepared ahead; more only buys memory once the thread keeps up
_POLL_S = 0.05  # how often a waiting side looks whether the other one has gone


@dataclass(frozen=True)
class Batch:
    epoch: int
    index: int  # within the epoch
    x: np.ndarray  # (B, 784) pixels in [0, 1], distorted if augmentation is on
    y: np.ndarray  # (B,) digits, as indices


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


class BatchPipeline:
    """The training batches of `epochs` epochs in order, prepared `depth` ahead on a thread
    (`depth=0`: each one when it is asked for, on the caller's thread; the same batches).

    `images` (N, 784) uint8 and `labels` (N,) are read, never written. `shuffle_rng` and
    `augment_rng` belong to the pipeline while it runs.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int,
                 augmentation: AugmentConfig, shuffle_rng: np.random.Generator,
                 augment_rng: np.random.Generator, dtype=np.float32, depth: int = DEPTH):
        if depth < 0:
            raise ValueError(f"depth must be 0 (no thread) or more prepared batches, got {depth}")
        self.images, self.labels = images, labels
        self.batch_size, self.epochs = batch_size, epochs
        self.shuffle_rng, self.augment_rng = shuffle_rng, augment_rng
        self.dtype = dtype
        self.depth = depth
        self.augmenter = Augmenter(augmentation) if augmentation.enabled else None
        self.prepared = 0  # batches prepared so far: what a stop wastes is prepared - taken
        self._batches = self._prepare_all()
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._fill_queue, name="mnist-lab-batches",
                                        daemon=True)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    # --- the trainer's side ----------------------------------------------------------------------
    def __enter__(self) -> BatchPipeline:
        if self.depth > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) for every step of `epoch`, which must be the next one prepared."""
        for index in range(self.steps_per_epoch):
            batch = self._next()
            if (batch.epoch, batch.index) != (epoch, index):
                raise RuntimeError(f"expected batch {index} of epoch {epoch}, the pipeline has "
                                   f"batch {batch.index} of epoch {batch.epoch}")
            yield batch.x, batch.y

    def close(self) -> None:
        """Stop preparing and wait for the thread; batches prepared and not taken are dropped."""
        self._closing.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(_POLL_S)
        self._drain()

    def _next(self) -> Batch:
        if self.depth == 0:
            return next(self._batches)
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the batch pipeline has stopped") from None
        if isinstance(item, _Failed):
            raise item.error
        if item is _END:
            raise RuntimeError(f"the batch pipeline has no batch after epoch {self.epochs}")
        return item

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    # --- preparing -------------------------------------------------------------------------------
    def _prepare_all(self) -> Iterator[Batch]:
        """Every batch of every epoch, in order: the only code that draws from the generators."""
        for epoch in range(1, self.epochs + 1):
            order = self.shuffle_rng.permutation(len(self.labels))
            for index, start in enumerate(range(0, len(order), self.batch_size)):
                if self._closing.is_set():
                    return
                batch = order[start : start + self.batch_size]
                x = self.prepare(batch)
                self.prepared += 1
                yield Batch(epoch, index, x, self.labels[batch].astype(np.intp))

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        """The training input for the samples `batch`: distorted as configured, or just / 255."""
        pixels = np.take(self.images, batch, axis=0)
        if self.augmenter is None:
            return normalise(pixels, self.dtype)
        return self.augmenter(pixels, self.augment_rng)

    def _fill_queue(self) -> None:
        """The thread: prepares batch after batch while the queue has room, until closed."""
        try:
            for batch in self._batches:
                if not self._put(batch):
                    return
            self._put(_END)
        except Exception as error:  # the trainer raises it at its next batch
            self._put(_Failed(error))

    def _put(self, item) -> bool:
        """Queue `item`, waiting while the queue is full; False if the pipeline closed meanwhile."""
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False
