"""`mnist-lab` commands that need only the engine: fetch-data, presets, train, evaluate, bench.

`app.cli` adds `serve` on top of this parser, so the console script has one entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

Command = Callable[[argparse.Namespace], int]


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where datasets, the database and models live (default: $MNIST_LAB_HOME, "
        "else $XDG_DATA_HOME/mnist-lab, else ~/.local/share/mnist-lab)",
    )


def _log_to_stderr(logger_name: str, quiet: bool) -> None:
    """Show an engine module's log records as plain lines on stderr ("warning: ...")."""
    import logging

    class LowercaseLevel(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{record.levelname.lower()}: {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LowercaseLevel())
    handler.set_name("mnist-lab-cli")
    logger = logging.getLogger(logger_name)
    for old in [h for h in logger.handlers if h.get_name() == "mnist-lab-cli"]:
        logger.removeHandler(old)  # one handler, on the current stderr, however often main runs
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def cmd_fetch_data(args: argparse.Namespace) -> int:
    from engine.data import MnistUnavailableError, fetch_mnist, resolve_data_dir

    _log_to_stderr("engine.data", args.quiet)
    try:
        folder = fetch_mnist(resolve_data_dir(args.data_dir), progress=not args.quiet)
    except MnistUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"MNIST ready (4 files verified by SHA-256) in {folder}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    import json

    from engine.presets import PRESETS

    if args.json:
        for preset in PRESETS.values():
            print(json.dumps({"name": preset.name, "description": preset.description,
                              "config": preset.config.to_dict()}))
        return 0
    width = max(len(name) for name in PRESETS)
    for preset in PRESETS.values():
        print(f"{preset.name:<{width}}  {preset.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-lab",
        description="Train a from-scratch NumPy MLP on MNIST and watch it learn.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser("fetch-data", help="download and verify the four MNIST files")
    _add_data_dir(fetch)
    fetch.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    fetch.set_defaults(func=cmd_fetch_data)

    presets = commands.add_parser("presets", help="list the training presets")
    presets.add_argument("--json", action="store_true", help="one JSON object per preset")
    presets.set_defaults(func=cmd_presets)

    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
