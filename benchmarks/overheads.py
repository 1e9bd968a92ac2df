"""What two of cnnbench's always-on extras cost in training time on this machine:

- precise batch norm (the forward passes over --precise-bn training images before each evaluation), as a share
  of a full CIFAR-10 epoch at the modern preset's batch size (budget: at most 5%);
- the thread that samples the process's resident memory on a CPU (every 20 ms in training, every 2 ms in
  `cnnbench profile --train`), against training steps with no sampler.

    python benchmarks/overheads.py --models vgg16_bn,resnet18 --steps 30 --repeats 3

Training steps and the precise-BN pass run on random CIFAR-sized images (the time does not depend on the
pixels), bf16 where the CPU runs it fast, channels-last, interleaved so that shared-machine noise hits every
variant alike. Prints markdown rows: ratios measured in the same run, not absolute speeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn

from cnnbench.cli import exit_code_of
from cnnbench.config import TrainConfig
from cnnbench.engine.memory import PeakRSS
from cnnbench.engine.optim import make_optimizer
from cnnbench.engine.precise_bn import precise_bn_images, recompute_bn_statistics
from cnnbench.engine.runtime import autocast, resolve_precision
from cnnbench.models import create_model

BATCH = 64  # the modern preset's CIFAR-10 batch
TRAIN_IMAGES = 50_000
CPU = torch.device("cpu")


def _batch(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)


def timed_steps(model: nn.Module, optimizer, precision: str, steps: int, sampler_interval: float | None) -> float:
    """Median seconds per training step, with the resident-memory sampler running every ``sampler_interval`` s."""
    x, y, loss_fn = _batch(BATCH), torch.randint(0, 10, (BATCH,)), nn.CrossEntropyLoss()
    times = []
    sampler = PeakRSS(sampler_interval) if sampler_interval else None
    if sampler:
        sampler.__enter__()
    try:
        for _ in range(steps):
            start = time.perf_counter()
            with autocast(CPU, precision):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    return statistics.median(times)


def timed_precise_bn(model: nn.Module, precision: str, images: int) -> float:
    batches = [(_batch(BATCH), None) for _ in range(-(-images // BATCH))]
    start = time.perf_counter()
    recompute_bn_statistics(model, batches, images, CPU, precision)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per measurement (default 30)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    precision = resolve_precision("auto", CPU)
    images = precise_bn_images(TrainConfig().precise_bn, TRAIN_IMAGES)
    epoch_steps = TRAIN_IMAGES // BATCH
    print(f"precision {precision}, batch {BATCH}, {torch.get_num_threads()} threads; precise BN on {images} images\n")
    print(
        "| model | training step | precise BN pass | its share of a CIFAR-10 epoch | step with a 20 ms memory "
        "sampler | with a 2 ms sampler |\n|---|---|---|---|---|---|"
    )
    for name in args.models.split(","):
        model = create_model(name, variant="small").to(memory_format=torch.channels_last)
        optimizer = make_optimizer(TrainConfig(model=name, lr=0.05), model)
        model.train()
        timed_steps(model, optimizer, precision, 5, None)  # warm-up: allocator, kernels
        plain, slow, fast, bn = [], [], [], []
        for _ in range(args.repeats):
            plain.append(timed_steps(model, optimizer, precision, args.steps, None))
            slow.append(timed_steps(model, optimizer, precision, args.steps, 0.02))
            fast.append(timed_steps(model, optimizer, precision, args.steps, 0.002))
            bn.append(timed_precise_bn(model, precision, images))
        step, with_slow, with_fast, pass_s = (statistics.median(v) for v in (plain, slow, fast, bn))
        print(
            f"| {name} | {step * 1000:.0f} ms | {pass_s:.1f} s | {pass_s / (epoch_steps * step):.1%} | "
            f"{with_slow / step - 1:+.1%} | {with_fast / step - 1:+.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "overheads.py"))
