"""ASGI middleware: the request body's limits, applied to every HTTP request before any route.

Size: the declared Content-Length is checked first; the bytes actually received are counted too,
so a chunked or lying client cannot send more than the cap either. Time: the body must arrive
within `timeout_s` of waiting for it (only the time the app spends waiting for the client counts),
so a client that trickles its body cannot hold a connection and its buffer for ever.

Either way the answer is the limit's own (413, 408 and `Connection: close`), whatever the app
made of the interrupted body: FastAPI turns any error while reading a body into a 400, so the
app's answer is dropped and replaced.
"""

from __future__ import annotations

import asyncio

from app.responses import CleanJSONResponse


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app, max_bytes: int, timeout_s: float = 30.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _too_large(self) -> CleanJSONResponse:
        megabytes = self.max_bytes / (1024 * 1024)
        return CleanJSONResponse(status_code=413, headers={"Connection": "close"}, content={
            "detail": (f"the request body is larger than {megabytes:g} MB ({self.max_bytes} bytes), "
                       "the server's limit (MNIST_LAB_MAX_BODY_BYTES); send a smaller image (a few "
                       "hundred pixels a side is plenty) or a smaller batch")})

    def _too_slow(self) -> CleanJSONResponse:
        return CleanJSONResponse(status_code=408, headers={"Connection": "close"}, content={
            "detail": (f"the request body did not arrive within {self.timeout_s:g} s "
                       "(MNIST_LAB_BODY_TIMEOUT_S); send it again over a faster connection")})

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
        waited = 0.0
        body_done = False
        refusal: CleanJSONResponse | None = None
        started = False
        loop = asyncio.get_running_loop()

        async def limited_receive():
            nonlocal received, waited, body_done, refusal
            if body_done or refusal is not None:  # after the body: waiting for a disconnect
                return await receive()
            began = loop.time()
            try:
                async with asyncio.timeout(max(0.0, self.timeout_s - waited)):
                    message = await receive()
            except TimeoutError:
                refusal = self._too_slow()
                raise BodyTooSlow from None
            waited += loop.time() - began
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refusal = self._too_large()
                    raise BodyTooLarge
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def guarded_send(message):
            nonlocal started
            if refusal is not None:
                return  # the app's answer to a body it could not read: ours goes out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None and not started:
            await refusal(scope, receive, send)
