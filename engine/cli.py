"""`mnist-lab` commands that need only the engine: fetch-data, presets, train, evaluate.

`app.cli` adds `serve` and `bench` on top of this parser, so the console script has one entry
point. Each command imports the engine modules it runs (NumPy and all) inside its function, so
that `mnist-lab --help` or `presets` starts in a blink.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from engine.blas import limit_blas_threads
from engine.config import (
    ACTIVATIONS,
    INITS,
    LR_SCHEDULES,
    OPTIMIZERS,
    ConfigError,
    TrainConfig,
    preset_config,
)
from engine.presets import PRESETS

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad options that argparse itself cannot catch (e.g. a config value out of range): exit 2."""


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where datasets, the database and models live (default: $MNIST_LAB_HOME, "
        "else $XDG_DATA_HOME/mnist-lab, else ~/.local/share/mnist-lab)",
    )


def _log_to_stderr(logger_name: str, quiet: bool) -> None:
    """Show an engine module's log records as plain lines on stderr ("warning: ...")."""
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


def load_data(args: argparse.Namespace):
    """The verified MNIST of `--data-dir` (fetched on first use), or None after saying why not."""
    from engine.data import MnistUnavailableError, load_mnist

    _log_to_stderr("engine.data", quiet=args.json)
    try:
        return load_mnist(args.data_dir)
    except MnistUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


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
    if args.json:
        for preset in PRESETS.values():
            print(json.dumps({"name": preset.name, "description": preset.description,
                              "config": preset_config(preset.name).to_dict()}))
        return 0
    width = max(len(name) for name in PRESETS)
    for preset in PRESETS.values():
        print(f"{preset.name:<{width}}  {preset.description}")
    return 0


# --- train ----------------------------------------------------------------------------------------
# Command-line option -> TrainConfig field. Options left out keep the preset's value.
TRAIN_OPTIONS = {
    "hidden": "hidden_layers",
    "activation": "activation",
    "init": "init",
    "batch_norm": "batch_norm",
    "dropout": "dropout",
    "optimizer": "optimizer",
    "lr": "learning_rate",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "schedule": "lr_schedule",
    "lr_decay": "lr_decay",
    "warmup": "warmup_epochs",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "seed": "seed",
    "validation_size": "validation_size",
    "stats_every": "stats_every",
}


AUGMENT_OPTIONS = (  # (option, AugmentConfig field, metavar, help)
    ("shift", "shift", "PX", "max random shift in pixels"),
    ("rotation", "rotation", "DEG", "max random rotation in degrees"),
    ("scale", "scale", "FRACTION", "max random zoom, e.g. 0.1 for +-10%%"),
    ("shear", "shear", "DEG", "max random shear in degrees"),
    ("elastic-alpha", "elastic_alpha", "A", "strength of elastic distortions (Simard: 34)"),
    ("elastic-sigma", "elastic_sigma", "PX", "smoothness of elastic distortions (Simard: 4)"),
    ("thickness", "thickness", "P", "probability of thickening or thinning the strokes"),
)


def config_flags() -> dict[str, str]:
    """Config field -> the `mnist-lab train` option that sets it ('augmentation.<name>' for the
    augmentation fields; a boolean field also has its `--no-` form). The dashboard's "Copy CLI
    command" reads this through GET /api/options, so the mapping lives here only."""
    flags = {field: f"--{option.replace('_', '-')}" for option, field in TRAIN_OPTIONS.items()}
    flags |= {f"augmentation.{field}": f"--{option}" for option, field, _, _ in AUGMENT_OPTIONS}
    return flags


