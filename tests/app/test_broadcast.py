"""The live feed's delivery rules, on the event loop with in-memory clients: every step exactly
once and in order, coalescing to ~20 messages a second, bounded pages, a stalled client that costs
nothing and catches up a page at a time; and the feeds of watched runs, one per run, built once
and dropped when the last watcher leaves."""

from __future__ import annotations

import asyncio
import json
import time

from app.broadcast import Feeds, RunFeed, StreamLimits, Watcher
from tests.waiting import wait_for_async


class Client:
    """Collects what a watcher sends; `stall()` makes its socket stop accepting."""

    def __init__(self):
        self.messages: list[dict] = []
        self.received: list[float] = []  # when each message arrived (time.monotonic)
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, text: str) -> None:
        await self.open.wait()
        self.received.append(time.monotonic())  # before parsing: that takes a while under load
        self.messages.append(json.loads(text))

    def steps(self) -> list[int]:
        steps = []
        for message in self.messages:
            if message["type"] == "snapshot":
                steps += [point["step"] for point in message["iterations"]]
            elif message["type"] == "iterations":
                steps += [point["step"] for point in message["points"]]
        return steps

    def types(self) -> list[str]:
        return [message["type"] for message in self.messages]


def make_feed() -> RunFeed:
    return RunFeed(7, lambda: {"id": 7, "status": "running"})


async def publish(feed: RunFeed, steps: int, per_batch: int, pause: float, steps_per_epoch: int):
    for start in range(0, steps, per_batch):
        points = [(step, step // steps_per_epoch + 1, 1.0 / (step + 1))
                  for step in range(start, min(steps, start + per_batch))]
        feed.add_points(points, 1000.0, 0.1)
        if (start + per_batch) % steps_per_epoch == 0:
            epoch = (start + per_batch) // steps_per_epoch
            feed.add_epoch({"epoch": epoch, "val_accuracy": 0.9})
        await asyncio.sleep(pause)


async def watch(feed: RunFeed, client: Client, after: int = -1, **limits) -> tuple[asyncio.Task, Watcher]:
    watcher = Watcher(feed, client.send, after, StreamLimits(**limits))
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0)
    return task, watcher


def test_every_step_once_in_order_with_epochs_in_place():
    async def scenario():
        feed = make_feed()
        client = Client()
        task, _ = await watch(feed, client)
        await publish(feed, steps=2000, per_batch=10, pause=0.005, steps_per_epoch=500)
        await wait_for_async(lambda: len(client.steps()) >= 2000, what="every step")
        await wait_for_async(lambda: client.types().count("epoch") == 4, what="every epoch")
        task.cancel()
        return client

    client = asyncio.run(scenario())
    assert client.steps() == list(range(2000))
    assert [m["seq"] for m in client.messages] == list(range(len(client.messages)))
    assert client.types()[0] == "snapshot"
    # each epoch message comes right after the last step of its epoch
    seen = -1
    for message in client.messages:
        if message["type"] == "iterations":
            seen = message["points"][-1]["step"]
        elif message["type"] == "epoch":
            assert seen == message["epoch"] * 500 - 1


def test_points_are_coalesced_at_most_one_message_per_interval():
    interval = 0.05

    async def scenario():
        feed = make_feed()
        client = Client()
        task, _ = await watch(feed, client, interval_s=interval)
        await publish(feed, steps=300, per_batch=10, pause=0.002, steps_per_epoch=10_000)
        await wait_for_async(lambda: len(client.steps()) >= 300, what="the first steps")
        sent_before = len(client.messages)
        for start in range(300, 1300, 10):  # 100 batches while the watcher waits its turn
            feed.add_points([(step, 1, 0.5) for step in range(start, start + 10)], 1.0, 0.1)
        await wait_for_async(lambda: len(client.steps()) >= 1300, what="the burst")
        task.cancel()
        return client, sent_before

    client, sent_before = asyncio.run(scenario())
    assert client.steps() == list(range(1300))
    assert client.types()[sent_before:] == ["iterations"]  # the burst went out as one message
    times = [at for at, message in zip(client.received, client.messages, strict=True)
             if message["type"] == "iterations"]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert gaps and min(gaps) >= interval - 0.001  # never more often than once an interval


