"""Does bf16 autocast hurt accuracy? The same recipe, seed and data in fp32 and in bf16, final test top-1.

    CNNBENCH_DATA=../shared/datasets python benchmarks/precision.py --model vgg11_bn --dataset cifar10 \
        --limit-train 10000 --limit-test 0 --epochs 6 --batch-size 64 --lr 0.05 --seeds 0,1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cnnbench import TrainConfig, fit
from cnnbench.cli import exit_code_of, int_list


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vgg16_bn")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--limit-train", type=int, default=5000)
    p.add_argument("--limit-test", type=int, default=1000, help="0: the whole test set")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", type=int_list, default=(0,))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args()
    print("| precision | seed | test top-1 | test loss | images/s |\n|---|---|---|---|---|")
    for seed in args.seeds:
        for precision in ("fp32", "bf16"):
            cfg = TrainConfig(
                model=args.model,
                dataset=args.dataset,
                limit_train=args.limit_train,
                limit_test=args.limit_test or None,
                epochs=args.epochs,
                precision=precision,
                seed=seed,
                batch_size=args.batch_size,
                lr=args.lr,
            )
            with tempfile.TemporaryDirectory() as tmp:
                s = fit(cfg, Path(tmp) / "run")
            print(
                f"| {precision} | {seed} | {s['test_top1']:.2%} | {s['test_loss']:.4f} | {s['images_per_s']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "precision.py"))
