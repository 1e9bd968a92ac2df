"""Time to accuracy: test top-1 per epoch with cumulative training time, and the first epoch reaching a target.

Either trains models on a full data set (resumable: run folders live under --out and an interrupted run
continues where it stopped), or reads the runs of a finished study (--study), e.g. the modern preset's.

    python benchmarks/time_to_accuracy.py --dataset mnist --models vgg16_bn,resnet18 --epochs 2 --out bench-runs/mnist
    python benchmarks/time_to_accuracy.py --study studies/modern \
        --targets mnist:vgg16_bn=0.99,mnist:resnet18=0.992,cifar10:vgg16_bn=0.865,cifar10:resnet18=0.785
    python benchmarks/time_to_accuracy.py --runs bench-runs/tta/a,bench-runs/tta/b --metric val_top1 --targets 0.85
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from cnnbench import TrainConfig, fit
from cnnbench.cli import exit_code_of
from cnnbench.engine import ConsoleProgress
from cnnbench.fileio import read_csv, read_json


def parse_targets(text: str) -> dict[str, float]:
    """``[dataset:]model=top1`` pairs; a target without a data set applies to the model on any, and a bare number
    (stored under "") to every run."""
    try:
        pairs = [t.split("=") if "=" in t else ["", t] for t in text.split(",") if t]
        return {k: float(v) for k, v in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write [dataset:]model=top1 pairs, e.g. cifar10:vgg16_bn=0.865"
        ) from None


def epoch_rows(
    run_dir: Path, target: float | None, metric: str = "test_top1"
) -> tuple[list[str], tuple[int, float] | None]:
    """Markdown rows (one per epoch) and (epoch, cumulative training seconds) where ``metric`` first reached
    ``target``."""
    config = read_json(run_dir / "config.json")
    lines, reached, elapsed = [], None, 0.0
    for r in read_csv(run_dir / "metrics.csv"):
        elapsed += float(r["epoch_time_s"])
        top1 = float(r[metric])
        if reached is None and target is not None and top1 >= target:
            reached = (int(r["epoch"]), elapsed)
        lines.append(
            f"| {config['model']} | {config['dataset']} | {r['epoch']} | {top1:.2%} | {float(r['test_loss']):.4f} "
            f"| {elapsed / 60:.1f} min | {float(r['images_per_s']):.0f} |"
        )
    return lines, reached


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--study", default=None, help="read the runs of this finished study folder instead of training")
    p.add_argument("--runs", default=None, help="read these run folders (comma-separated) instead of training")
    p.add_argument("--metric", default="test_top1", choices=("test_top1", "val_top1"), help="what --targets reach")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="auto")
    p.add_argument(
        "--targets",
        type=parse_targets,
        default={},
        help="[dataset:]model=top1 pairs, e.g. vgg16_bn=0.99,cifar10:resnet18=0.785",
    )
    p.add_argument("--out", default=None, help="folder for the run folders (when training)")
    args = p.parse_args()
    targets = args.targets
    if args.runs:
        run_dirs = [Path(r) for r in args.runs.split(",") if r]
        missing = [str(r) for r in run_dirs if not (r / "summary.json").exists()]
        if missing:
            p.error(f"not finished runs: {', '.join(missing)}")
    elif args.study:
        runs = Path(args.study) / "runs"
        run_dirs = sorted(d for d in runs.iterdir() if (d / "summary.json").exists()) if runs.is_dir() else []
        if not run_dirs:
            p.error(f"no finished run under {runs}: give the folder of a study that `cnnbench compare` finished")
    else:
        if not args.out:
            p.error("--out is needed when training (or give --study)")
        run_dirs = []
        for model in args.models.split(","):
            cfg = TrainConfig(
                model=model,
                dataset=args.dataset,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.batch_size,
                precision=args.precision,
            )
            out = Path(args.out) / f"{model}-{args.dataset}"
            fit(cfg, out, resume=out.exists(), callbacks=[ConsoleProgress()])
            run_dirs.append(out)
    lines = [
        f"| model | data set | epoch | {args.metric.replace('_', ' ')} | test loss | cumulative train time "
        "| images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    results = {}
    for run_dir in run_dirs:
        summary = read_json(run_dir / "summary.json")
        model, dataset = summary["config"]["model"], summary["config"]["dataset"]
        target = targets.get(f"{dataset}:{model}", targets.get(model, targets.get("")))
        rows, reached = epoch_rows(run_dir, target, args.metric)
        lines += rows
        results[run_dir.name] = {
            "train_time_s": summary["train_time_s"],
            "summary_top1": summary["test_top1"],
            "target": target,
            "reached": reached,
            "device": summary["environment"]["device_name"],
            "precision": summary["precision"],
        }
    print("\n".join(lines))
    print(json.dumps(results, indent=2))
    print(f"machine: {platform.node()} {next(iter(results.values()))['device']}")


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "time_to_accuracy.py"))
