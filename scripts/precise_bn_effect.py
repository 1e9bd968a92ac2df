"""What precise batch norm would change in finished runs: test top-1 of each run's last checkpoint with the
running statistics it trained with, then with statistics recomputed on N training images (as --precise-bn N
does before each evaluation). Only batch-norm buffers change; the weights are the run's own.

    python scripts/precise_bn_effect.py studies/modern-seed3/runs/* [--images 4096] [--out FILE.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnbench.engine.evaluate import evaluate
from cnnbench.engine.evaluate_run import load_run_model
from cnnbench.engine.precise_bn import precise_bn_pass
from cnnbench.engine.runtime import resolve_device
from cnnbench.engine.train import training_augment
from cnnbench.fileio import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = resolve_device("auto")
    records = []
    for run in args.runs:
        opened, data = load_run_model(run, device)
        cfg, model, epoch = opened.config, opened.model, opened.epoch
        data = data.to(device)
        cfg = cfg.replace(precise_bn=args.images)
        precision = opened.precision

        def top1(model=model, data=data, precision=precision, cfg=cfg) -> dict:
            r = evaluate(model, data.test_x, data.test_y, data, device, precision, cfg.eval_batch_size)
            return {"top1": r["top1"], "loss": r["loss"]}

        stored = top1()
        used = precise_bn_pass(model, data, cfg, training_augment(cfg), epoch, device, precision)
        precise = top1()
        records.append(
            {
                "run": run.name,
                "epoch": epoch,
                "images": used,
                "stored": stored,
                "precise": precise,
                "top1_change_points": 100 * (precise["top1"] - stored["top1"]),
            }
        )
        print(
            f"{run.name} (epoch {epoch}): top-1 {stored['top1']:.2%} with the running statistics, "
            f"{precise['top1']:.2%} recomputed on {used} training images "
            f"({records[-1]['top1_change_points']:+.2f} points)"
        )
    if args.out:
        write_json(args.out, records)


if __name__ == "__main__":
    main()
