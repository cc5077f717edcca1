"""`mnist-lab serve`: the app under uvicorn, on a socket bound before anything is announced."""

from __future__ import annotations

import argparse
import errno
import socket
import sys

import uvicorn

from app import memory
from app.connections import limited_http_protocol
from app.executor import ExecutorError
from app.main import create_app, make_executor
from app.security import check_exposure
from app.settings import Settings, SettingsError
from engine.data import MnistUnavailableError, ensure_mnist


class BindError(OSError):
    """The address cannot be listened on; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise BindError(f"cannot listen on {host!r}: it is not an address of this machine "
                        f"({error}); use --host 127.0.0.1 or MNIST_LAB_HOST") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        where = f"{host}:{port}"
        if error.errno == errno.EADDRINUSE:
            raise BindError(f"port {port} on {host} is already in use (another mnist-lab serve?); "
                            "stop that server, or pick another port with --port, MNIST_LAB_PORT or "
                            "`make run PORT=...`") from None
        if error.errno == errno.EACCES:
            raise BindError(f"not allowed to listen on {where} (ports below 1024 need root); "
                            "pick a port above 1024 with --port") from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise BindError(f"cannot listen on {where}: {host} is not an address of this "
                            "machine; use --host 127.0.0.1 (or 0.0.0.0 with a token)") from None
        raise BindError(f"cannot listen on {where}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(data_dir=args.data_dir, host=args.host, port=args.port,
                                     max_concurrent_runs=args.max_concurrent_runs,
                                     executor=args.executor, ray_address=args.ray_address)
        check_exposure(settings)  # refuses a non-loopback host without MNIST_LAB_TOKEN
    except (SettingsError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        ensure_mnist(settings.data_dir, progress=True)
    except MnistUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        sock = bind(settings.host, settings.port)
    except BindError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:  # before serving: a cluster that does not answer is said here, not in a traceback
        executor = make_executor(settings)
    except ExecutorError as error:
        sock.close()
        print(f"error: {error}", file=sys.stderr)
        return 2
    app = create_app(settings, executor)  # its lifespan shuts the executor down
    memory.configure()
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, ws_max_size=1 << 20,
        timeout_graceful_shutdown=15, http=limited_http_protocol(settings),
        timeout_keep_alive=settings.keep_alive_timeout_s, limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:  # listening and the app started: only now is the address true
                where = "" if settings.executor == "local" else f", runs on {settings.executor}"
                print(f"MNIST Lab on {url(sock)} (data in {settings.data_dir}{where})",
                      file=sys.stderr, flush=True)

    with sock:
        Server(config).run(sockets=[sock])
    return 0
