"""The `mnist-lab` console script: the engine's commands plus `serve` and `bench`."""

from __future__ import annotations

import argparse
import sys

from engine.cli import UsageError, add_data_dir, build_parser, run


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server import serve

    return serve(args)


def add_bench(commands) -> None:
    """`mnist-lab bench`, from bench/: a source checkout has it, a product-only install (the
    Docker image) does not, and every other command must work without it."""
    try:
        from bench.speed import add_bench_command
    except ModuleNotFoundError as error:
        if error.name not in ("bench", "bench.speed"):
            raise
        # Any arguments are accepted (none is an option here) so that the answer is this message.
        absent = commands.add_parser("bench", help="time training (needs a source checkout)",
                                     prefix_chars="\0", add_help=False)
        absent.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
        absent.set_defaults(func=bench_not_installed)
        return
    add_bench_command(commands)


def bench_not_installed(args: argparse.Namespace) -> int:
    raise UsageError("the benchmark (the bench/ package) is not part of this installation, "
                     "which holds only the app (as in the Docker image); run it from a source "
                     "checkout of MNIST Lab with `make bench`")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.add_parser("serve", help="run the web dashboard and API")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--max-concurrent-runs", type=int, default=None,
                       help="runs that train at the same time (default 1); others wait queued")
    add_data_dir(serve)
    serve.set_defaults(func=cmd_serve)
    add_bench(commands)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
