"""Time to accuracy: train models on a full data set and report test top-1 per epoch with wall time.

Resumable: run folders live under --out and an interrupted run continues where it stopped.

    python benchmarks/time_to_accuracy.py --dataset mnist --models vgg16_bn,resnet18 --epochs 2 --out bench-runs/mnist
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from cnnbench import TrainConfig, fit
from cnnbench.engine import ConsoleProgress
from cnnbench.fileio import read_csv


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="auto")
    p.add_argument("--targets", default="", help="model=top1 pairs, e.g. vgg16_bn=0.99,resnet18=0.992")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    targets = dict((k, float(v)) for k, v in (t.split("=") for t in args.targets.split(",") if t))
    lines = ["| model | epoch | test top-1 | test loss | cumulative train time | images/s |", "|---|---|---|---|---|---|"]
    results = {}
    for model in args.models.split(","):
        cfg = TrainConfig(model=model, dataset=args.dataset, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                          precision=args.precision)
        out = Path(args.out) / f"{model}-{args.dataset}"
        summary = fit(cfg, out, resume=out.exists(), callbacks=[ConsoleProgress()])
        rows = read_csv(out / "metrics.csv")
        elapsed = 0.0
        reached = None
        for r in rows:
            elapsed += float(r["epoch_time_s"])
            top1 = float(r["test_top1"])
            if reached is None and model in targets and top1 >= targets[model]:
                reached = (int(r["epoch"]), elapsed)
            lines.append(f"| {model} | {r['epoch']} | {top1:.2%} | {float(r['test_loss']):.4f} | {elapsed / 60:.1f} min | {float(r['images_per_s']):.0f} |")
        results[model] = {"summary_top1": summary["test_top1"], "reached": reached, "device": summary["environment"]["device_name"],
                          "precision": summary["precision"]}
    print("\n".join(lines))
    print(json.dumps(results, indent=2))
    print(f"machine: {platform.node()} {results[next(iter(results))]['device']}")


if __name__ == "__main__":
    main()
