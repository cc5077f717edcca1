"""Who may change what: the token for state-changing requests, Host and Origin checks, CORS, and a
per-client rate limit. One ASGI middleware (`Guard`) applies all of them before any route runs.

The model:
- Bound to loopback (the default) and no token set: nobody else can reach the server, so there is
  no authentication. Requests must still name this machine in `Host` (a DNS-rebinding page cannot
  talk to it) and a browser page from another origin cannot change anything (Origin check).
- Bound to any other address: the server refuses to start without `MNIST_LAB_TOKEN`. Every
  state-changing request (POST, PUT, PATCH, DELETE, except `POST /predict`) must carry
  `Authorization: Bearer <token>`, compared in constant time. Reading and `/predict` stay open
  and are rate-limited per client address (token bucket).
- A token set on loopback is enforced too: setting one always means "ask for it".
- WebSockets and state-changing requests coming from a browser are accepted only from this
  server's own origin, or from the origins listed in `MNIST_LAB_ALLOWED_ORIGINS` (which also
  turns CORS on for exactly those origins; CORS is off otherwise).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.responses import CleanJSONResponse
from app.settings import Settings, SettingsError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_WRITES = frozenset({"/predict"})  # state-changing methods that anyone may use
MIN_TOKEN_LENGTH = 16
EXPOSED_RATE_PER_S = 20.0  # per client, when bound to a non-loopback address and not configured
# Names a loopback server answers to. "testserver" is the Host that Starlette's TestClient sends
# (it never reaches the network); any other name may be a DNS-rebinding page.
LOOPBACK_NAMES = frozenset({"localhost", "testserver"})
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


# --- the rules --------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_required(settings: Settings) -> bool:
    """Whether state-changing requests need the token (whenever one is set)."""
    return bool(settings.token)


def allowed_origins(settings: Settings) -> list[str]:
    """The extra origins from MNIST_LAB_ALLOWED_ORIGINS, normalised to scheme://host[:port]."""
    origins = []
    for item in settings.allowed_origins.split(","):
        item = item.strip().rstrip("/")
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise SettingsError(
                f"MNIST_LAB_ALLOWED_ORIGINS holds {item!r}, which is not an origin; list origins "
                "like https://lab.example.org or http://localhost:5173, separated by commas")
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return origins


def rate_per_second(settings: Settings) -> float | None:
    """Requests per second per client, or None when unlimited. Unset: off on loopback (the
    only client is this machine), EXPOSED_RATE_PER_S otherwise; 0 turns it off."""
    rate = settings.rate_limit_per_s
    if rate is None:
        return None if is_loopback(settings.host) else EXPOSED_RATE_PER_S
    return rate if rate > 0 else None


def check_exposure(settings: Settings) -> None:
    """Refuse settings that would expose the server unprotected (raises SettingsError)."""
    token = settings.token
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"MNIST_LAB_TOKEN is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} "
            f"random characters, for example from `{TOKEN_HINT}`")
    if not is_loopback(settings.host) and not token:
        raise SettingsError(
            f"refusing to listen on {settings.host} without a token: anyone who can reach that "
            "address could start, stop and delete runs. Set MNIST_LAB_TOKEN to a long random "
            f"secret (for example from `{TOKEN_HINT}`) and send it as `Authorization: Bearer "
            "<token>`, or listen on 127.0.0.1 (the default) to keep the server on this machine")
    allowed_origins(settings)
    if settings.rate_limit_burst < 1:
        raise SettingsError(f"rate_limit_burst must be at least 1, got {settings.rate_limit_burst}")


