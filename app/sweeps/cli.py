"""`mnist-lab sweep`: a sweep in the terminal, against the engine directly (no server).

    mnist-lab sweep --space learning_rate=log:0.001:0.3 --space 'hidden_layers=[128];[256];[512,256]' \\
        --trials 12 --method tpe --pruner median [--json]

The second driver of the same sweep as the server's (app/sweeps/sweep.py: the spec, the space, the
ask-and-tell loop are shared): trials train in this process one after another, each under a
progress bar, and a table of the results, best first, ends it. Ctrl-C stops the trial that trains
and the sweep, and still prints what finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.blas import limit_blas_threads
from engine.cli import UsageError, add_data_dir, load_data, stop_on_interrupt

EXAMPLES = """examples:
  mnist-lab sweep --space learning_rate=log:0.001:0.3 --space 'hidden_layers=[128];[256];[512,256]' \\
      --trials 12 --method tpe --pruner median
  mnist-lab sweep --preset notebook --set epochs=3 --space batch_size=64;128;256 --method grid

--space NAME=SPEC, one per swept config field (the names GET /api/options lists):
  MIN:MAX       a range (whole numbers for integer fields), e.g. dropout=0:0.5
  log:MIN:MAX   a range on a log scale, e.g. learning_rate=log:0.001:0.3
  MIN:MAX:STEP  a range in steps, e.g. batch_size=32:256:32
  A;B;C         a list of values (JSON, or plain words), e.g. activation=relu;tanh