def _add_train_parser(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a model on MNIST in the terminal",
        description="Train an MLP on MNIST: a preset plus any overrides. Prints one line per epoch "
        "(training_loss, validation_acc, ...) under a progress bar, or JSON events with --json.",
    )
    train.add_argument("--preset", default="default", help="starting configuration (see `presets`)")
    arch = train.add_argument_group("model")
    arch.add_argument("--hidden", type=int, nargs="*", metavar="N",
                      help="hidden layer sizes, e.g. --hidden 128 64 (none: softmax regression)")
    arch.add_argument("--activation", choices=ACTIVATIONS)
    arch.add_argument("--init", choices=INITS, help="weight initialisation (auto: He or Glorot)")
    arch.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None,
                      help="batch normalisation before each activation")
    arch.add_argument("--dropout", type=float, metavar="P", help="dropout probability, 0..0.95")
    opt = train.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS)
    opt.add_argument("--lr", type=float, metavar="RATE", help="learning rate")
    opt.add_argument("--momentum", type=float, metavar="MU", help="momentum (momentum, nesterov)")
    opt.add_argument("--weight-decay", type=float, metavar="LAMBDA", help="L2 weight decay")
    opt.add_argument("--schedule", choices=LR_SCHEDULES, help="learning-rate schedule")
    opt.add_argument("--lr-decay", type=float, metavar="FACTOR",
                     help="factor per epoch for --schedule step (the notebook: 0.5)")
    opt.add_argument("--warmup", type=float, metavar="EPOCHS", help="linear warm-up, in epochs")
    opt.add_argument("--batch-size", type=int, metavar="N")
    opt.add_argument("--epochs", type=int, metavar="N")
    opt.add_argument("--seed", type=int, metavar="N", help="same seed and config: same result")
    honest = train.add_argument_group(
        "validation and statistics",
        "the last N training digits are held out as the validation set: the per-epoch "
        "validation metrics and the epoch the model keeps come from them; the test set is "
        "evaluated once, at the end")
    honest.add_argument("--validation-size", type=int, metavar="N",
                        help="training digits held out for validation (default 5000; 0: train on "
                        "all 60,000 and report no validation)")
    honest.add_argument("--stats-every", type=int, metavar="STEPS",
                        help="with --json: layer statistics every STEPS steps and after every "
                        "epoch (default 250; 0: none)")
    augment = train.add_argument_group(
        "augmentation", "random distortions of each training batch; each option overrides the "
        "preset's value, the others keep it")
    for option, field, metavar, text in AUGMENT_OPTIONS:
        augment.add_argument(f"--{option}", dest=f"augment_{field}", type=float, metavar=metavar,
                             help=text)
    augment.add_argument("--no-augment", action="store_true",
                         help="train on the undistorted digits (all of the above 0)")
    out = train.add_argument_group("output")
    out.add_argument("--save", type=Path, metavar="PATH", help="write the trained model (.npz) here")
    out.add_argument("--json", action="store_true",
                     help="one JSON object per event on stdout (start, iteration, epoch, layers, "
                     "pause, end)")
    train.add_argument("--threads", type=int, default=1, metavar="N",
                       help="BLAS threads of the training (default 1, as the server's workers: the "
                       "batches are prepared on another core; 0: the library's default)")
    add_data_dir(train)
    train.set_defaults(func=cmd_train)


def train_config_from_args(args: argparse.Namespace):
    """The TrainConfig the options ask for; UsageError (exit 2) with the reason if it is invalid."""
    overrides = {field: getattr(args, option) for option, field in TRAIN_OPTIONS.items()
                 if getattr(args, option) is not None}
    augment = {field: getattr(args, f"augment_{field}") for _, field, _, _ in AUGMENT_OPTIONS
               if getattr(args, f"augment_{field}", None) is not None}
    try:
        if getattr(args, "no_augment", False):
            overrides["augmentation"] = {}
        elif augment:
            preset = TrainConfig.from_dict({"preset": args.preset}).augmentation
            overrides["augmentation"] = {**dataclasses.asdict(preset), **augment}
        return TrainConfig.from_dict({"preset": args.preset, **overrides})
    except ConfigError as error:
        raise UsageError(in_flags(error)) from None


# Config field -> the `train` flag that sets it, for error messages in the user's own words.
FLAGS = {**{field: f"--{option.replace('_', '-')}" for option, field in TRAIN_OPTIONS.items()},
         **{f"augmentation.{field}": f"--{option}" for option, field, _, _ in AUGMENT_OPTIONS},
         "preset": "--preset"}