# --- rate limiting ----------------------------------------------------------------------------
class RateLimiter:
    """A token bucket per client: `burst` requests at once, then `rate` a second."""

    MAX_CLIENTS = 10_000  # buckets kept; full (idle) ones are dropped first

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def take(self, client: str) -> float:
        """Spend one token; returns 0 if the request may go ahead, else the seconds to wait."""
        now = self.clock()
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.MAX_CLIENTS:
                self._forget_idle(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full = [client for client, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]
        while len(self._buckets) > self.MAX_CLIENTS:  # all busy: drop the oldest
            del self._buckets[next(iter(self._buckets))]


# --- the middleware ---------------------------------------------------------------------------
def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _host_name(host_header: str) -> str:
    """'127.0.0.1:8000' → '127.0.0.1', '[::1]:8000' → '::1'."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


class Guard:
    """Host, rate-limit, Origin and token checks for every HTTP request and WebSocket."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings
        self.loopback = is_loopback(settings.host)
        self.token = settings.token.encode() if settings.token else None
        self.origins = frozenset(allowed_origins(settings))
        rate = rate_per_second(settings)
        self.limiter = RateLimiter(rate, settings.rate_limit_burst) if rate else None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        refusal = self.check(scope)
        if refusal is None:
            return await self.app(scope, receive, send)
        status, detail, headers = refusal
        response = CleanJSONResponse(status_code=status, content={"detail": detail}, headers=headers)
        if scope["type"] == "http":
            return await response(scope, receive, send)
        await self._deny_websocket(scope, receive, send, response)

    def check(self, scope) -> tuple[int, str, dict[str, str] | None] | None:
        """None if the request may go ahead, else (status, detail, headers)."""
        host_header = _header(scope, b"host")
        if self.loopback and host_header is not None and not self._loopback_name(host_header):
            return 400, (
                f"this server listens on {self.settings.host} and answers only to this machine's "
                f"names (localhost, 127.0.0.1, [::1]), not to Host {host_header!r}; open it as "
                f"http://127.0.0.1:{self.settings.port}/"), None
        if self.limiter is not None and scope.get("client"):
            wait = self.limiter.take(scope["client"][0])
            if wait > 0:
                return 429, (
                    f"too many requests from your address; the server allows "
                    f"{self.limiter.rate:g} a second (bursts of {self.limiter.burst}). Wait "
                    f"{wait:.1f} s and try again"), {"Retry-After": str(max(1, math.ceil(wait)))}
        websocket = scope["type"] == "websocket"
        changes_state = not websocket and scope["method"] not in SAFE_METHODS
        if websocket or changes_state:
            origin = _header(scope, b"origin")
            if origin is not None and not self._origin_allowed(origin, host_header):
                what = "a live stream" if websocket else "changes"
                return 403, (
                    f"{what} from pages at {origin} are not accepted; only this server's own "
                    "page may do that. To allow another site, add its origin to "
                    "MNIST_LAB_ALLOWED_ORIGINS"), None
        if changes_state and self.token is not None and scope["path"] not in OPEN_WRITES:
            return self._check_token(scope)
        return None

    def _check_token(self, scope) -> tuple[int, str, dict[str, str] | None] | None:
        challenge = {"WWW-Authenticate": 'Bearer realm="mnist-lab"'}
        authorization = _header(scope, b"authorization")
        if authorization is None:
            return 401, (
                f"{scope['method']} {scope['path']} changes the server's state, which needs its "
                "token: send the header `Authorization: Bearer <token>` with the value of "
                "MNIST_LAB_TOKEN the server was started with"), challenge
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return 401, ("the Authorization header must be `Bearer <token>` (the value of "
                         "MNIST_LAB_TOKEN)"), challenge
        if not hmac.compare_digest(given.strip().encode(), self.token):
            return 403, ("the token in the Authorization header is not this server's token; "
                         "check MNIST_LAB_TOKEN"), challenge
        return None

    def _loopback_name(self, host_header: str) -> bool:
        name = _host_name(host_header)
        return name in LOOPBACK_NAMES or is_loopback(name)

    def _origin_allowed(self, origin: str, host_header: str | None) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed pages, files) and anything odd
        if host_header is not None and parts.netloc == host_header.strip().lower():
            return True  # same origin
        # The page at http://localhost:8000 talking to http://127.0.0.1:8000: the same server.
        return (self.loopback and is_loopback(parts.hostname or "")
                and (parts.port or (443 if parts.scheme == "https" else 80)) == self.settings.port)

    @staticmethod
    async def _deny_websocket(scope, receive, send, response: CleanJSONResponse) -> None:
        """Refuse the handshake: an HTTP answer with the reason where the server can send one
        (the ASGI `websocket.http.response` extension), else a plain close (HTTP 403)."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": response.status_code,
                        "headers": response.raw_headers})
            await send({"type": "websocket.http.response.body", "body": response.body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def install(app: FastAPI, settings: Settings) -> None:
    """Check the settings and put the guard (and CORS, if origins are configured) in front of
    every route. Raises SettingsError if the server would be exposed without a token."""
    check_exposure(settings)
    app.add_middleware(Guard, settings=settings)
    origins = allowed_origins(settings)
    if origins:  # outermost, so that refusals carry CORS headers and preflights are answered
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
