"""Live fan-out of a run's events to any number of WebSocket watchers.

A `RunFeed` is the ordered record of one run, shared by every watcher of it: every stored
iteration point (kept once, as a JSON fragment) and, between them, `epoch`, `layers` (kept as
their JSON text) and `status` messages.
It only ever grows, and nothing in it is changed once added, so watchers never copy it: each keeps
a cursor into it and, whenever it is free to send, takes what is after its cursor as one
`iterations` message (at most one every `interval` seconds, at most `page_points` points each).
So training only ever appends to a list, a slow client costs no memory and slows nobody, and
every step reaches every client exactly once, in order. A client that starts far behind (a
finished run's whole curve) or falls far behind gets its backlog a page at a time; each message
says how many points it still has to come (`backlog`). A client whose cursor falls too many
messages behind (its socket accepted nothing for a long while) gets a fresh `snapshot` instead
of the messages.

`Feeds` holds one feed per run that anyone watches: an active run's from its creation, a finished
run's built from the record off the event loop when its first watcher comes, shared by every later
one, and dropped when the last one leaves (its memory given back).

`Revision` is the same idea for the run list as a whole: a counter the run service bumps whenever
what `GET /api/runs` answers changes (a run created, started, paused, ended, deleted, an epoch, a
new model for predictions), so that pages refetch the list when it changed instead of polling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from app import memory


def dumps(value: Any) -> str:
    """Compact JSON that refuses NaN and infinities (they are not JSON)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


RAW = "raw"  # a message kept as JSON text: the fields of its object, without type, run_id and seq


def point_json(step: int, epoch: int, loss: float) -> str:
    return dumps({"step": step, "epoch": epoch, "loss": loss})


class RunFeed:
    """One run's record for its watchers. Appended to on the event loop by the run service only
    (a finished run's is built in a worker thread, then only read)."""

    def __init__(self, run_id: int, describe: Callable[[], dict[str, Any]],
                 points: Iterable[tuple[int, int, float]] = (), epochs: list[dict[str, Any]] = ()):
        self.run_id = run_id
        self.describe = describe  # the Run as the API shows it, now
        self.steps = array("q")  # the step of each point (8 bytes each)
        self.points: list[str] = []  # each point's JSON
        for step, epoch, loss in points:
            self.steps.append(step)
            self.points.append(point_json(step, epoch, loss))
        self.epochs: list[dict[str, Any]] = list(epochs)
        self.messages: list[tuple[int, dict[str, Any]]] = []  # (points before it, message)
        self.samples_per_second: float | None = None
        self.learning_rate: float | None = None
        self.deleted = False
        self._waiters: set[asyncio.Event] = set()

    @property
    def watchers(self) -> int:
        return len(self._waiters)

    # --- publishing (the run service) ------------------------------------------------------
    def add_points(self, points: Iterable[tuple[int, int, float]],
                   samples_per_second: float | None = None,
                   learning_rate: float | None = None) -> None:
        """Stored points, in step order (a step already here is skipped); the training speed and
        learning rate at the last of them, when known."""
        last = self.steps[-1] if self.steps else -1
        for step, epoch, loss in points:
            if step <= last:  # never repeat a step
                continue
            self.steps.append(step)
            self.points.append(point_json(step, epoch, loss))
            last = step
        if samples_per_second is not None:
            self.samples_per_second = samples_per_second
        if learning_rate is not None:
            self.learning_rate = learning_rate
        self._notify()

    def set_speed(self, samples_per_second: float | None, learning_rate: float | None) -> None:
        """The training speed and learning rate the next points go out with."""
        self.samples_per_second = samples_per_second
        self.learning_rate = learning_rate

    def add_epoch(self, epoch: dict[str, Any]) -> None:
        self.epochs.append(epoch)
        self.messages.append((len(self.points), {"type": "epoch", **epoch}))
        self._notify()

    def add_layers(self, body: str) -> None:
        """A watched step's layer statistics: `body` is the JSON object of its fields."""
        self.messages.append((len(self.points), {"type": "layers", RAW: body}))
        self._notify()

    def add_status(self, run: dict[str, Any]) -> None:
        self.messages.append((len(self.points), {"type": "status", "status": run["status"],
                                                 "reason": run["reason"], "run": run}))
        self._notify()

    def mark_deleted(self) -> None:
        self.deleted = True
        self._notify()

    def _notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    # --- reading (the watchers) ------------------------------------------------------------
    def index_after(self, step: int) -> int:
        return bisect_right(self.steps, step)

    def subscribe(self) -> asyncio.Event:
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)


