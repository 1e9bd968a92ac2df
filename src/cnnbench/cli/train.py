"""`cnnbench train`: one model on one data set into a run folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..layout import CONFIG_JSON, SUMMARY
from .common import add_train_options, bool_flag, stopped_by, tensorboard_option, training_callbacks


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train one model on one data set into a run folder")
    train.set_defaults(func=run)
    train.add_argument("--model", default=argparse.SUPPRESS, help="a name from `cnnbench models` (default vgg16_bn)")
    train.add_argument(
        "--dataset",
        default=argparse.SUPPRESS,
        help="a name from `cnnbench datasets` or imagefolder:PATH (default mnist)",
    )
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    bool_flag(
        train,
        "dynamics",
        "record per-layer weight, gradient and update norms, dead ReLU channels and "
        "first-layer filters while training (dynamics.csv; default off for train)",
    )
    train.set_defaults(dynamics=False)
    tensorboard_option(train)
    add_train_options(train)


def train_config_from_args(args: argparse.Namespace):
    from ..config import FIELD_NAMES, TrainConfig, config_from_dict, load_config_file
    from ..fileio import read_json

    base = TrainConfig()
    saved = Path(args.out) / CONFIG_JSON
    if args.resume and saved.exists():
        base = config_from_dict(read_json(saved), where=str(saved))
    if args.config:
        base = load_config_file(args.config, base)
    overrides = {k: v for k, v in vars(args).items() if k in FIELD_NAMES}
    return config_from_dict(overrides, base, where="The command line")


def run(args) -> int:
    from ..engine import fit

    cfg = train_config_from_args(args)
    if args.resume and (Path(args.out) / SUMMARY).exists():
        summary = fit(cfg, args.out, resume=True)  # checks the settings; a finished run is left as it is
        print(
            f"{args.out} is already finished ({summary['epochs']} epochs, test top-1 {summary['test_top1']:.2%}); "
            f"nothing to resume. `cnnbench evaluate {args.out}` re-evaluates it."
        )
        return 0
    try:
        fit(cfg, args.out, resume=args.resume, callbacks=training_callbacks(args.dynamics, args.tensorboard))
    except KeyboardInterrupt as e:
        print(
            f"\n{stopped_by(e)}: finished epochs are saved in {args.out}; continue with "
            f"`cnnbench train --out {args.out} --resume`.",
            file=sys.stderr,
        )
        return getattr(e, "exit_code", 130)
    if os.environ.get("RANK", "0") == "0" and (Path(args.out) / SUMMARY).exists():
        from ..launch.cell import finish_run_files

        finish_run_files(Path(args.out))
        print(f"pictures (curves, confusion matrix, misclassified images): cnnbench report {args.out}")
    return 0
