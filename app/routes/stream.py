"""WS /ws/runs/{id}: the live stream of one run (see app/broadcast.py for the delivery rules)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.broadcast import Deleted, StreamLimits, Watcher
from app.runs import RunNotFound

router = APIRouter()

NOT_FOUND = 4404
BAD_REQUEST = 4422


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
    try:
        feed = await runs.feed(run_id)
    except RunNotFound as error:
        await websocket.close(NOT_FOUND, str(error)[:120])
        return
    limits = StreamLimits(settings.stream_interval_s, settings.stream_max_lag_points,
                          settings.stream_max_lag_messages, settings.stream_send_timeout_s)
    watcher = Watcher(feed, websocket.send_text, after, limits)
    sender = asyncio.create_task(watcher.run(), name=f"ws-run-{run_id}")
    receiver = asyncio.create_task(_until_closed(websocket), name=f"ws-run-{run_id}-receive")
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if sender in done and isinstance(sender.exception(), Deleted):
        with contextlib.suppress(Exception):
            await websocket.close(NOT_FOUND, f"run {run_id} was deleted")
    elif sender in done and sender.exception() is not None:
        with contextlib.suppress(Exception):
            await websocket.close(1011, "the stream failed; reconnect")


async def _until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
