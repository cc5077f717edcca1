"""Training batches prepared ahead in a second process, while the current batch trains.

    preparing process                                   trainer
    for each epoch:                                     for each step:
        order = permutation(N)       (shuffle stream)       x, y = the next prepared batch
        for each batch of `order`:                          forward, backward, update
            x = distort(images[batch]) or images[batch] / 255      (augmentation stream)
            → a free slot of shared memory ───────────→   (its slot is free again two steps on)

Why a process: a batch's distortion is some forty NumPy calls, a training step as many again, and
every call hands Python's GIL over. Measured side by side (docs/benchmarks-pipeline.md), a thread
preparing `default`'s batches cost 3-33% more CPU than doing the same work inline, on the side
that is already the bottleneck; a forked process -4% to +6%, and its runs were mostly the faster.
The child is forked, so it shares the data set without a copy and starts at once; the batches come
back through shared memory (no copy either), with a few bytes through a pipe to say which slot
holds which batch. Where the OS cannot fork safely (anything but Linux), batches are prepared
inline, when the trainer asks.

Determinism: only the preparing side draws from the shuffle and augmentation generators (the
child gets them as they were at the fork), in the order a plain loop would: the permutation of an
epoch, then its batches one by one. So the batches are the same bit for bit, forked or inline,
whatever the timing: prefetching changes when the numbers are drawn, never which.

Lifecycle: the child starts with the `with` block; the block's end (the run completed, was stopped,
diverged or failed) closes the pipes, and the child, finding them closed, exits; it is waited for.
If the trainer's process dies, the child finds its pipe closed the same way. A stop wastes at most
`AHEAD` + 1 prepared batches (the one taken when the stop came, and those ahead; `SLOTS` at the very
start of a run); while the trainer is paused the child waits for a free slot, using no CPU.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from engine.augment import Augmenter
from engine.config import AugmentConfig
from engine.metrics import normalise

AHEAD = 2  # batches prepared ahead of the one training; more only buys memory once the child keeps up
# The trainer holds two slots: the batch it trains on and the one before, which the model may still
# reference (each layer keeps its last input for the backward pass) until the next forward pass.
SLOTS = AHEAD + 2
CAN_FORK = sys.platform == "linux"  # elsewhere fork() is unsafe with the system's libraries
_MESSAGE = struct.Struct("<4q")  # slot, epoch, index, batch size; slot < 0: END or FAILED
_END, _FAILED = -1, -2
_EXIT_WAIT_S = 10.0  # a child still busy this long after the end is killed


@dataclass(frozen=True)
class Batch:
    epoch: int
    index: int  # within the epoch
    x: np.ndarray  # (B, 784) pixels in [0, 1], distorted if augmentation is on
    y: np.ndarray  # (B,) digits, as indices


class BatchPipeline:
    """The training batches of `epochs` epochs in order, prepared ahead in a forked process
    (`ahead=False`, or where fork is not available: each one when it is asked for; the same batches).

    `images` (N, 784) uint8 and `labels` (N,) are read, never written. `shuffle_rng` and
    `augment_rng` belong to the pipeline. A batch's arrays stay valid until two more are taken.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int,
                 augmentation: AugmentConfig, shuffle_rng: np.random.Generator,
                 augment_rng: np.random.Generator, dtype=np.float32, ahead: bool = True):
        self.images, self.labels = images, labels
        self.batch_size, self.epochs = batch_size, epochs
        self.shuffle_rng, self.augment_rng = shuffle_rng, augment_rng
        self.augmenter = Augmenter(augmentation) if augmentation.enabled else None
        self.dtype = np.dtype(np.float32 if self.augmenter else dtype)  # distortions are float32
        self.ahead = ahead and CAN_FORK
        self._prepared_inline = 0
        self._inline: Iterator[Batch] | None = None
        self._child: _PreparingProcess | None = None

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    @property
    def prepared(self) -> int:
        """Batches prepared so far: those taken, plus what a stop would waste."""
        return self._child.prepared if self._child else self._prepared_inline

    # --- the trainer's side ----------------------------------------------------------------------
    def __enter__(self) -> BatchPipeline:
        if self.ahead:
            try:
                self._child = _PreparingProcess(self)
                return self
            except OSError:  # no memory or process left for a child: prepare inline instead
                self.ahead = False
        self._inline = self._prepare_inline()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) for every step of `epoch`, which must be the next one prepared."""
        for index in range(self.steps_per_epoch):
            batch = self._child.next() if self._child else next(self._inline)
            if (batch.epoch, batch.index) != (epoch, index):
                raise RuntimeError(f"expected batch {index} of epoch {epoch}, the pipeline has "
                                   f"batch {batch.index} of epoch {batch.epoch}")
            yield batch.x, batch.y

    def close(self) -> None:
        """Stop preparing; the child (if any) has exited when this returns."""
        if self._child is not None:
            self._child.close()

    # --- preparing -------------------------------------------------------------------------------
    def plan(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """(epoch, index, sample indices) of every batch, in order: the permutations are drawn here."""
        for epoch in range(1, self.epochs + 1):
            order = self.shuffle_rng.permutation(len(self.labels))
            for index, start in enumerate(range(0, len(order), self.batch_size)):
                yield epoch, index, order[start : start + self.batch_size]

    def prepare(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The training input for the samples `batch`, into `out` if given: distorted as configured
        (the distortions are drawn here), or just / 255."""
        pixels = np.take(self.images, batch, axis=0)
        if self.augmenter is not None:
            return self.augmenter(pixels, self.augment_rng, out)
        x = normalise(pixels, self.dtype)
        if out is None:
            return x
        out[...] = x
        return out

    def _prepare_inline(self) -> Iterator[Batch]:
        for epoch, index, batch in self.plan():
            x = self.prepare(batch)
            self._prepared_inline += 1
            yield Batch(epoch, index, x, self.labels[batch].astype(np.intp))


