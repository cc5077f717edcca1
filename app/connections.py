"""Limits on HTTP connections that uvicorn does not have, as its protocol with three additions.

uvicorn's httptools protocol (the one `uvicorn[standard]` runs) reads a request's head with no
size limit (one 256 MB header grew the server by 300 MB) and no time limit, and closes an idle
connection only after a first response (`timeout_keep_alive`): a connection that never finishes
its head, or never sends anything, stays open for good. `limited_http_protocol(settings)` is
that protocol plus:

- the head (request line and headers) may be at most `max_header_bytes`: 431 and closed;
- the head must arrive within `header_timeout_s` of the connection opening, or of its first byte
  on a kept-alive connection: 408 and closed (the idle time between requests is uvicorn's
  `timeout_keep_alive`, set from `keep_alive_timeout_s`);
- at most `max_connections` connections (HTTP and WebSocket) are open: one more is answered 503
  and closed at once, before it can send anything.

The body's own limits (size, and the time it may take to arrive) are `app.middleware`'s.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import Settings

REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def refusal(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, as raw bytes."""
    body = json.dumps({"detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n")
    if status == 503:
        head += "retry-after: 5\r\n"
    return head.encode() + b"\r\n" + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head size and time limits and a connection limit."""

    max_header_bytes = 64 * 1024
    header_timeout_s = 10.0
    max_connections = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._reading_head = True
        self._heads_done = 0  # heads completed on this connection
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            self._refuse(503, f"the server has {self.max_connections} open connections, its limit "
                         "(MNIST_LAB_MAX_CONNECTIONS); try again in a few seconds")
            return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading_head, heads_done = self._reading_head, self._heads_done
        super().data_received(data)
        if reading_head and self._heads_done == heads_done and not self.transport.is_closing():
            # Only a chunk in which no head ended counts: a chunk may also carry a whole request
            # after a short head, and the parser holds at most one chunk more than this.
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, f"the request line and headers are larger than "
                             f"{self.max_header_bytes:,} bytes, the server's limit "
                             "(MNIST_LAB_MAX_HEADER_BYTES)")

    # httptools parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a kept-alive connection's next request: its first byte
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads_done += 1
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0

    # the limits
    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an answer is being sent: no room for another
            return
        self._refuse(408, f"the request's headers did not arrive within {self.header_timeout_s:g} s "
                     "(MNIST_LAB_HEADER_TIMEOUT_S)")

    def _refuse(self, status: int, detail: str) -> None:
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.write(refusal(status, detail))
            self.transport.close()


def limited_http_protocol(settings: Settings) -> type[LimitedHttpProtocol]:
    """The protocol class for uvicorn's `http=`, with this server's limits."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {
        "max_header_bytes": settings.max_header_bytes,
        "header_timeout_s": settings.header_timeout_s,
        "max_connections": settings.max_connections,
    })
