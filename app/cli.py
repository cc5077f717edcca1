"""The `mnist-lab` console script: the engine's commands plus `serve` and `bench`."""

from __future__ import annotations

import argparse
import sys

from bench.speed import add_bench_command
from engine.cli import add_data_dir, build_parser, run


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server import serve

    return serve(args)


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0..65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: ports go from 1 to 65535 "
                                         "(0: any free port)")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.add_parser("serve", help="run the web dashboard and API")
    serve.add_argument("--host", default=None,
                       help="address to listen on (default: $MNIST_LAB_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=None,
                       help="port (default: $MNIST_LAB_PORT, else 8000; 0: any free port)")
    serve.add_argument("--max-concurrent-runs", type=int, default=None,
                       help="runs that train at the same time (default 1); others wait queued")
    add_data_dir(serve)
    serve.set_defaults(func=cmd_serve)
    add_bench_command(commands)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
