"""Watchers of a large finished run on a real server: one feed shared by all of them (not a copy
each), built off the event loop (the server keeps answering while it is built), every step to
every watcher once, a page at a time."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
from websockets.asyncio.client import connect

from app.store import Store
from engine.config import TrainConfig
from tests.app.liveserver import LiveServer

STEPS = 100_000  # the most a run may have under the default max_steps_per_run
WATCHERS = 12


def seeded(data_dir) -> int:
    """A completed run of STEPS stored steps, written straight into a new data dir."""
    data_dir.mkdir()
    store = Store(data_dir / "mnist-lab.sqlite3")
    run = store.create_run(TrainConfig.from_dict({"epochs": 1}).to_dict(), "2030-01-01T00:00:00Z")
    store.add_iterations(run["id"], [(step, 1, 2.3 - step * 1e-5) for step in range(STEPS)])
    store.update_run(run["id"], status="completed", step=STEPS, epoch=1, steps_per_epoch=STEPS)
    store.close()
    return run["id"]


async def watch(url: str, connected: asyncio.Event | None = None,
                on_snapshot=lambda: None) -> tuple[list[int], list[int]]:
    """Every step one watcher receives, and how many points each message held."""
    steps, pages = [], []
    async with connect(url, proxy=None, max_size=None, open_timeout=60) as ws:
        if connected is not None:
            connected.set()
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if message["type"] == "snapshot":
                on_snapshot()
            points = message.get("iterations") or message.get("points") or []
            steps += [point["step"] for point in points]
            pages.append(len(points))
            if message.get("backlog") == 0:
                return steps, pages


def test_a_dozen_watchers_of_a_large_run_share_one_feed_built_off_the_event_loop(tmp_path):
    data_dir = tmp_path / "data"
    run_id = seeded(data_dir)
    with LiveServer(data_dir) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        at_rest = server.rss_bytes()
        answered = {"during": 0}
        building = threading.Event()
        done = threading.Event()

        def poll() -> None:  # /healthz while the feed is built: counted until its snapshot came
            with httpx.Client(base_url=server.url, timeout=30) as poller:
                building.wait()
                while not done.is_set():
                    poller.get("/healthz").raise_for_status()
                    if not done.is_set():
                        answered["during"] += 1

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

        async def scenario():
            connected = asyncio.Event()
            url = f"{server.ws_url}/ws/runs/{run_id}"
            first = asyncio.create_task(watch(url, connected, done.set))
            await connected.wait()
            building.set()
            rest = [asyncio.create_task(watch(url)) for _ in range(WATCHERS - 1)]
            return [await first] + [await task for task in rest]

        results = asyncio.run(scenario())
        done.set()
        poller.join(30)
        peak = server.peak_rss_bytes()
    for steps, pages in results:
        assert steps == list(range(STEPS))  # every step once, in order
        assert max(pages) == 10_000  # a page at a time
    # Its feed is about 12 MB (116 bytes a step); a copy per watcher made 140 MB more.
    assert peak - at_rest < 60 * 2**20, f"server grew {(peak - at_rest) / 2**20:.0f} MB"
    # Built in a worker thread: the event loop answered meanwhile (on it: at most the one
    # request that came in before the build began).
    assert answered["during"] >= 3, answered
