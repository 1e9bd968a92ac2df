"""Command line: parses, validates and calls the library; user mistakes become one-paragraph errors (exit 2)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CnnbenchError

EXIT_USAGE = 2


def _bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction,
                        default=argparse.SUPPRESS, help=help)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options that map one-to-one onto TrainConfig fields; unset ones keep the config file's or default value."""
    from .config import DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES
    from .models import VARIANTS

    S = argparse.SUPPRESS
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of training options (flags override it)")
    p.add_argument("--variant", choices=VARIANTS, default=S, help="paper: as in the original tables; small: CIFAR-style "
                   "stem/head; auto (default): small for inputs <= 64 px")
    p.add_argument("--epochs", type=int, default=S, help="passes over the training data (default 2)")
    p.add_argument("--batch-size", type=int, default=S, help="images per step (default 128)")
    p.add_argument("--lr", type=float, default=S, help="peak learning rate (default 0.1)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help="default sgd (Nesterov momentum 0.9)")
    p.add_argument("--momentum", type=float, default=S, help="SGD momentum (default 0.9)")
    p.add_argument("--schedule", choices=SCHEDULES, default=S, help="learning-rate schedule (default onecycle)")
    p.add_argument("--warmup-fraction", type=float, default=S, help="share of steps warming up (default 0.25)")
    p.add_argument("--weight-decay", type=float, default=S, help="on conv/linear weights only (default 5e-4)")
    p.add_argument("--label-smoothing", type=float, default=S, help="default 0.1")
    _bool_flag(p, "augment", "random crop, plus flips for natural images (default on)")
    p.add_argument("--seed", type=int, default=S, help="default 0")
    _bool_flag(p, "deterministic", "deterministic kernels: bit-identical reruns on CPU")
    p.add_argument("--precision", choices=PRECISIONS, default=S, help="auto: bf16 where the hardware runs it fast")
    p.add_argument("--device", choices=DEVICES, default=S, help="auto: cuda if present")
    _bool_flag(p, "channels-last", "NHWC memory format (default on)")
    _bool_flag(p, "compile", "torch.compile the model")
    p.add_argument("--threads", type=int, default=S, help="CPU threads (default: all cores)")
    p.add_argument("--data-dir", default=S, help="data root (default $CNNBENCH_DATA, else ~/.cache/cnnbench/data)")
    _bool_flag(p, "download", "let torchvision download missing data sets (default on)")
    p.add_argument("--limit-train", type=int, default=S, help="class-balanced slice of the training split")
    p.add_argument("--limit-test", type=int, default=S, help="class-balanced slice of the test split")
    p.add_argument("--val-split", type=int, default=S, help="training images held out for validation")
    p.add_argument("--pad-to", type=int, default=S, help="zero-pad smaller images to this size (default 32)")
    p.add_argument("--eval-batch-size", type=int, default=S, help="default 512")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnbench", description="Train, evaluate and compare CNNs on image classification data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one model on one data set into a run folder")
    train.add_argument("--model", default=argparse.SUPPRESS, help="a name from `cnnbench models` (default vgg16_bn)")
    train.add_argument("--dataset", default=argparse.SUPPRESS, help="a name from `cnnbench datasets` or imagefolder:PATH (default mnist)")
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    add_train_options(train)

    ev = sub.add_parser("evaluate", help="confusion matrix, per-class metrics and misclassified images of a run")
    ev.add_argument("run_dir", help="a run folder written by `cnnbench train`")
    ev.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    models = sub.add_parser("models", help="list the model zoo")
    models.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'vgg*'")
    models.add_argument("--params", action="store_true", help="also count parameters (10 classes, 3x32x32, both variants)")

    ds = sub.add_parser("datasets", help="list data sets and whether they are found locally")
    ds.add_argument("--data-dir", default=None, help="data root to look in")
    return parser


def train_config_from_args(args: argparse.Namespace):
    from .config import FIELD_NAMES, TrainConfig, config_from_dict, load_config_file
    from .fileio import read_json

    base = TrainConfig()
    saved = Path(args.out) / "config.json"
    if args.resume and saved.exists():
        base = config_from_dict(read_json(saved), where=str(saved))
    if args.config:
        base = load_config_file(args.config, base)
    overrides = {k: v for k, v in vars(args).items() if k in FIELD_NAMES}
    return config_from_dict(overrides, base, where="The command line")


def cmd_train(args) -> int:
    from .engine import ConsoleProgress, fit

    cfg = train_config_from_args(args)
    try:
        fit(cfg, args.out, resume=args.resume, callbacks=[ConsoleProgress()])
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished epochs are saved in {args.out}; continue with "
              f"`cnnbench train --out {args.out} --resume`.", file=sys.stderr)
        return 130
    return 0


def cmd_evaluate(args) -> int:
    from .engine.evaluate_run import evaluate_run

    r = evaluate_run(args.run_dir, args.device)
    print(f"{args.run_dir} (epoch {r['epoch']}): test loss {r['loss']:.4f}, top-1 {r['top1']:.2%}, top-5 {r['top5']:.2%}, "
          f"macro F1 {r['macro_f1']:.4f}, {r['misclassified']} of {r['test_images']} misclassified")
    width = max(len(c["class"]) for c in r["per_class"])
    print(f"{'class':<{width}}  precision  recall  f1      support")
    for c in r["per_class"]:
        print(f"{c['class']:<{width}}  {c['precision']:.4f}     {c['recall']:.4f}  {c['f1']:.4f}  {c['support']}")
    print("wrote evaluation.json, confusion_matrix.csv, per_class.csv, misclassified.csv, misclassified.png")
    return 0


def cmd_models(args) -> int:
    from .models import create_model, list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.params:
        print(f"{'model':<14} {'params (small)':>15} {'params (paper)':>15}")
        for n in names:
            counts = [sum(p.numel() for p in create_model(n, variant=v).parameters()) for v in ("small", "paper")]
            print(f"{n:<14} {counts[0]:>15,} {counts[1]:>15,}")
    else:
        print("\n".join(names))
    return 0


def cmd_datasets(args) -> int:
    from .data.sources import SOURCES, locate, resolve_data_root

    root = resolve_data_root(args.data_dir)
    print(f"data root: {root}")
    for name, (desc, _) in SOURCES.items():
        where = locate(name, args.data_dir)
        status = f"found: {where}" if where else "not found (downloaded on first use when online)"
        print(f"{name:<14} {desc:<48} {status}")
    print(f"{'imagefolder:PATH':<14} a folder or .tar with train/<class>/* and test/<class>/*")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "models": cmd_models, "datasets": cmd_datasets}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CnnbenchError as e:
        print(f"cnnbench: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