def test_a_stalled_client_slows_nobody_and_catches_up_a_page_at_a_time():
    async def scenario():
        feed = make_feed()
        fast, stalled = Client(), Client()
        fast_task, _ = await watch(feed, fast, page_points=300)
        stalled_task, stalled_watcher = await watch(feed, stalled, page_points=300)
        await publish(feed, steps=200, per_batch=20, pause=0.002, steps_per_epoch=1000)
        await wait_for_async(lambda: len(fast.steps()) == len(stalled.steps()) == 200,
                             what="both clients to have the first steps")
        stalled.open.clear()  # its socket stops accepting
        stuck_at = len(stalled.messages)
        # Training goes on (this returns) and the other client gets every step, while one is stuck:
        await publish(feed, steps=3000, per_batch=20, pause=0.001, steps_per_epoch=1000)
        await wait_for_async(lambda: len(fast.steps()) >= 3000, what="the fast client's steps")
        fast_steps, stalled_then = fast.steps(), len(stalled.messages) - stuck_at
        stuck_at = len(stalled.messages) + 1  # the message it was sending when it stalled
        stalled.open.set()
        await wait_for_async(lambda: len(stalled.steps()) >= 3000, what="the stalled client")
        fast_task.cancel()
        stalled_task.cancel()
        return stalled, fast_steps, stalled_then, stalled_watcher, stuck_at

    stalled, fast_steps, stalled_then, stalled_watcher, stuck_at = asyncio.run(scenario())
    assert fast_steps == list(range(3000))  # all delivered while the other client was stuck
    assert stalled_then == 0  # and the stuck one got nothing meanwhile
    assert stalled.steps() == list(range(3000))  # nothing lost, nothing repeated
    assert stalled_watcher.snapshots == 1
    pages = [len(m["points"]) for m in stalled.messages[stuck_at:] if m["type"] == "iterations"]
    assert max(pages) == 300  # the backlog came in pages
    assert [m["seq"] for m in stalled.messages] == list(range(len(stalled.messages)))


def test_after_resumes_without_gap_or_duplicate():
    async def scenario():
        feed = make_feed()
        feed.add_points([(step, 1, 0.5) for step in range(100)], 1.0, 0.1)
        first = Client()
        task, _ = await watch(feed, first, after=41)
        await wait_for_async(lambda: first.messages, what="the snapshot")
        feed.add_points([(step, 1, 0.5) for step in range(100, 150)], 1.0, 0.1)
        ahead = Client()  # a client that already has more than the server (after > last step)
        ahead_task, _ = await watch(feed, ahead, after=160)
        feed.add_points([(step, 1, 0.5) for step in range(150, 200)], 1.0, 0.1)
        await wait_for_async(lambda: first.steps()[-1:] == [199] and ahead.steps()[-1:] == [199],
                             what="both clients to reach step 199")
        task.cancel()
        ahead_task.cancel()
        return first, ahead

    first, ahead = asyncio.run(scenario())
    assert first.messages[0]["iterations"][0]["step"] == 42
    assert first.steps() == list(range(42, 200))
    assert ahead.steps() == list(range(161, 200))


def test_repeated_points_from_a_publisher_are_not_sent_twice():
    feed = make_feed()
    feed.add_points([(0, 1, 0.5), (1, 1, 0.4)], 1.0, 0.1)
    feed.add_points([(1, 1, 0.4), (2, 1, 0.3)], 1.0, 0.1)
    assert list(feed.steps) == [0, 1, 2]


def test_a_finished_runs_curve_comes_in_pages_that_count_down_what_is_left():
    async def scenario():
        feed = RunFeed(7, lambda: {"id": 7, "status": "completed"},
                       [(step, step // 100 + 1, 0.5) for step in range(2500)])
        client = Client()
        task, _ = await watch(feed, client, page_points=1000, interval_s=0.001)
        await wait_for_async(lambda: len(client.steps()) >= 2500, what="every step")
        task.cancel()
        return client

    client = asyncio.run(scenario())
    assert client.steps() == list(range(2500))
    snapshot, *pages = client.messages
    assert len(snapshot["iterations"]) == 1000 and snapshot["backlog"] == 1500
    assert [(len(m["points"]), m["backlog"]) for m in pages] == [(1000, 500), (500, 0)]


def test_one_feed_per_run_built_once_shared_and_dropped_when_the_last_watcher_leaves():
    builds = []

    async def build():
        builds.append(1)
        await asyncio.sleep(0.01)  # (a thread reading the record, in the server)
        return RunFeed(3, lambda: {"id": 3}, [(0, 1, 0.5)])

    async def scenario():
        feeds = Feeds()
        inside, leave = asyncio.Event(), asyncio.Event()
        held = []

        async def watcher():
            async with feeds.hold(3, build) as feed:
                held.append(feed)
                if len(held) == 5:
                    inside.set()
                await leave.wait()

        tasks = [asyncio.create_task(watcher()) for _ in range(5)]
        await inside.wait()
        during = feeds.get(3)
        leave.set()
        await asyncio.gather(*tasks)
        live = RunFeed(4, lambda: {"id": 4})
        feeds.pin(live)
        async with feeds.hold(4, build) as pinned:
            pass
        return held, during, feeds.get(3), pinned, feeds.get(4), live

    held, during, after, pinned, still, live = asyncio.run(scenario())
    assert len(builds) == 1  # five watchers came while it was being built: built once
    assert all(feed is held[0] for feed in held) and during is held[0]
    assert after is None  # the last one left: dropped
    assert pinned is live and still is live  # an active run's feed stays while nobody watches