def in_flags(error) -> str:
    """A ConfigError's message with the field it names replaced by the flag that sets it:
    `hidden_layers[] must be ...` becomes `--hidden: each size must be ...`."""
    message = str(error)
    flag = FLAGS.get(error.field or "")
    if flag is None:
        return message
    if message.startswith(f"{error.field}[] "):
        return f"{flag}: each size {message[len(error.field) + 3:]}"
    if message.startswith(f"{error.field} "):
        return f"{flag} {message[len(error.field) + 1:]}"
    return message


def _check_save_path(path: Path | None) -> None:
    """Fail before training, not after, if the model could not be written."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"--save {path} is a directory; give a file name such as {path / 'model.npz'}")
    folder = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"--save {path}: cannot write in {existing}; choose a writable folder")


@contextlib.contextmanager
def stop_on_interrupt(control):
    """While training, the first Ctrl-C asks the trainer to stop after the current iteration
    (so the model can still be saved); a second one interrupts at once."""
    def handler(signum, frame):
        if control.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this iteration (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        control.stop()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_train(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise UsageError(f"--threads must be 0 or more, got {args.threads}")
    limit_blas_threads(args.threads)  # before anything loads NumPy

    from engine.control import TrainingControl
    from engine.data import SplitError
    from engine.inside import LayerWatch
    from engine.model import save_model
    from engine.reporters import EpochReport, JsonLines
    from engine.trainer import Trainer

    config = train_config_from_args(args)
    _check_save_path(args.save)
    data = load_data(args)
    if data is None:
        return 1

    control = TrainingControl()
    report = JsonLines() if args.json else EpochReport()
    # Layer statistics only where someone reads them: the JSON lines.
    listeners = [report, LayerWatch(config.stats_every)] if args.json else [report]
    try:
        trainer = Trainer(config, data, listeners, control)
    except SplitError as error:
        raise UsageError(str(error).replace("validation_size", "--validation-size")) from None
    if not args.json:
        layers = "-".join(str(n) for n in (784, *config.hidden_layers, 10))
        split = trainer.data
        held_out = (f", {len(split.validation_labels):,} held out for validation"
                    if split.has_validation else ", none held out: no validation")
        print(f"training {layers} ({config.preset or 'custom'}: {config.optimizer} lr "
              f"{config.learning_rate:g}, {config.lr_schedule} schedule, batch {config.batch_size}, "
              f"{config.epochs} epochs, seed {config.seed}"
              f"{', augmented' if config.augmentation.enabled else ''}) "
              f"on {len(split.train_labels):,} digits{held_out}", flush=True)
    try:
        with stop_on_interrupt(control):
            end = trainer.run()
    finally:
        if isinstance(report, EpochReport):
            report.close()

    if end.status == "failed":
        print(f"error: training failed: {end.reason}", file=sys.stderr)
        return 1
    if args.save:
        path = save_model(trainer.model, args.save, {
            "test_accuracy": end.test_accuracy, "test_loss": end.test_loss,
            "model_epoch": end.model_epoch, "status": end.status,
            "epochs_completed": end.epochs_completed, "steps_completed": end.steps_completed,
        })
        print(f"saved model to {path}", file=sys.stderr if args.json else sys.stdout)
    return 0 if end.status == "completed" else 130


# --- evaluate -------------------------------------------------------------------------------------
def _add_evaluate_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix of a saved model",
        description="Evaluate a model saved by `train --save` (or the dashboard) on the MNIST test set.",
    )
    evaluate.add_argument("model", type=Path, help="a model .npz saved by MNIST Lab")
    evaluate.add_argument("--json", action="store_true", help="one JSON object on stdout")
    evaluate.add_argument(
        "--drawn", action="store_true",
        help="instead of the test set, the drawn-digit set: MNIST test digits drawn large and "
        "off-centre on a 280x280 canvas and font digits, in three browser looks, each through "
        "the preprocessing /predict uses")
    evaluate.add_argument("--drawn-count", type=int, default=None, metavar="N",
                          help="MNIST test digits in the drawn set (default 1500)")
    add_data_dir(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def format_confusion(matrix, per_class) -> list[str]:
    """A confusion matrix table (rows: true digit, columns: predicted) with per-class accuracy."""
    width = max(5, len(str(int(matrix.max()))) + 1)
    lines = ["confusion matrix (rows: true digit, columns: predicted digit)",
             "true " + "".join(f"{d:>{width}}" for d in range(len(matrix))) + "   accuracy"]
    for digit, row in enumerate(matrix):
        cells = "".join(f"{int(n):>{width}}" if n or i == digit else f"{'.':>{width}}"
                        for i, n in enumerate(row))
        lines.append(f"{digit:>4} {cells}   {100 * per_class[digit]:6.2f}%")
    return lines


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.metrics import evaluate, per_class_accuracy
    from engine.model import ModelError, load_model

    try:
        model, metadata = load_model(args.model)
    except ModelError as error:
        print(f"error: cannot load {args.model}: {error}", file=sys.stderr)
        return 1
    data = load_data(args)
    if data is None:
        return 1
    if args.drawn:
        return _evaluate_drawn(args, model, data)
    result = evaluate(model, data.test_images, data.test_labels)
    matrix = result.confusion_matrix(data.test_labels)
    per_class = per_class_accuracy(matrix)
    errors = int(len(data.test_labels) - matrix.trace())

    if args.json:
        print(json.dumps({
            "model": str(args.model),
            "config": model.config.to_dict(),
            "metadata": metadata,
            "samples": len(data.test_labels),
            "accuracy": result.accuracy,
            "loss": result.loss,
            "errors": errors,
            "per_class_accuracy": [float(a) for a in per_class],
            "confusion_matrix": matrix.tolist(),
        }, allow_nan=False))
        return 0
    config = model.config
    layers = "-".join(str(n) for n in (784, *config.hidden_layers, 10))
    saved = metadata.get("created", "unknown date")
    print(f"model     {args.model}  ({layers} {config.activation}, preset {config.preset or 'custom'}, "
          f"saved {saved})")
    print(f"test set  {len(data.test_labels):,} digits")
    print(f"accuracy  {100 * result.accuracy:.2f}%  ({errors} errors)   loss {result.loss:.4f}")
    print()
    for line in format_confusion(matrix, per_class):
        print(line)
    return 0


def _evaluate_drawn(args: argparse.Namespace, model, data) -> int:
    """`evaluate --drawn`: accuracy per group and look of the seeded drawn-digit set."""
    from engine.drawn import DEFAULT_MNIST_COUNT, LOOKS, evaluate_drawn

    count = DEFAULT_MNIST_COUNT if args.drawn_count is None else args.drawn_count
    if not 0 <= count <= len(data.test_labels):
        raise UsageError(f"--drawn-count must be between 0 and {len(data.test_labels)}, got {count}")
    report = evaluate_drawn(model.predict_proba, data, n_mnist=count)
    if args.json:
        print(json.dumps({"model": str(args.model), "drawn": report}, allow_nan=False))
        return 0
    print(f"model     {args.model}")
    print("drawn digits through to_mnist (the preprocessing of /predict)")
    names = {"mnist": "MNIST test digits drawn large, off-centre", "fonts": "font digits, rotated"}
    for group, title in names.items():
        if group not in report:
            continue
        entry = report[group]
        print(f"  {title:<42} {100 * entry['accuracy']:6.2f}%  of {entry['count']}")
        for look in LOOKS:
            part = report.get(f"{group}/{look}")
            if part:
                print(f"    {look.replace('_', ' '):<40} {100 * part['accuracy']:6.2f}%  of {part['count']}")
    print(f"  {'all':<42} {100 * report['all']['accuracy']:6.2f}%  of {report['all']['count']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-lab",
        description="Train a from-scratch NumPy MLP on MNIST and watch it learn.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser("fetch-data", help="download and verify the four MNIST files")
    add_data_dir(fetch)
    fetch.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    fetch.set_defaults(func=cmd_fetch_data)

    presets = commands.add_parser("presets", help="list the training presets")
    presets.add_argument("--json", action="store_true", help="one JSON object per preset")
    presets.set_defaults(func=cmd_presets)

    _add_train_parser(commands)
    _add_evaluate_parser(commands)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """The program reading stdout exited (`mnist-lab train --json | head`): stop quietly, as a
    command killed by SIGPIPE does, instead of a traceback; stdout goes to /dev/null so that the
    interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