class Feeds:
    """One feed per watched run, shared by all its watchers. Used on the event loop only.

    A run that may still change has its feed `pin`ned here by the run service (from its creation
    until it ended and everything it reported is stored). Any other run's feed is built when its
    first watcher comes (`hold`, with the service's builder, which reads the record in a worker
    thread: a large run's feed never stalls the event loop), shared by every watcher that comes
    while it is held (also while it is being built: it is built once), and dropped when the last
    one leaves, its memory given back to the system."""

    def __init__(self):
        self._feeds: dict[int, RunFeed] = {}
        self._pinned: set[int] = set()
        self._holders: Counter[int] = Counter()
        self._building: dict[int, asyncio.Future[RunFeed]] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    def get(self, run_id: int) -> RunFeed | None:
        """The run's feed if anyone has it (the run service appends to it)."""
        return self._feeds.get(run_id)

    def pin(self, feed: RunFeed) -> None:
        self._feeds[feed.run_id] = feed
        self._pinned.add(feed.run_id)

    def unpin(self, run_id: int) -> None:
        self._pinned.discard(run_id)
        self._drop_if_unused(run_id)

    def remove(self, run_id: int) -> None:
        """The run was deleted: its watchers are told, its feed dropped."""
        feed = self._feeds.pop(run_id, None)
        self._pinned.discard(run_id)
        if feed is not None:
            feed.mark_deleted()

    @contextlib.asynccontextmanager
    async def hold(self, run_id: int,
                   build: Callable[[], Awaitable[RunFeed]]) -> AsyncIterator[RunFeed]:
        """The run's feed for as long as the block runs, built with `build` if nobody has it."""
        feed = self._feeds.get(run_id)
        if feed is None:
            building = self._building.get(run_id)
            if building is None:
                building = asyncio.ensure_future(build())
                self._building[run_id] = building
                building.add_done_callback(lambda _: self._building.pop(run_id, None))
            feed = await asyncio.shield(building)  # a watcher that leaves meanwhile leaves it be
            feed = self._feeds.setdefault(run_id, feed)  # the first one back makes it the feed
        self._holders[run_id] += 1
        try:
            yield feed
        finally:
            self._holders[run_id] -= 1
            self._drop_if_unused(run_id)

    def _drop_if_unused(self, run_id: int) -> None:
        if run_id in self._pinned or self._holders[run_id] > 0:
            return
        del self._holders[run_id]
        if self._feeds.pop(run_id, None) is not None:
            memory.release()


class Revision:
    """A counter of changes to the run list, with waiters. Used on the event loop only."""

    def __init__(self):
        self.value = 0
        self._waiters: set[asyncio.Event] = set()

    def bump(self) -> None:
        self.value += 1
        for waiter in self._waiters:
            waiter.set()

    async def after(self, seen: int) -> int:
        """Wait until the counter is past `seen`; return its value then."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            while self.value == seen:
                await waiter.wait()
                waiter.clear()
        finally:
            self._waiters.discard(waiter)
        return self.value


class Deleted(Exception):
    """The run being watched was deleted."""


@dataclass
class StreamLimits:
    interval_s: float = 0.05
    page_points: int = 10_000  # at most this many points in one message
    max_lag_messages: int = 256
    send_timeout_s: float = 30.0


class Watcher:
    """Sends one feed to one client: a snapshot, then everything new, in order, coalesced."""

    def __init__(self, feed: RunFeed, send: Callable[[str], Awaitable[None]], after: int,
                 limits: StreamLimits):
        self.feed = feed
        self._send_text = send
        self.limits = limits
        self.seq = 0
        self.last_step = after  # the last step this client has
        self.point_index = 0
        self.message_index = 0
        self.snapshots = 0
        self._last_points_at = 0.0

    async def run(self) -> None:
        """Stream until cancelled; raises Deleted if the run is deleted."""
        waiter = self.feed.subscribe()
        try:
            await self._snapshot()
            while True:
                waiter.clear()
                if self.feed.deleted:
                    raise Deleted
                if not await self._send_pending():
                    await waiter.wait()
        finally:
            self.feed.unsubscribe(waiter)

    async def _send_pending(self) -> bool:
        """Send what is new; False when there was nothing to send."""
        feed = self.feed
        if len(feed.messages) - self.message_index > self.limits.max_lag_messages:
            await self._snapshot()
            return True
        if self.message_index < len(feed.messages):
            before, message = feed.messages[self.message_index]
            if self.point_index < before:
                await self._send_points(before)
            else:
                self.message_index += 1
                await self._send(message)
            return True
        if self.point_index < len(feed.points):
            await self._send_points(len(feed.points))
            return True
        return False

    async def _send_points(self, end: int) -> None:
        wait = self._last_points_at + self.limits.interval_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            if self.feed.deleted:
                raise Deleted
            if self.message_index == len(self.feed.messages):  # take what arrived meanwhile
                end = len(self.feed.points)
        feed = self.feed
        start = max(self.point_index, feed.index_after(self.last_step))
        end = min(end, start + self.limits.page_points)
        self.point_index = end
        if start >= end:
            return
        self.last_step = feed.steps[end - 1]
        self._last_points_at = time.monotonic()
        await self._send_raw(
            f'{{"type":"iterations","run_id":{feed.run_id},"seq":{self._next_seq()},'
            f'"points":[{",".join(feed.points[start:end])}],'
            f'"samples_per_second":{dumps(feed.samples_per_second)},'
            f'"learning_rate":{dumps(feed.learning_rate)},"backlog":{len(feed.points) - end}}}'
        )

    async def _snapshot(self) -> None:
        """What the client lacks: the run now, every epoch, and the first page of the points
        after its last step (the rest follow as `iterations` messages)."""
        feed = self.feed
        start = feed.index_after(self.last_step)
        end = min(len(feed.points), start + self.limits.page_points)
        self.point_index, self.message_index = end, len(feed.messages)
        body = dumps({"run": feed.describe(), "epochs": feed.epochs})
        if end > start:
            self.last_step = feed.steps[end - 1]
        self.snapshots += 1
        await self._send_raw(
            f'{{"type":"snapshot","run_id":{feed.run_id},"seq":{self._next_seq()},'
            f'"iterations":[{",".join(feed.points[start:end])}],'
            f'"backlog":{len(feed.points) - end},{body[1:]}'
        )

    async def _send(self, message: dict[str, Any]) -> None:
        if RAW in message:
            await self._send_raw(f'{{"type":{dumps(message["type"])},"run_id":{self.feed.run_id},'
                                 f'"seq":{self._next_seq()},{message[RAW][1:]}')
            return
        await self._send_raw(dumps({"type": message["type"], "run_id": self.feed.run_id,
                                    "seq": self._next_seq(),
                                    **{k: v for k, v in message.items() if k != "type"}}))

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    async def _send_raw(self, text: str) -> None:
        await asyncio.wait_for(self._send_text(text), self.limits.send_timeout_s)
