"""The live streams: WS /ws/runs/{id}, one run's steps, epochs and status (see app/broadcast.py
for the delivery rules), and WS /ws/runs, which says when the run list changed."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.broadcast import Deleted, Revision, StreamLimits, Watcher, dumps
from app.runs.errors import RunNotFound

router = APIRouter()

NOT_FOUND = 4404
BAD_REQUEST = 4422
CHANGES_INTERVAL_S = 0.25  # at most this often a "changed" message: each one makes pages refetch


@router.websocket("/ws/runs/{run_id}")
async def stream(websocket: WebSocket, run_id: int):
    runs = websocket.app.state.runs
    settings = websocket.app.state.settings
    await websocket.accept()
    raw_after = websocket.query_params.get("after", "-1")
    try:
        after = int(raw_after)
        if after < -1:
            raise ValueError
    except ValueError:
        reason = f"after must be a step number (-1 or more), got {raw_after!r}"
        await websocket.close(BAD_REQUEST, reason[:120])
        return
    limits = StreamLimits(settings.stream_interval_s, settings.stream_page_points,
                          settings.stream_max_lag_messages, settings.stream_send_timeout_s)
    try:
        async with runs.watch(run_id) as feed:
            watcher = Watcher(feed, websocket.send_text, after, limits)
            ended = await _serve(websocket, watcher.run(), f"ws-run-{run_id}")
    except RunNotFound as error:
        await websocket.close(NOT_FOUND, str(error)[:120])
        return
    if isinstance(ended, Deleted):
        with contextlib.suppress(Exception):
            await websocket.close(NOT_FOUND, f"run {run_id} was deleted")


@router.websocket("/ws/runs")
async def run_list_changes(websocket: WebSocket):
    """`{"type": "changed", "revision": n}` on connect and whenever the run list changed since."""
    settings = websocket.app.state.settings
    await websocket.accept()
    await _serve(websocket, _send_revisions(websocket, websocket.app.state.runs.revision,
                                            settings.stream_send_timeout_s), "ws-runs")


async def _send_revisions(websocket: WebSocket, revision: Revision, send_timeout_s: float) -> None:
    seen = revision.value
    while True:
        await asyncio.wait_for(websocket.send_text(dumps({"type": "changed", "revision": seen})),
                               send_timeout_s)
        await asyncio.sleep(CHANGES_INTERVAL_S)  # changes meanwhile go out as one message
        seen = await revision.after(seen)


async def _serve(websocket: WebSocket, sending, name: str) -> BaseException | None:
    """Run `sending` until it ends or the client goes away; returns what `sending` raised, after
    closing the socket with 1011 (reconnect) for anything but Deleted."""
    sender = asyncio.create_task(sending, name=name)
    receiver = asyncio.create_task(_until_closed(websocket), name=f"{name}-receive")
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    error = sender.exception() if sender in done else None
    if error is not None and not isinstance(error, Deleted):
        with contextlib.suppress(Exception):
            await websocket.close(1011, "the stream failed; reconnect")
    return error


async def _until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
