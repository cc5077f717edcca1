"""The `mnist-lab` console script: the engine's commands plus `serve`, `sweep` and `bench`.

Both are registered here without importing what runs them: `serve` loads the server only when it
serves, and `bench` loads the benchmark (bench/speed.py) only when it benchmarks, so every other
command starts quickly and works from an installation that holds only the product.
"""

from __future__ import annotations

import argparse
import sys

from app.sweeps.cli import add_sweep_command
from engine.cli import UsageError, add_data_dir, build_parser, run


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server import serve  # the server (FastAPI, uvicorn, NumPy) only when serving

    return serve(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if not 1 <= args.epochs <= 100:
        raise UsageError(f"--epochs must be between 1 and 100, got {args.epochs}")
    try:
        from bench.speed import run_command  # the benchmark only when benchmarking; optional
    except ModuleNotFoundError as error:
        if error.name not in ("bench", "bench.speed"):
            raise
        print("error: `mnist-lab bench` needs the speed benchmark (bench/speed.py), which this "
              "installation does not include; run it from a source checkout of MNIST Lab "
              "(`make bench`)", file=sys.stderr)
        return 2
    return run_command(args)


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


def add_serve_command(commands) -> None:
    serve = commands.add_parser("serve", help="run the web dashboard and API")
    serve.add_argument("--host", default=None,
                       help="address to listen on (default: $MNIST_LAB_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=None,
                       help="port (default: $MNIST_LAB_PORT, else 8000; 0: any free port)")
    serve.add_argument("--max-concurrent-runs", type=int, default=None,
                       help="runs that train at the same time; others wait queued (default: as many "
                       "as the cores fit, each run using its BLAS thread and the core preparing its "
                       "batches: cores // 2, at least 1)")
    serve.add_argument("--executor", default=None, metavar="local|ray",
                       help="where runs train: local processes (default) or actors on a Ray "
                       "cluster (needs `pip install 'mnist-lab[ray]'`; docs/ray.md)")
    serve.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                       help="the Ray cluster's head, as `ray start --head` printed it (default: "
                       "$RAY_ADDRESS, else a cluster started on this machine, else Ray's own)")
    add_data_dir(serve)
    serve.set_defaults(func=cmd_serve)


def add_bench_command(commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="time one training epoch against the BLAS limit (and PyTorch, if installed)",
        description="Train a preset's architecture (default: `default`) on real MNIST for a few "
        "epochs (batch 128, no augmentation) and compare the median epoch time with the time its "
        "matrix multiplications alone need at the sgemm speed measured in the same run, with the "
        "same steps as one flat NumPy loop, and with the same loop in PyTorch when it is installed.",
    )
    bench.add_argument("--epochs", type=int, default=3, metavar="N",
                       help="timed epochs per engine (default 3; medians are reported)")
    bench.add_argument("--preset", default="default", metavar="NAME",
                       help="whose architecture and optimiser to time (default: default; "
                       "`notebook` is the 784-128-10 model of the original notebook)")
    bench.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    bench.add_argument("--json", action="store_true", help="one JSON object on the last line")
    add_data_dir(bench)
    bench.set_defaults(func=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    add_serve_command(commands)
    add_sweep_command(commands)
    add_bench_command(commands)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