"""


def add_sweep_command(commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="search hyperparameters: trials of a config with fields varied (Optuna)",
        description="Train trials of a base config (a preset plus --set) with the --space fields "
        "varied, chosen by grid, random or TPE search; a pruner stops hopeless trials early. "
        "Trials train here, one after another; the results table comes last.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("--space", action="append", required=True, metavar="NAME=SPEC",
                       help="a field to vary and over what (repeat for each field; see below)")
    sweep.add_argument("--preset", default="default", help="the base config's preset (default: default)")
    sweep.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="fields",
                       help="a base config field, e.g. --set epochs=3 (JSON values; repeat)")
    sweep.add_argument("--method", default="tpe", help="grid, random or tpe (default)")
    sweep.add_argument("--trials", type=int, default=None, metavar="N",
                       help="trials to train (default 12; a grid: each of its configurations)")
    sweep.add_argument("--metric", default="val_accuracy", help="val_accuracy (default) or val_loss")
    sweep.add_argument("--pruner", default="none", help="none (default), median or asha")
    sweep.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    sweep.add_argument("--train-subset", type=int, default=None, metavar="N",
                       help="train on the first N training digits only (quick sweeps)")
    sweep.add_argument("--test-subset", type=int, default=None, metavar="N",
                       help="validate on the first N test digits only")
    sweep.add_argument("--threads", type=int, default=1, metavar="N",
                       help="BLAS threads of the training (default 1, as the server's workers; the "
                       "input pipeline prepares batches on another core; 0: the library's default)")
    sweep.add_argument("--save", type=Path, metavar="PATH",
                       help="write the best trial's model (.npz) here")
    sweep.add_argument("--json", action="store_true",
                       help="one JSON object per trial, then one for the sweep, on stdout")
    add_data_dir(sweep)
    sweep.set_defaults(func=cmd_sweep)


@dataclass
class TrialResult:
    trial: int
    params: dict[str, Any]
    status: str = "running"
    value: float | None = None
    epochs: int = 0
    planned_epochs: int = 0
    reason: str | None = None


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise UsageError(f"--threads must be 0 or more, got {args.threads}")
    limit_blas_threads(args.threads)  # before anything loads NumPy

    from app.sweeps.search import Search
    from app.sweeps.space import SpaceError, parse_cli_param
    from app.sweeps.spec import make_spec
    from app.sweeps.sweep import Sweep
    from engine.config import ConfigError, TrainConfig, field_bounds
    from engine.data.split import SplitError, hold_out

    fields = field_bounds()
    try:
        base = TrainConfig.from_dict({"preset": args.preset, **_base_fields(args.fields)})
        space = dict(parse_cli_param(text, fields) for text in args.space)
        spec = make_spec(base=base, space=space, fields=fields, method=args.method,
                         trials=args.trials, metric=args.metric, pruner=args.pruner, seed=args.seed)
    except (SpaceError, ConfigError) as error:
        raise UsageError(str(error)) from None
    for name, value in (("--train-subset", args.train_subset), ("--test-subset", args.test_subset)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive number of digits, got {value}")
    data = load_data(args)
    if data is None:
        return 1
    # As a server's worker does: the validation digits are held out first (the same for every
    # trial), then --train-subset keeps the first N of the others.
    data = data.subset(None, None if args.test_subset is None
                       else min(args.test_subset, len(data.test_labels)))
    try:
        data = hold_out(data, base.validation_size, train=args.train_subset)
    except SplitError as error:
        raise UsageError(str(error)) from None
    sweep = Sweep(spec, Search(spec))
    out = sys.stdout
    if not args.json:
        print(f"sweep: {spec.name} ({spec.trials} trials, {spec.method}, pruner {spec.pruner}, "
              f"optimising {spec.metric}) on {len(data.train_labels):,} digits", file=out, flush=True)
    results: list[TrialResult] = []
    best_model = None
    interrupted = False
    while not sweep.done:
        for proposal in sweep.propose():
            result, model, interrupted = _train_trial(sweep, proposal, data, len(results), args.json)
            results.append(result)
            if result.status == "completed" and result.value is not None and (
                    best_model is None or spec.better(result.value, best_model[0])):
                best_model = (result.value, model)
            if args.json:
                print(json.dumps({"event": "trial", **dataclasses.asdict(result)}, allow_nan=False),
                      file=out, flush=True)
            if interrupted:
                sweep.stop()
    best = _best(spec, results)
    if args.save and best_model is not None:
        from engine.model import save_model

        save_model(best_model[1], args.save, {"trial": best.trial, spec.metric: best.value,
                                              "params": best.params})
    if args.json:
        print(json.dumps({"event": "sweep", "spec": spec.to_json(),
                          "best_trial": dataclasses.asdict(best) if best else None,
                          **_epochs(results)}, allow_nan=False), file=out)
    else:
        for line in results_table(spec, results):
            print(line, file=out)
        if best is not None:
            fields = {**_base_fields(args.fields), **best.params}
            print(f"train it again: {train_command(args.preset, fields)}", file=out)
        if args.save and best_model is not None:
            print(f"saved the best trial's model to {args.save}", file=out)
    return 130 if interrupted else 0


def _base_fields(items: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in items:
        name, equals, raw = item.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"--set {item!r}: write NAME=VALUE, e.g. --set epochs=3")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.strip()
        name = name.strip()
        if name.startswith("augmentation."):
            fields.setdefault("augmentation", {})[name.removeprefix("augmentation.")] = value
        else:
            fields[name] = value
    return fields


def _train_trial(sweep, proposal, data, done: int, quiet: bool):
    """Train one trial here; its result, its model, and whether Ctrl-C interrupted it."""
    from engine.control import TrainingControl
    from engine.events import EndEvent, EpochEvent, IterationEvent, StartEvent, kept_epoch
    from engine.trainer import Trainer

    spec = sweep.spec
    result = TrialResult(proposal.trial, proposal.params, planned_epochs=proposal.config.epochs)
    control = TrainingControl()
    bar = None

    kept = None  # the epoch whose weights the trial keeps (the best on validation so far)

    def listen(event) -> None:
        nonlocal bar, kept
        match event:
            case StartEvent(epochs=epochs, steps_per_epoch=steps):
                if not quiet:
                    from tqdm import tqdm

                    bar = tqdm(total=epochs * steps, unit="step", leave=True, file=sys.stderr,
                               dynamic_ncols=True, disable=None,
                               desc=f"trial {done + 1}/{spec.trials} (#{proposal.trial})")
            case IterationEvent() if bar is not None:
                bar.update(1)
            case EpochEvent():
                result.epochs = event.epoch
                metrics = dataclasses.asdict(event)
                if kept is None or kept_epoch([kept, metrics]) is metrics:  # the trial's value:
                    kept, result.value = metrics, getattr(event, spec.metric)  # its kept epoch's
                if bar is not None:
                    bar.set_postfix_str(f"epoch {event.epoch} {spec.metric} {result.value:.4f}")
                reason = sweep.epoch(proposal.trial, event.epoch, dataclasses.asdict(event))
                if reason is not None:
                    result.reason = reason
                    control.stop()
            case EndEvent():
                if bar is not None:
                    if result.reason:
                        bar.set_postfix_str(f"pruned after epoch {result.epochs} "
                                            f"{spec.metric} {result.value:.4f}")
                    bar.close()

    trainer = Trainer(proposal.config, data, [listen], control)
    with stop_on_interrupt(control):
        end = trainer.run()
    interrupted = end.status == "stopped" and result.reason is None
    result.status = "pruned" if result.reason else end.status
    if end.status == "failed":
        result.reason = end.reason
    sweep.ended(proposal.trial, result.status)
    return result, trainer.model, interrupted


def _best(spec, results: list[TrialResult]) -> TrialResult | None:
    completed = [r for r in results if r.status == "completed" and r.value is not None]
    if not completed:
        return None
    best = completed[0]
    for result in completed[1:]:
        if spec.better(result.value, best.value):
            best = result
    return best


def _epochs(results: list[TrialResult]) -> dict[str, int]:
    return {"epochs_trained": sum(r.epochs for r in results),
            "epochs_pruned": sum(r.planned_epochs - r.epochs for r in results if r.status == "pruned")}


def results_table(spec, results: list[TrialResult]) -> list[str]:
    """The trials as a table, best first (trials without a value last), then the best's config."""
    names = list(spec.space)

    def shown(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return json.dumps(value) if isinstance(value, list | bool) else str(value)

    def order(result: TrialResult):
        if result.value is None:
            return (2, 0.0)
        rank = 0 if result.status == "completed" else 1
        return (rank, -result.value if spec.direction == "maximize" else result.value)

    header = ["trial", "status", spec.metric, "epochs", *names]
    rows = [[str(r.trial), r.status, "–" if r.value is None else f"{r.value:.4f}",
             f"{r.epochs}/{r.planned_epochs}", *(shown(r.params[name]) for name in names)]
            for r in sorted(results, key=order)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["", "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              for row in rows]
    epochs = _epochs(results)
    lines.append(f"{len(results)} trials, {epochs['epochs_trained']} epochs trained"
                 + (f", {epochs['epochs_pruned']} saved by pruning" if epochs["epochs_pruned"] else ""))
    best = _best(spec, results)
    if best is not None:
        settings = ", ".join(f"{name} {shown(value)}" for name, value in best.params.items())
        lines.append(f"best: trial {best.trial}, {spec.metric} {best.value:.4f} ({settings})")
    return [line.rstrip() for line in lines]


def train_command(preset: str, fields: dict[str, Any]) -> str:
    """The `mnist-lab train` command that trains this config (the preset with these fields)."""
    from engine.cli import config_flags

    flags = config_flags()
    words = ["mnist-lab", "train", "--preset", preset]
    for name, value in fields.items():
        flag = flags.get(name)
        if flag is None:
            continue
        if isinstance(value, bool):
            words.append(flag if value else flag.replace("--", "--no-", 1))
        elif isinstance(value, list):
            words += [flag, *(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return " ".join(words)