class _PreparingProcess:
    """A forked child that runs `pipeline.plan()` and `pipeline.prepare()` into shared slots.

    Two pipes: the trainer sends the numbers of free slots, the child answers with a message per
    prepared batch (slot, epoch, index, size), then END, or FAILED and the pickled exception.
    """

    def __init__(self, pipeline: BatchPipeline):
        self.pipeline = pipeline
        width = min(pipeline.batch_size, len(pipeline.labels))
        x_bytes = SLOTS * width * 784 * pipeline.dtype.itemsize
        y_bytes = SLOTS * width * np.dtype(np.intp).itemsize
        self._memory = mmap.mmap(-1, x_bytes + y_bytes + 8)  # anonymous: shared with the child
        self.x = np.frombuffer(self._memory, pipeline.dtype, SLOTS * width * 784).reshape(
            SLOTS, width, 784)
        self.y = np.frombuffer(self._memory, np.intp, SLOTS * width, x_bytes).reshape(SLOTS, width)
        self._count = np.frombuffer(self._memory, np.int64, 1, x_bytes + y_bytes)
        self._held: deque[int] = deque()
        ready_read, ready_write = os.pipe()
        free_read, free_write = os.pipe()
        for slot in range(SLOTS):  # every slot is free at first (a few bytes: never blocks)
            os.write(free_write, slot.to_bytes(1, "little"))
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (ready_read, ready_write, free_read, free_write):
                os.close(fd)
            raise
        if self.pid == 0:  # the child: prepare, then leave without running any of the parent's code
            status = 1
            try:
                os.close(ready_read)
                os.close(free_write)
                status = self._prepare_all(free_read, ready_write)
            finally:
                os._exit(status)
        os.close(ready_write)
        os.close(free_read)
        self._ready, self._free = ready_read, free_write

    @property
    def prepared(self) -> int:
        return int(self._count[0])

    # --- the trainer's side ----------------------------------------------------------------------
    def next(self) -> Batch:
        slot, epoch, index, size = _MESSAGE.unpack(self._read(_MESSAGE.size))
        if slot == _FAILED:
            raise pickle.loads(self._read(size))
        if slot == _END:
            raise RuntimeError(f"the batch pipeline has no batch after epoch {self.pipeline.epochs}")
        self._held.append(slot)
        if len(self._held) > 2:  # two batches on: the model no longer holds this one's pixels
            self._release(self._held.popleft())
        return Batch(epoch, index, self.x[slot, :size], self.y[slot, :size])

    def close(self) -> None:
        """Close both pipes (the child exits at its next read or write) and wait for the child."""
        if self._free < 0:
            return
        os.close(self._free)
        os.close(self._ready)
        self._free = self._ready = -1
        deadline = time.monotonic() + _EXIT_WAIT_S
        try:
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.002)
        except ChildProcessError:  # already waited for by someone else
            pass

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = os.read(self._ready, size - len(data))
            if not chunk:
                raise RuntimeError("the process preparing batches ended unexpectedly; "
                                   "the system may have run out of memory")
            data += chunk
        return data

    def _release(self, slot: int) -> None:
        try:
            os.write(self._free, slot.to_bytes(1, "little"))
        except BrokenPipeError:  # the child has prepared every batch and left
            pass

    # --- the child -------------------------------------------------------------------------------
    def _prepare_all(self, free: int, ready: int) -> int:
        """Prepare batch after batch into free slots until done or the trainer has gone."""
        # Ctrl-C reaches the whole process group: the trainer decides what it means, not this child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gc.disable()  # nothing here makes cycles; a collection would copy the parent's pages
        pipeline = self.pipeline
        try:
            for epoch, index, batch in pipeline.plan():
                slot = os.read(free, 1)
                if not slot:
                    return 0  # the trainer closed the pipe: stop
                slot = slot[0]
                size = len(batch)
                pipeline.prepare(batch, out=self.x[slot, :size])
                self.y[slot, :size] = pipeline.labels[batch]
                self._count[0] += 1
                os.write(ready, _MESSAGE.pack(slot, epoch, index, size))
            os.write(ready, _MESSAGE.pack(_END, 0, 0, 0))
            return 0
        except (BrokenPipeError, KeyboardInterrupt):
            return 0
        except Exception as error:  # the trainer raises it at its next batch
            try:
                payload = pickle.dumps(error)
            except Exception:
                payload = pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
            try:
                _write_all(ready, _MESSAGE.pack(_FAILED, 0, 0, len(payload)) + payload)
            except BrokenPipeError:
                pass
            return 1


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
