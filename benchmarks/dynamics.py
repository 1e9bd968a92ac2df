"""What --dynamics costs in training time on this machine (issue #14's budget: at most 5% of an epoch).

    CNNBENCH_DATA=../shared/datasets python benchmarks/dynamics.py --models vgg16_bn,resnet18 --repeats 2

Trains one short epoch on a CIFAR-10 slice (modern preset settings, batch 64) three ways, interleaved so that
shared-machine noise hits all three alike: without the callback, with WeightDynamics recording one step, and
recording every step. The two differences give the cost of one recorded step and the fixed cost per epoch (the
dead-unit probe and the file writes); from them, the cost of a full CIFAR-10 epoch at the defaults (20 recorded
steps of 781) as a share of that epoch's training time. Prints one markdown row per model.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cnnbench import TrainConfig, fit
from cnnbench.config import validate
from cnnbench.analysis.insight.dynamics import WeightDynamics
from cnnbench.cli import exit_code_of
from cnnbench.data.loader import load_dataset
from cnnbench.engine.train import data_options

FULL_EPOCH_STEPS = 50000 // 64  # CIFAR-10 at the modern preset's batch size
DEFAULT_RECORDS = 20


def timed_epoch(cfg: TrainConfig, data, callbacks: list) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(cfg, Path(tmp) / "run", callbacks=callbacks, data=data)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--steps", type=int, default=48, help="training steps in the timed epoch (default 48)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    print("| model | plain step | one recorded step costs | fixed cost per epoch | full CIFAR-10 epoch at the defaults "
          "| every step recorded |\n|---|---|---|---|---|---|")
    for model in args.models.split(","):
        cfg = validate(TrainConfig(model=model, dataset="cifar10", variant="small", epochs=1, batch_size=64, lr=0.05,
                                   limit_train=64 * args.steps, limit_test=64, crop_padding=2, label_smoothing=0.2))
        data = load_dataset(cfg.dataset, cfg.data_dir, data_options(cfg))  # decoded once, outside the timings
        timed_epoch(cfg, data, [])  # warm-up: allocator, kernels
        plain, once, every = [], [], []
        for _ in range(args.repeats):
            plain.append(timed_epoch(cfg, data, []))
            once.append(timed_epoch(cfg, data, [WeightDynamics(rows_per_epoch=1)]))
            every.append(timed_epoch(cfg, data, [WeightDynamics(rows_per_epoch=args.steps)]))
        t_plain, t_once, t_every = (statistics.median(v) for v in (plain, once, every))
        per_record = max(t_every - t_once, 0.0) / (args.steps - 1)
        fixed = max(t_once - t_plain - per_record, 0.0)
        step = t_plain / args.steps
        full = (DEFAULT_RECORDS * per_record + fixed) / (FULL_EPOCH_STEPS * step)
        print(f"| {model} | {step * 1000:.0f} ms | {per_record * 1000:.1f} ms | {fixed:.2f} s | {full:.1%} | "
              f"{(t_every - t_plain) / t_plain:.1%} |", flush=True)


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "dynamics.py"))
