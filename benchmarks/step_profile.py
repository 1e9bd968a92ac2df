"""Where a CPU training step's time goes: torch.profiler over a few of cnnbench's own training steps (batched
augmentation, normalisation, forward and backward under the run's precision, the optimizer step), grouped into
convolution forward and backward, batch norm, activations, pooling, the loss, the optimizer, augmentation and data
movement, with each convolution's achieved GFLOP/s against the practical peak measured in the same run (the
faster of a 2048x2048 matmul and a 256-channel 3x3 convolution, per precision: oneDNN's convolutions run where
MKL's matmul does not, so a matmul-only yardstick understates what the cores can do).

    python benchmarks/step_profile.py --models vgg16_bn,resnet18 --precisions bf16,fp32 --batch-size 128
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
import torch.nn as nn
from peak import (  # benchmarks/ is on the path when run
    cifar_model,
    machine_line,
    practical_peak,
    step_benchmark_parser,
    training_step,
)
from torch.profiler import ProfilerActivity, profile

from cnnbench.config import TrainConfig
from cnnbench.data import DataOptions, load_dataset
from cnnbench.data.loader import Augment, train_batches
from cnnbench.engine.optim import make_optimizer
from cnnbench.models.complexity import count_flops
from cnnbench.models.small_maps import PROFILER_LABEL

# profiler op name -> the part of the step it belongs to (the first pattern that matches wins)
GROUPS = (
    ("convolution backward", ("convolution_backward", "mkldnn_convolution_backward")),
    ("convolution forward", ("convolution", "conv2d", "mkldnn_convolution")),
    ("batch norm", ("batch_norm", "native_batch_norm")),
    ("activations", ("relu", "threshold")),
    ("pooling", ("pool",)),
    ("linear", ("addmm", "linear", "mm")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("optimizer", ("_foreach", "sgd", "add_", "mul_", "lerp")),
    ("augmentation and normalisation", ("randperm", "index", "gather", "flip", "where", "addcmul", "randint")),
    ("data movement", ("copy_", "aten::to", "contiguous", "clone", "_to_copy", "empty_like", "reorder")),
)


def group_of(event) -> str:
    """The part of the step a profiler event belongs to: inside a small-map convolution (models/small_maps.py)
    whatever the operator, else by the operator's name."""
    parent = event
    while parent is not None:
        if parent.name.startswith(PROFILER_LABEL):
            return f"small-map convolutions as matmuls ({parent.name.rsplit(' ', 1)[-1]})"
        parent = parent.cpu_parent
    low = event.name.lower()
    for group, keys in GROUPS:
        if any(k in low for k in keys):
            return group
    return "other"


def profile_step(model_name: str, precision: str, batch_size: int, steps: int, data, small_maps: bool = True) -> dict:
    cfg = TrainConfig(model=model_name, dataset="cifar10", batch_size=batch_size, precision=precision)
    model = cifar_model(model_name, small_maps)  # small_maps: as cnnbench trains on a CPU (the default)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    step = training_step(model, make_optimizer(cfg, model), criterion, precision)
    generator = torch.Generator().manual_seed(1)
    augment = Augment(crop_padding=4, flip=True, cutout=0)

    batches = train_batches(data, batch_size, generator, augment, channels_last=True)  # augments as it yields
    for _ in range(2):  # warm-up: oneDNN picks its kernels
        step(*next(batches))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step(*next(batches))  # the batch's crop, flip and normalisation are inside the profile
        wall = time.perf_counter() - start
    by_group: dict[str, float] = defaultdict(float)
    for e in prof.events():
        if e.self_cpu_time_total > 0:
            by_group[group_of(e)] += e.self_cpu_time_total / 1e6
    conv_fwd = count_flops(model, tuple(data.train_x.shape[1:])) * batch_size * steps
    return {
        "images_per_s": batch_size * steps / wall,
        "gflops": 3 * conv_fwd / wall / 1e9,  # forward + backward (about twice the forward)
        "shares": {g: t / sum(by_group.values()) for g, t in sorted(by_group.items(), key=lambda kv: -kv[1])},
    }


def main() -> None:
    p = step_benchmark_parser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument(
        "--no-small-map-matmul", action="store_true", help="profile with oneDNN's convolutions everywhere (as before)"
    )
    args = p.parse_args()
    data = load_dataset("cifar10", options=DataOptions(limit_train=args.batch_size * (args.steps + 3), limit_test=100))
    print(machine_line())
    for precision in args.precisions.split(","):
        peak = practical_peak(torch.bfloat16 if precision == "bf16" else torch.float32)
        best = max(peak.values())
        print(
            f"\n{precision}: practical peak {best:.0f} GFLOP/s "
            f"(matmul {peak['matmul']:.0f}, 3x3 conv {peak['conv']:.0f})"
        )
        for model_name in args.models.split(","):
            got = profile_step(model_name, precision, args.batch_size, args.steps, data, not args.no_small_map_matmul)
            shares = ", ".join(f"{g} {s:.0%}" for g, s in got["shares"].items() if s >= 0.005)
            print(
                f"  {model_name}: {got['images_per_s']:.0f} images/s, {got['gflops']:.0f} GFLOP/s = "
                f"{got['gflops'] / best:.0%} of the peak; time: {shares}"
            )


if __name__ == "__main__":
    main()
