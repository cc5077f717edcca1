"""ASGI middleware: the request-body size cap, applied to every HTTP request before any route.

The declared Content-Length is checked first; the bytes actually received are counted too, so a
chunked or lying client cannot send more than the cap either.
"""

from __future__ import annotations

from app.responses import CleanJSONResponse


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> CleanJSONResponse:
        megabytes = self.max_bytes / (1024 * 1024)
        return CleanJSONResponse(status_code=413, content={"detail": (
            f"the request body is larger than {megabytes:g} MB ({self.max_bytes} bytes), the "
            "server's limit; send a smaller image (a few hundred pixels a side is plenty)")})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    return await self._too_large()(scope, receive, send)
                break
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large()(scope, receive, send)
