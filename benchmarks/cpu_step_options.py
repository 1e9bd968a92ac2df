"""What each candidate fix does to a CPU training step, measured side by side in the same run: cnnbench's eager
step (the default) against fused or foreach optimizer steps and torch.compile (inductor) of the model, for each
model and precision. Steps of every variant are interleaved round by round on the same batch, so a noisy
neighbour slows them all alike; each variant's rate is the median of its rounds.

    python benchmarks/cpu_step_options.py --models vgg16_bn,resnet18 --precisions bf16,fp32 --batch-size 128
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
from peak import (  # benchmarks/ is on the path when run
    cifar_model,
    machine_line,
    practical_peak,
    step_benchmark_parser,
    training_step,
)

from cnnbench.config import TrainConfig
from cnnbench.engine.optim import param_groups
from cnnbench.models.complexity import count_flops

# short name -> what the step does differently from plain eager PyTorch (oneDNN's convolutions, a for-loop SGD step)
VARIANTS = {
    "eager": "eager",
    "foreach": "eager, foreach SGD",
    "fused": "eager, fused SGD",
    "small-maps": "eager, small-map convolutions as matmuls",
    "small-maps-fused": "eager, small-map convolutions as matmuls, fused SGD",
    "compiled": "compiled, fused SGD",
    "autotune": "compiled max-autotune, fused SGD",
}


def make_step(model_name: str, precision: str, batch_size: int, variant: str) -> Callable[[], None]:
    """One training step of a fresh model (same seed for every variant) on a fixed channels_last batch."""
    cfg = TrainConfig(model=model_name, dataset="cifar10", batch_size=batch_size, precision=precision)
    model = cifar_model(model_name, small_maps="small-map" in variant)
    groups = param_groups(model, cfg.weight_decay, cfg.lr, None, cfg.decay)
    flags = {"foreach": True} if "foreach" in variant else {"fused": True} if "fused" in variant else {}
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, **flags)
    forward = model
    if variant.startswith("compiled"):
        forward = torch.compile(model, mode="max-autotune-no-cudagraphs" if "autotune" in variant else "default")
    train_step = training_step(forward, optimizer, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), precision)
    x = torch.randn(batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        train_step(x, y)

    start = time.perf_counter()
    for _ in range(3):  # warm-up: oneDNN picks its kernels; inductor compiles forward and backward
        step()
    step.warm_up_s = time.perf_counter() - start
    step.macs = count_flops(model, (3, 32, 32)) // 2
    return step


def compare(model_name: str, precision: str, batch_size: int, rounds: int, steps: int, variants) -> dict:
    made = {v: make_step(model_name, precision, batch_size, v) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v, step in made.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[v].append((time.perf_counter() - start) / steps)
    macs = next(iter(made.values())).macs
    return {
        v: {
            "images_per_s": batch_size / float(np.median(t)),
            "gflops": 3 * 2 * macs * batch_size / float(np.median(t)) / 1e9,  # forward + backward (2x forward)
            "warm_up_s": made[v].warm_up_s,
        }
        for v, t in times.items()
    }


def main() -> None:
    p = step_benchmark_parser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    p.add_argument(
        "--variants", default="eager,fused,small-maps,small-maps-fused,compiled", help=f"from: {', '.join(VARIANTS)}"
    )
    args = p.parse_args()
    variants = [VARIANTS[v.strip()] for v in args.variants.split(",") if v.strip()]
    print(machine_line())
    print("| model | precision | variant | images/s | vs eager | GFLOP/s | share of peak | warm-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        peak = max(practical_peak(torch.bfloat16 if precision == "bf16" else torch.float32).values())
        for model_name in args.models.split(","):
            got = compare(model_name, precision, args.batch_size, args.rounds, args.steps, variants)
            base = got["eager"]["images_per_s"] if "eager" in got else None
            for v, r in got.items():
                ratio = f"{r['images_per_s'] / base:.2f}x" if base else "-"
                print(
                    f"| {model_name} | {precision} | {v} | {r['images_per_s']:.0f} | {ratio} | {r['gflops']:.0f} | "
                    f"{r['gflops'] / peak:.0%} of {peak:,.0f} | {r['warm_up_s']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
