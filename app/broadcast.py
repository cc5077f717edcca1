"""Live fan-out of a run's events to any number of WebSocket watchers.

A `RunFeed` is the ordered record of one run: every iteration point (kept once, as a JSON
fragment) and, between them, `epoch`, `layers` (kept as their JSON text) and `status` messages.
Watchers do not get per-client queues of messages: each keeps a cursor into the shared record
and, whenever it is free to send, takes everything after its cursor as one `iterations` message
(at most one every `interval` seconds). So training only ever appends to a list, a slow client
costs no memory and slows nobody, and every step reaches every client exactly once, in order. A
client whose cursor falls too far behind (its socket accepted nothing for a long while) gets a
fresh `snapshot` with the points after the last step it received, in place of the backlog.

`Revision` is the same idea for the run list as a whole: a counter the run service bumps whenever
what `GET /api/runs` answers changes (a run created, started, paused, ended, deleted, an epoch, a
new model for predictions), so that pages refetch the list when it changed instead of polling it.
"""

from __future__ import annotations

import asyncio
import json
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.runs.state import ACTIVE_STATUSES


def dumps(value: Any) -> str:
    """Compact JSON that refuses NaN and infinities (they are not JSON)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


RAW = "raw"  # a message kept as JSON text: the fields of its object, without type, run_id and seq


def point_json(step: int, epoch: int, loss: float) -> str:
    return dumps({"step": step, "epoch": epoch, "loss": loss})


class RunFeed:
    """One run's live record. Appended to on the event loop by the run service only."""

    def __init__(self, run_id: int, describe: Callable[[], dict[str, Any]],
                 points: list[tuple[int, int, float]] = (), epochs: list[dict[str, Any]] = (),
                 live: bool = True):
        self.run_id = run_id
        self.describe = describe  # the Run as the API shows it, now
        self.steps: list[int] = [step for step, _, _ in points]
        self.points: list[str] = [point_json(*point) for point in points]
        self.epochs: list[dict[str, Any]] = list(epochs)
        self.messages: list[tuple[int, dict[str, Any]]] = []  # (points before it, message)
        self.samples_per_second: float | None = None
        self.learning_rate: float | None = None
        self.live = live  # False once the run can no longer change
        self.deleted = False
        self._waiters: set[asyncio.Event] = set()

    @property
    def watchers(self) -> int:
        return len(self._waiters)

    # --- publishing (the run service) ------------------------------------------------------
    def add_points(self, points: list[tuple[int, int, float]], samples_per_second: float,
                   learning_rate: float) -> None:
        last = self.steps[-1] if self.steps else -1
        for step, epoch, loss in points:
            if step <= last:  # never repeat a step
                continue
            self.steps.append(step)
            self.points.append(point_json(step, epoch, loss))
            last = step
        self.samples_per_second = samples_per_second
        self.learning_rate = learning_rate
        self._notify()

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
        if run["status"] not in ACTIVE_STATUSES:
            self.live = False
        self._notify()

    def mark_deleted(self) -> None:
        self.deleted = True
        self.live = False
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
    max_lag_points: int = 20_000
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
        if (len(feed.points) - self.point_index > self.limits.max_lag_points
                or len(feed.messages) - self.message_index > self.limits.max_lag_messages):
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
        self.point_index = end
        if start >= end:
            return
        self.last_step = feed.steps[end - 1]
        self._last_points_at = time.monotonic()
        await self._send_raw(
            f'{{"type":"iterations","run_id":{feed.run_id},"seq":{self._next_seq()},'
            f'"points":[{",".join(feed.points[start:end])}],'
            f'"samples_per_second":{dumps(feed.samples_per_second)},'
            f'"learning_rate":{dumps(feed.learning_rate)}}}'
        )

    async def _snapshot(self) -> None:
        """Everything the client lacks: the run now, every epoch, the points after its last step."""
        feed = self.feed
        start = feed.index_after(self.last_step)
        end = len(feed.points)
        self.point_index, self.message_index = end, len(feed.messages)
        body = dumps({"run": feed.describe(), "epochs": feed.epochs})
        if end > start:
            self.last_step = feed.steps[end - 1]
        self.snapshots += 1
        await self._send_raw(
            f'{{"type":"snapshot","run_id":{feed.run_id},"seq":{self._next_seq()},'
            f'"iterations":[{",".join(feed.points[start:end])}],{body[1:]}'
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
