"""What --dynamics costs in training time on this machine (budget: at most 5% of an epoch).

    CNNBENCH_DATA=../shared/datasets python benchmarks/dynamics.py --models vgg16_bn,resnet18 --repeats 2

Trains one short epoch on a CIFAR-10 slice (modern preset settings, batch 64) three ways, interleaved so that
shared-machine noise hits all three alike: without the callback, with WeightDynamics recording one step, and
recording every step. The two differences give the cost of one recorded step and the fixed cost per epoch (the
dead-unit probe and the file writes); from them, the cost of a full CIFAR-10 epoch at the defaults (20 recorded
steps of 781) as a share of that epoch's training time. Prints one markdown row per model.

    python benchmarks/dynamics.py --parts --models vgg16_bn,resnet18

times the callback's two parts alone instead (one recorded step on the real layer shapes, and the dead-unit
probe), in seconds and without data.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from cnnbench import TrainConfig, fit
from cnnbench.analysis.insight.dynamics import WeightDynamics
from cnnbench.cli import exit_code_of
from cnnbench.config import validate
from cnnbench.data.loader import load_dataset

FULL_EPOCH_STEPS = 50000 // 64  # CIFAR-10 at the modern preset's batch size
DEFAULT_RECORDS = 20


def timed_epoch(cfg: TrainConfig, data, callbacks: list) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(cfg, Path(tmp) / "run", callbacks=callbacks, data=data)
        return time.perf_counter() - start


def parts(models: list[str]) -> None:
    """Time the callback's parts alone: one recorded step on real layer shapes, and the dead-unit probe."""
    import torch

    from cnnbench.analysis.insight.dynamics import dead_channel_fractions
    from cnnbench.analysis.insight.stages import weight_layers
    from cnnbench.data.loader import normalize
    from cnnbench.engine.runtime import autocast
    from cnnbench.models import create_model

    print("| model | one recorded step | dead-unit probe (256 images, bf16) |\n|---|---|---|")
    for name in models:
        model = create_model(name, variant="small").to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        callback = WeightDynamics()
        callback.layers = weight_layers(model)
        callback.init = [m.weight.detach().float().clone() for _, m in callback.layers]
        callback.run = SimpleNamespace(scheduler=SimpleNamespace(last_epoch=0))
        callback.first_step, callback.every, callback.steps, callback.pending = 0, 1, 10**9, []
        optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}])
        record = []
        for _ in range(5):
            start = time.perf_counter()
            callback._before_step(optimizer, (), {})
            callback._after_step(optimizer, (), {})
            record.append(time.perf_counter() - start)
        x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
        probe = normalize(x, torch.full((3,), 0.5), torch.full((3,), 0.25), True)
        probes = []
        for _ in range(3):
            start = time.perf_counter()
            with autocast(torch.device("cpu"), "bf16"):
                dead_channel_fractions(model, probe)
            probes.append(time.perf_counter() - start)
        print(f"| {name} | {statistics.median(record) * 1000:.0f} ms | {statistics.median(probes):.2f} s |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", action="store_true", help="time the callback's parts alone (seconds, no data needed)")
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--steps", type=int, default=48, help="training steps in the timed epoch (default 48)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    if args.parts:
        return parts(args.models.split(","))
    print(
        "| model | plain step | one recorded step costs | fixed cost per epoch | full CIFAR-10 epoch at the defaults "
        "| every step recorded |\n|---|---|---|---|---|---|"
    )
    for model in args.models.split(","):
        cfg = validate(
            TrainConfig(
                model=model,
                dataset="cifar10",
                variant="small",
                epochs=1,
                batch_size=64,
                lr=0.05,
                limit_train=64 * args.steps,
                limit_test=64,
                crop_padding=2,
                label_smoothing=0.2,
            )
        )
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_options())  # decoded once, outside the timings
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
        print(
            f"| {model} | {step * 1000:.0f} ms | {per_record * 1000:.1f} ms | {fixed:.2f} s | {full:.1%} | "
            f"{(t_every - t_plain) / t_plain:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "dynamics.py"))
